"""Issue 8 item 9: who may do what (DOMAIN.md §7), for every command, button and deep link.

Every entry point registered in ``bot/handlers/registry.py`` has a row in the tables below; a
new command, button prefix, button action, deep-link prefix or conversation flow without a row
fails ``test_every_entry_point_is_in_the_matrix``.

Each row names the stage of the world (tests/security/world.py) in which the button acts for
its rightful user, and who that is. Every persona presses it through the real ``handle()``:

- refused → a polite refusal to the presser only, nothing that reveals a job's customer data,
  and not one row changed in any table (the outbox and the inbox aside);
- allowed → it acts (something other than a refusal is said, or the state changes).

Forged callback data (another object's id, ids that do not exist, garbage, overlong data) and
guessed deep-link codes get nothing, even from the rightful user.
"""

from __future__ import annotations

import ast
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.core.callbacks import MAX_BYTES, unpack
from bot.core.enums import Role
from bot.db.models import Dispatch, Outbox
from bot.handlers import router  # noqa: F401  (registers every route)
from bot.handlers.registry import BUTTONS, COMMANDS, FLOWS, START_PAYLOADS
from bot.services.context import Services
from tests.helpers import new_staff, press, say
from tests.security.world import (
    PERSONAS,
    SECRETS,
    TG,
    Recorder,
    World,
    customer_link,
    enter,
    load,
    local,
    minute,
    save,
    state,
)

BOT = Path(__file__).resolve().parents[2] / "bot"
E, E2, C, C2, S, S2, X = "eng", "eng2", "cust", "cust2", "sup", "sup2", "stranger"
STAFF = frozenset({E, E2, S, S2})
SUPERVISORS = frozenset({S, S2})
REGISTERED = frozenset(PERSONAS) - {X}
NOBODY: frozenset[str] = frozenset()

Data = Callable[[World], str]


@dataclass(frozen=True)
class Row:
    """A button: the stage it acts in, its callback data there, who may press it."""

    stage: str
    data: Data
    allowed: frozenset[str]
    other: str = ""  # a world id of the same kind that belongs to someone else
    id_free: bool = False  # the id part carries no object (``rep:0:daily``)


def _d(prefix: str, key: str, action: str, arg: Any = "", *, uid: bool = False) -> Data:
    def data(w: World) -> str:
        ident = w.uid[key] if uid else (w.ids[key] if key else 0)
        extra = arg(w) if callable(arg) else arg
        return f"{prefix}:{ident}:{action}" + (f":{extra}" if extra != "" else "")

    return data


def job(action: str, arg: Any = "") -> Data:
    return _d("job", "j1", action, arg)


def cmp(action: str, arg: Any = "") -> Data:
    return _d("cmp", "complaint", action, arg)


def cmi(action: str, arg: Any = "") -> Data:
    return _d("cmi", C, action, arg, uid=True)


ENG_ONLY = frozenset({E})
CUST_ONLY = frozenset({C})

# ---- the matrix: every button (prefix:action) ---------------------------------------------------
BUTTON_MATRIX: dict[str, Row] = {
    # offers (DOMAIN §1.1): only the engineer the job is offered to
    "off:acc": Row("base", _d("off", "offer1", "acc"), ENG_ONLY, "offer2"),
    "off:dec": Row("base", _d("off", "offer1", "dec"), ENG_ONLY, "offer2"),
    "off:dr": Row("base", _d("off", "offer1", "dr", "busy"), ENG_ONLY, "offer2"),
    # the job, step by step (§1.2–1.5): only its engineer
    "job:open": Row("accepted", job("open"), ENG_ONLY, "j2"),
    "job:ctd": Row("accepted", job("ctd"), ENG_ONLY, "j2"),
    "job:eta": Row("contacted", job("eta", minute(local(11, 30))), ENG_ONLY, "j2"),
    "job:way": Row("eta", job("way"), ENG_ONLY, "j2"),
    "job:omw": Row("on_way", job("omw", minute(local(11, 15))), ENG_ONLY, "j2"),
    "job:leta": Row("late", job("leta", minute(local(14, 30))), ENG_ONLY, "j2"),
    "job:undo": Row("arrived_live", job("undo"), ENG_ONLY, "j2"),
    "job:out": Row("arrived", job("out", "fixed"), ENG_ONLY, "j2"),
    "job:nopa": Row("parts", job("nopa"), ENG_ONLY, "j2"),
    "job:phd": Row("photos", job("phd"), ENG_ONLY, "j2"),
    "job:noex": Row("extra", job("noex"), ENG_ONLY, "j2"),
    "job:redo": Row("review", job("redo"), ENG_ONLY, "j2"),
    "job:sub": Row("review", job("sub"), ENG_ONLY, "j2"),
    # escalations (§1): supervisors act with one tap
    "job:asg": Row("unassigned", _d("job", "j3", "asg", lambda w: w.uid[E]), SUPERVISORS, "j2"),
    "job:nudge": Row("contact_overdue", job("nudge"), SUPERVISORS),
    "job:reasg": Row("contact_overdue", job("reasg"), SUPERVISORS),
    # sign-off and feedback (§1.6–1.7): only the customer of the job; paper: its engineer
    "so:ok": Row("awaiting_signoff", _d("so", "signoff", "ok"), CUST_ONLY),
    "so:no": Row("awaiting_signoff", _d("so", "signoff", "no"), CUST_ONLY),
    "cj:sign": Row("awaiting_signoff", _d("cj", "j1", "sign"), CUST_ONLY, "j2"),
    "pap:up": Row("awaiting_signoff", _d("pap", "j1", "up"), ENG_ONLY, "j2"),
    "sos:rem": Row("signoff_overdue", _d("sos", "j1", "rem"), SUPERVISORS, "j2"),
    "fb:r": Row("signed", _d("fb", "j1", "r", 4), CUST_ONLY, "j2"),
    "fb:skip": Row("rated", _d("fb", "j1", "skip"), CUST_ONLY, "j2"),
    # complaint intake (§2): the customer's own buttons (the id is their user id)
    "cmi:new": Row("accepted", cmi("new"), CUST_ONLY),
    "cmi:cat": Row("intake", cmi("cat", "quality"), CUST_ONLY),
    "cmi:stop": Row("intake", cmi("stop"), CUST_ONLY),
    "cmi:job": Row("intake_job", cmi("job", lambda w: w.ids["j1"]), CUST_ONLY),
    "cmi:nojob": Row("intake_job", cmi("nojob"), CUST_ONLY),
    "cmi:done": Row("intake_described", cmi("done"), CUST_ONLY),
    # the customer's side of their complaint
    "cmp:add": Row("complaint", cmp("add"), CUST_ONLY),
    "cmp:ok": Row("complaint_callback", cmp("ok"), CUST_ONLY),
    "cmp:nok": Row("complaint_callback", cmp("nok"), CUST_ONLY),
    "cmp:rate": Row("complaint_closed", cmp("rate", 5), CUST_ONLY),
    # reading a complaint: its customer and the supervisors (not the engineer it is about)
    "cmp:view": Row("complaint", cmp("view"), frozenset({C, S, S2})),
    # first responder (首问负责制): supervisors take; the engineer complained about never
    "cmp:take": Row("complaint", cmp("take"), SUPERVISORS),
    "cmp:own": Row("complaint", cmp("own"), SUPERVISORS),
    "cmp:tko": Row("complaint_owned", cmp("tko"), frozenset({S2})),  # sup owns it already
    "cmp:ownto": Row("complaint_owned", cmp("ownto", lambda w: w.uid[S2]), SUPERVISORS),
    # the owner's work (sup owns it); supervisors may add notes and call
    "cmp:reply": Row("complaint_owned", cmp("reply"), frozenset({S})),
    "cmp:ask": Row("complaint_owned", cmp("ask"), frozenset({S})),
    "cmp:xfer": Row("complaint_owned", cmp("xfer"), frozenset({S})),
    "cmp:res": Row("complaint_owned", cmp("res"), frozenset({S})),
    "cmp:urg": Row("complaint_owned", cmp("urg"), SUPERVISORS),
    "cmp:note": Row("complaint_owned", cmp("note"), SUPERVISORS),
    "cmp:call": Row("complaint_owned", cmp("call"), SUPERVISORS),
    "cmp:xto": Row("complaint_xfer", cmp("xto", lambda w: w.uid[E2]), frozenset({S})),
    # the person asked to act (the other engineer here) reports back
    "cmp:wdone": Row("complaint_worker", cmp("wdone"), frozenset({E2})),
    "cmp:when": Row("complaint_solution", cmp("when", 1), frozenset({S})),
    "cmp:cbok": Row("complaint_callback", cmp("cbok"), frozenset({S})),
    "cmp:cbnok": Row("complaint_callback", cmp("cbnok"), frozenset({S})),
    # follow-ups (§3): only the customer asked
    "fu:ok": Row("followup", _d("fu", "followup", "ok"), CUST_ONLY),
    "fu:fix": Row("followup", _d("fu", "followup", "fix"), CUST_ONLY),
    "fu:cmp": Row("followup", _d("fu", "followup", "cmp"), CUST_ONLY),
    "fu:need": Row("outreach", _d("fu", "followup", "need"), CUST_ONLY, "followup2"),
    "fu:none": Row("outreach", _d("fu", "followup", "none"), CUST_ONLY, "followup2"),
    # reports (§6): supervisors (and managers)
    "rep:daily": Row("base", _d("rep", "", "daily"), SUPERVISORS, id_free=True),
    "rep:weekly": Row("base", _d("rep", "", "weekly"), SUPERVISORS, id_free=True),
    "rep:monthly": Row("base", _d("rep", "", "monthly"), SUPERVISORS, id_free=True),
    # major faults (§4): any staff member reports; supervisors track and close
    "fltn:new": Row("base", _d("fltn", "", "new"), STAFF, id_free=True),
    "fltn:now": Row("fault_report", _d("fltn", "", "now"), frozenset({S}), id_free=True),
    "fltn:nocust": Row("fault_customer", _d("fltn", "", "nocust"), frozenset({S}), id_free=True),
    "fltn:cust": Row("fault_customer", _d("fltn", "customer1", "cust"), frozenset({S})),
    "flt:upd": Row("fault_open", _d("flt", "fault", "upd"), SUPERVISORS),
    "flt:close": Row("fault_open", _d("flt", "fault", "close"), SUPERVISORS),
    "flt:send": Row("fault_confirm", _d("flt", "fault", "send"), frozenset({S})),
    # handover (§5): the outgoing supervisor, then the incoming one confirms
    "hov:nonotes": Row("handover", _d("hov", "handover", "nonotes"), frozenset({S})),
    "hov:to": Row("handover_to", _d("hov", "handover", "to", lambda w: w.uid[S2]), frozenset({S})),
    "hov:ok": Row("handover_confirm", _d("hov", "handover", "ok"), frozenset({S2})),
    # language: one's own (the id is the user's own id)
    "lang:set": Row("base", _d("lang", E, "set", "zh_Hans", uid=True), ENG_ONLY),
}

# ---- commands -----------------------------------------------------------------------------------
COMMAND_MATRIX: dict[str, frozenset[str]] = {
    "start": frozenset(PERSONAS),
    "help": frozenset(PERSONAS),
    "language": REGISTERED,
    "cancel": REGISTERED,
    "jobs": frozenset({E, E2}),
    "paper": frozenset({E, E2}),
    "myjobs": frozenset({C, C2}),
    "complaint": frozenset({C, C2, X}),  # strangers too (name and phone first)
    "mycomplaints": frozenset({C, C2}),
    "complaints": STAFF,
    "fault": STAFF,
    "duty": STAFF,
    "report": SUPERVISORS,
    "handover": SUPERVISORS,
    "followups": SUPERVISORS,
}

# ---- deep links (/start <payload>) and conversation flows ---------------------------------------
START_MATRIX = {"inv_": "staff invite (single use)", "job_": "a customer's per-job link"}
FLOW_MATRIX: dict[str, frozenset[Role] | None] = {
    "decline": frozenset({Role.ENGINEER}),
    "job": frozenset({Role.ENGINEER}),
    "signoff": frozenset({Role.CUSTOMER}),
    "feedback": frozenset({Role.CUSTOMER}),
    "paper": frozenset({Role.ENGINEER}),
    "cmp_intake": frozenset({Role.CUSTOMER}),
    "cmp_answer": frozenset({Role.CUSTOMER}),
    "cmp_staff": frozenset({Role.ENGINEER, Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER}),
    "fault": frozenset({Role.ENGINEER, Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER}),
    "handover": frozenset({Role.SUPERVISOR}),
    "followup": frozenset(Role),  # only whoever was asked gets there (checked by the flow)
}

# ---- refusals: what "nothing happened" sounds like ----------------------------------------------
_RAISED = re.compile(r"DomainError\(\s*\"([a-z_]+)\"")
REFUSALS = frozenset(
    {m for f in BOT.rglob("*.py") for m in _RAISED.findall(f.read_text())}
    | {t.stem for t in (BOT.parent / "templates").glob("err_*.j2")}
    | {
        "welcome_stranger",
        "unknown_command",
        "not_understood",
        "invite_unknown",
        "invite_used",
        "invite_expired",
        "invite_taken",
    }
)


# ---- the registry is fully covered ---------------------------------------------------------------


def _button_actions_in_code() -> set[str]:
    """Every ``cb("prefix", id, "action", ...)`` the bot builds (literal prefix and action)."""
    found: set[str] = set()
    for path in BOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "cb"
                and len(node.args) >= 3
                and isinstance(node.args[0], ast.Constant)
            ):
                action = node.args[2]
                if isinstance(action, ast.Constant):
                    found.add(f"{node.args[0].value}:{action.value}")
                else:  # an action chosen at run time: its possible values are listed here
                    found.update(f"{node.args[0].value}:{a}" for a in DYNAMIC[node.args[0].value])
    return found


# ``cb("job", id, action, ...)`` with ``action`` from {"contact": "eta", "omw": ..., "late": ...};
# ``cb("rep", 0, k)`` for k in reports.KINDS.
DYNAMIC = {"job": ("eta", "omw", "leta"), "rep": ("daily", "weekly", "monthly")}


def test_every_entry_point_is_in_the_matrix() -> None:
    assert set(COMMANDS) == set(COMMAND_MATRIX), "a command without a row in COMMAND_MATRIX"
    assert set(START_PAYLOADS) == set(START_MATRIX), "a deep link without a row"
    assert {name: routes.roles for name, routes in FLOWS.items()} == FLOW_MATRIX
    prefixes = {key.split(":")[0] for key in BUTTON_MATRIX}
    assert set(BUTTONS) == prefixes, "a button prefix without rows in BUTTON_MATRIX"
    in_code = _button_actions_in_code()
    assert in_code <= set(BUTTON_MATRIX), f"buttons without a row: {in_code - set(BUTTON_MATRIX)}"
    assert set(BUTTON_MATRIX) <= in_code, (
        f"rows for buttons nobody builds: {set(BUTTON_MATRIX) - in_code}"
    )


def test_each_buttons_registered_roles_agree_with_the_matrix() -> None:
    """The router's coarse role check never lets a role through that the matrix refuses."""
    role_of = {E: Role.ENGINEER, E2: Role.ENGINEER, C: Role.CUSTOMER, C2: Role.CUSTOMER}
    role_of.update({S: Role.SUPERVISOR, S2: Role.SUPERVISOR})
    for key, row in BUTTON_MATRIX.items():
        prefix, action = key.split(":")
        data = unpack(f"{prefix}:1:{action}:1")
        assert data is not None
        entry = BUTTONS[prefix](data)
        assert entry is not None, key
        roles, _handler = entry
        for persona in row.allowed:
            assert roles is None or role_of[persona] in roles, (key, persona)


# ---- driving -------------------------------------------------------------------------------------

Act = Callable[[], Awaitable[Any]]


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    recorder.install(monkeypatch)
    return recorder


async def _outbox_since(services: Services, last_id: int) -> list[Outbox]:
    async with services.uow() as uow:
        stmt = select(Outbox).where(Outbox.id > last_id).order_by(Outbox.id)
        return list(await uow.session.scalars(stmt))


async def _last_outbox(services: Services) -> int:
    async with services.uow() as uow:
        return int(await uow.session.scalar(select(func.max(Outbox.id))) or 0)


async def assert_refused(
    services: Services,
    said: Recorder,
    world: World,
    attempts: list[tuple[str, str, Act]],
    reset: Callable[[], Awaitable[Any]],
) -> None:
    """Each ``(persona, what, act)`` is refused politely, to the presser only, and together
    they change nothing (on a change, each is replayed alone from ``reset`` to name it)."""
    before = await state(services)
    last = await _last_outbox(services)
    for persona, what, act in attempts:
        mark = said.mark()
        await act()
        out = said.since(mark)
        templates = [s.template for s in out if s.template]
        assert templates, f"{what} by {persona}: no reply at all"
        assert set(templates) <= REFUSALS, f"{what} by {persona}: acted ({templates})"
        for s in out:
            to_presser = s.chat_id == TG[persona] or (
                s.user_id is not None and s.user_id == world.uid.get(persona)
            )
            assert to_presser, f"{what} by {persona}: {s.template} to someone else"
    if await state(services) != before:
        for persona, what, act in attempts:
            await reset()
            await act()
            after = await state(services)
            changed = [t for t in before if before[t] != after[t]]
            assert not changed, f"{what} by {persona}: refused, yet {changed} changed"
        raise AssertionError("the refusals changed the state together, not alone")
    pressers = {TG[persona] for persona, _, _ in attempts}
    for row in await _outbox_since(services, last):
        assert row.chat_id in pressers, f"a message to chat {row.chat_id}"
        leaked = [s for s in SECRETS if s in str(row.payload)]
        assert not leaked, f"a refusal to chat {row.chat_id} shows {leaked}: {row.payload}"


async def assert_acts(services: Services, said: Recorder, what: str, act: Act) -> None:
    before = await state(services)
    mark = said.mark()
    await act()
    templates = [s.template for s in said.since(mark) if s.template]
    refusals = [t for t in templates if t in REFUSALS]
    assert not refusals, f"{what}: refused ({templates})"
    assert templates or before != await state(services), f"{what}: nothing happened"


def _press(services: Services, persona: str, data: str) -> Act:
    return lambda: press(services, TG[persona], data)


def _say(services: Services, persona: str, text: str) -> Act:
    return lambda: say(services, TG[persona], text)


@pytest.mark.parametrize("key", sorted(BUTTON_MATRIX))
async def test_button(services: Services, said: Recorder, key: str) -> None:
    """Every persona presses it; only the rightful ones act, the others change nothing."""
    row = BUTTON_MATRIX[key]
    world = await enter(services, row.stage)
    data = row.data(world)
    # sup2 (the second supervisor) adds nothing where no supervisor may press
    personas = [p for p in PERSONAS if p != S2 or row.allowed & SUPERVISORS]
    attempts = [(p, data, _press(services, p, data)) for p in personas if p not in row.allowed]
    if row.other:  # the rightful user, with the id of someone else's object
        prefix, _, tail = data.split(":", 2)
        forged = f"{prefix}:{world.ids[row.other]}:{tail}"
        attempts += [(p, forged, _press(services, p, forged)) for p in sorted(row.allowed)]
    await assert_refused(services, said, world, attempts, lambda: enter(services, row.stage))
    for persona in sorted(row.allowed):
        await enter(services, row.stage)
        own = data if key != "lang:set" else f"lang:{world.uid[persona]}:set:zh_Hans"
        await assert_acts(services, said, f"{own} by {persona}", _press(services, persona, own))


def _forgeries(row: Row, world: World) -> list[str]:
    real = row.data(world)
    prefix, ident, action, *rest = real.split(":")
    tail = ":".join([action, *rest])
    forged = [
        f"{prefix}:{ident}:{action}:1:2",
        f"{prefix}:{ident}:{action}:" + "9" * (MAX_BYTES - len(f"{prefix}:{ident}:{action}:") + 1),
        f"{prefix}:{ident}:{action}x",
    ]
    if not row.id_free:
        forged += [f"{prefix}:999999999:{tail}", f"{prefix}:{'9' * 18}:{tail}"]
    if prefix in ("cmi", "lang"):  # the id is the user's own id: someone else's is forged
        forged.append(f"{prefix}:{world.uid[C2]}:{tail}")
    return forged


FIRST_OF_PREFIX = sorted(
    {key.split(":")[0]: key for key in sorted(BUTTON_MATRIX, reverse=True)}.values()
)


@pytest.mark.parametrize("key", FIRST_OF_PREFIX)
async def test_forged_button_data_gets_nothing(
    services: Services, said: Recorder, key: str
) -> None:
    """Even the rightful user gets nothing from data the bot never built."""
    row = BUTTON_MATRIX[key]
    world = await enter(services, row.stage)
    rightful = sorted(row.allowed)[0]
    attempts = [(rightful, d, _press(services, rightful, d)) for d in _forgeries(row, world)]
    await assert_refused(services, said, world, attempts, lambda: enter(services, row.stage))


async def test_garbage_button_data_gets_nothing(services: Services, said: Recorder) -> None:
    world = await enter(services, "accepted")
    j1 = world.ids["j1"]
    garbage = (
        "",
        ":",
        ":::",
        "job",
        "9" * 200,
        "☃:1:a",
        f"job:{j1}:ctd\n",
        "\x00",
        f"JOB:{j1}:ctd",
        f"job:x{j1}:ctd",
        f"job:-{j1}:ctd",
        f"job:{'9' * 19}:ctd",
        f"job:{j1}:ctd'; DROP TABLE users; --",
        f"job:{j1}:out:<b>",
    )
    attempts = [(p, repr(d), _press(services, p, d)) for d in garbage for p in (E, X)]
    await assert_refused(services, said, world, attempts, lambda: enter(services, "accepted"))


@pytest.mark.parametrize("name", sorted(COMMAND_MATRIX))
async def test_command(services: Services, said: Recorder, name: str) -> None:
    allowed = COMMAND_MATRIX[name]
    world = await enter(services, "accepted")
    text = f"/{name}"
    attempts = [(p, text, _say(services, p, text)) for p in PERSONAS if p not in allowed]
    await assert_refused(services, said, world, attempts, lambda: enter(services, "accepted"))
    for persona in sorted(allowed):
        await enter(services, "accepted")
        mark = said.mark()
        await say(services, TG[persona], text)
        templates = [s.template for s in said.since(mark) if s.template]
        if persona == X and name in ("start", "help"):  # the stranger's greeting
            assert templates and set(templates) <= STRANGER_GREETINGS, templates
            continue
        refusals = [t for t in templates if t in REFUSALS]
        assert templates and not refusals, f"/{name} by {persona}: {templates}"


STRANGER_GREETINGS = {"welcome_stranger", "cust_welcome_stranger"}


# ---- deep links ----------------------------------------------------------------------------------


def _random_code(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18)


async def test_guessed_deep_link_codes_get_nothing(services: Services, said: Recorder) -> None:
    world = await enter(services, "accepted")
    guesses = [_random_code(p) for p in ("inv_", "job_") for _ in range(2)]
    guesses += ["inv_", "job_", "job_" + "A" * 200, "inv_' OR 1=1 --", "job_%", "xyz"]
    attempts = [
        (p, f"/start {code[:30]}", _say(services, p, f"/start {code}"))
        for code in guesses
        for p in (E, C2, X)
    ]
    await assert_refused(services, said, world, attempts, lambda: enter(services, "accepted"))


async def test_a_real_link_to_another_customers_job_gets_nothing(
    services: Services, said: Recorder
) -> None:
    """Everyone but its customer, with the current link of cust's job: refused, nothing shown."""
    world = await enter(services, "accepted")
    async with services.uow() as uow:
        dispatch = await uow.session.get(Dispatch, world.ids["j1"])
        assert dispatch is not None
        code = (await customer_link(uow, dispatch)).split("start=", 1)[1]
        await uow.commit()
    snapshot = await save(services)
    attempts = [
        (p, "another customer's job link", _say(services, p, f"/start {code}"))
        for p in (E, E2, C2, S, S2, X)
    ]
    await assert_refused(services, said, world, attempts, lambda: load(services, snapshot))
    mark = said.mark()
    await say(services, TG[C], f"/start {code}")  # its own customer: told they follow it
    assert not {s.template for s in said.since(mark)} & REFUSALS


async def test_invite_links_bind_once_and_never_a_second_account(
    services: Services, said: Recorder
) -> None:
    world = await enter(services, "accepted")
    new = await new_staff(services, "supervisor", "Newcomer", ())
    snapshot = await save(services)
    text = f"/start {new.code}"
    staff = [(p, "an invite for someone else", _say(services, p, text)) for p in (E, E2, S, S2)]
    await assert_refused(services, said, world, staff, lambda: load(services, snapshot))
    mark = said.mark()
    await say(services, TG[X], text)
    assert "welcome_staff" in {s.template for s in said.since(mark)}
    used = await save(services)
    world.uid[X] = new.user.id
    again = [(p, "a used invite", _say(services, p, text)) for p in PERSONAS]
    await assert_refused(services, said, world, again, lambda: load(services, used))
