"""Major faults (重大故障), DOMAIN.md §4.

Whoever learns of a major fault first reports it with ``/fault``: when it happened, where, the
symptoms and the handling plan, optionally the customer (by name or by a job number). The
report goes at once (urgent) to the manager(s), the customer's account owner and the
supervisor(s) on duty, who track it with update buttons. Closing it takes the fault analysis
report (impact, handling, root cause, corrective and preventive actions), which goes to the
same people and to the customer's contacts who follow their jobs in chat. Every step is a
``FaultEvent`` row.

Conversation steps (flow ``fault``)::

    time → place → symptoms → plan → customer → (reported)
    update                                     (one update of an open fault)
    impact → handling → root_cause → corrective → preventive → confirm → (closed, report sent)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.core.callbacks import cb
from bot.core.enums import Priority, Role
from bot.core.messages import Button, Msg
from bot.db.models import Customer, Dispatch, User
from bot.db.models.supervision import FaultEvent, MajorFault
from bot.services import conversations
from bot.services.errors import DomainError
from bot.services.staff import staff_with_role, supervisors_on_duty
from bot.services.uow import UnitOfWork

FLOW = "fault"
OPEN = "open"
CLOSED = "closed"
MAX_TEXT = 2000
MAX_MATCHES = 6
MAX_AGE = timedelta(days=30)
REPORT_STEPS = ("time", "place", "symptoms", "plan", "customer")
ANALYSIS_STEPS = ("impact", "handling", "root_cause", "corrective", "preventive")
TRACKER_ROLES = frozenset({Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER})

_DATE_TIME = re.compile(
    r"^\s*(?:(?:(\d{4})[-/.])?(\d{1,2})[-/.](\d{1,2})\s+)?(\d{1,2})[:：.](\d{2})\s*$"
)
_JOB_NUMBER = re.compile(r"^\s*(FB\d{6,})\s*$", re.IGNORECASE)


# ---- helpers ----------------------------------------------------------------------------------


def _clean(text: str) -> str:
    value = text.strip()
    if not value:
        raise DomainError("err_text_empty")
    if len(value) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    return value


def parse_when(text: str, now: datetime, tz: str) -> datetime:
    """``14:30``, ``11-30 14:30`` or ``2026-11-30 14:30`` in ``tz``: when the fault began.

    A bare time later than now means yesterday. Refuses the future and anything older than
    30 days.
    """
    match = _DATE_TIME.match(text)
    if not match:
        raise DomainError("fault_err_time")
    year, month, day, hour, minute = match.groups()
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    try:
        when = datetime(
            int(year) if year else local_now.year,
            int(month) if month else local_now.month,
            int(day) if day else local_now.day,
            int(hour),
            int(minute),
            tzinfo=zone,
        )
    except ValueError:
        raise DomainError("fault_err_time") from None
    if not month and when > local_now + timedelta(minutes=5):
        when -= timedelta(days=1)
    elif month and not year and when > local_now + timedelta(minutes=5):
        when = when.replace(year=when.year - 1)
    if when > local_now + timedelta(minutes=5):
        raise DomainError("fault_err_future")
    if when < local_now - MAX_AGE:
        raise DomainError("fault_err_too_old", days=MAX_AGE.days)
    return when.astimezone(now.tzinfo)


async def get_fault(uow: UnitOfWork, fault_id: int) -> MajorFault:
    fault = await uow.session.get(MajorFault, fault_id)
    if fault is None:
        raise DomainError("err_not_found")
    return fault


async def open_fault(uow: UnitOfWork, fault_id: int) -> MajorFault:
    fault = await get_fault(uow, fault_id)
    if fault.status != OPEN:
        raise DomainError("fault_err_closed", number=fault.number)
    return fault


async def open_faults(uow: UnitOfWork) -> list[MajorFault]:
    rows = await uow.session.scalars(
        select(MajorFault).where(MajorFault.status == OPEN).order_by(MajorFault.id)
    )
    return list(rows)


async def history(uow: UnitOfWork, fault_id: int) -> list[FaultEvent]:
    rows = await uow.session.scalars(
        select(FaultEvent).where(FaultEvent.fault_id == fault_id).order_by(FaultEvent.id)
    )
    return list(rows)


def _record(
    uow: UnitOfWork,
    fault: MajorFault,
    kind: str,
    *,
    actor: User | None,
    text: str | None = None,
    **data: Any,
) -> None:
    now = uow.clock.now()
    fault.updated_at = now
    uow.session.add(
        FaultEvent(
            fault_id=fault.id,
            at=now,
            actor_id=actor.id if actor else None,
            kind=kind,
            text=text,
            data=data,
        )
    )


async def fault_params(uow: UnitOfWork, fault: MajorFault) -> dict[str, Any]:
    """What a message about ``fault`` shows (plain values; times in the reader's zone)."""
    customer = await uow.session.get(Customer, fault.customer_id) if fault.customer_id else None
    reporter = await uow.session.get(User, fault.reported_by)
    job = await uow.session.get(Dispatch, fault.dispatch_id) if fault.dispatch_id else None
    updates = [e for e in await history(uow, fault.id) if e.kind == "update"]
    return {
        "number": fault.number,
        "status": fault.status,
        "occurred_at": fault.occurred_at,
        "place": fault.place,
        "symptoms": fault.symptoms,
        "plan": fault.plan,
        "customer": customer.name if customer else "",
        "job": job.number if job else "",
        "reporter": reporter.name if reporter else "",
        "reporter_role": reporter.role if reporter else "",
        "reported_at": fault.reported_at,
        "updates": [{"at": e.at, "text": e.text or ""} for e in updates[-5:]],
        "analysis": dict(fault.analysis),
        "closed_at": fault.closed_at,
    }


def tracking_buttons(fault: MajorFault) -> tuple[tuple[Button, ...], ...]:
    return (
        (Button.of("fault_update", cb("flt", fault.id, "upd")),),
        (Button.of("fault_close", cb("flt", fault.id, "close")),),
    )


async def _staff_audience(uow: UnitOfWork, fault: MajorFault) -> list[User]:
    """Managers, the customer's account owner, the supervisor(s) on duty and the reporter."""
    people: dict[int, User] = {}
    for user in await staff_with_role(uow, Role.MANAGER):
        people[user.id] = user
    if fault.customer_id is not None:
        customer = await uow.session.get(Customer, fault.customer_id)
        if customer is not None and customer.account_owner_id is not None:
            owner = await uow.session.get(User, customer.account_owner_id)
            if owner is not None and owner.active:
                people[owner.id] = owner
    for user in await supervisors_on_duty(uow):
        people[user.id] = user
    reporter = await uow.session.get(User, fault.reported_by)
    if reporter is not None and reporter.active:
        people[reporter.id] = reporter
    return list(people.values())


async def customer_contacts(uow: UnitOfWork, fault: MajorFault) -> list[int]:
    """Users of the fault's customer who follow their jobs in chat (linked on a dispatch)."""
    ids: set[int] = set()
    if fault.customer_id is not None:
        rows = await uow.session.scalars(
            select(Dispatch.customer_user_id)
            .where(
                Dispatch.customer_id == fault.customer_id,
                Dispatch.customer_user_id.is_not(None),
            )
            .distinct()
        )
        ids.update(int(r) for r in rows if r is not None)
    if fault.dispatch_id is not None:
        job = await uow.session.get(Dispatch, fault.dispatch_id)
        if job is not None and job.customer_user_id is not None:
            ids.add(job.customer_user_id)
    return sorted(ids)


# ---- reporting a fault ------------------------------------------------------------------------


async def start_report(uow: UnitOfWork, reporter: User) -> None:
    """``/fault new``: the first question of the report."""
    await conversations.enter(uow, reporter.id, FLOW, "time")
    await uow.out.send(
        Msg(
            "fault_ask_time",
            {},
            user_id=reporter.id,
            buttons=((Button.of("fault_just_now", cb("fltn", 0, "now")),),),
        )
    )


async def _ask(uow: UnitOfWork, user: User, step: str, data: dict[str, Any]) -> None:
    await conversations.enter(uow, user.id, FLOW, step, **data)
    buttons = None
    if step == "customer":
        buttons = ((Button.of("fault_no_customer", cb("fltn", 0, "nocust")),),)
    await uow.out.send(Msg(f"fault_ask_{step}", {}, user_id=user.id, buttons=buttons))


async def report_time_now(uow: UnitOfWork, reporter: User, data: dict[str, Any]) -> None:
    await _ask(uow, reporter, "place", {**data, "occurred_at": uow.clock.now().isoformat()})


async def report_text(
    uow: UnitOfWork, reporter: User, step: str, data: dict[str, Any], text: str
) -> None:
    """A typed answer to one question of the report."""
    if step == "time":
        tz = reporter.timezone or uow.settings.timezone
        when = parse_when(text, uow.clock.now(), tz)
        await _ask(uow, reporter, "place", {**data, "occurred_at": when.isoformat()})
    elif step in ("place", "symptoms", "plan"):
        following = REPORT_STEPS[REPORT_STEPS.index(step) + 1]
        await _ask(uow, reporter, following, {**data, step: _clean(text)})
    elif step == "customer":
        await _customer_search(uow, reporter, data, _clean(text))
    else:
        raise DomainError("err_stale_button")


async def _customer_search(
    uow: UnitOfWork, reporter: User, data: dict[str, Any], text: str
) -> None:
    number = _JOB_NUMBER.match(text)
    if number:
        job = await uow.session.scalar(
            select(Dispatch).where(Dispatch.number == number.group(1).upper())
        )
        if job is None:
            raise DomainError("fault_err_no_job", number=number.group(1).upper())
        await file_report(uow, reporter, data, customer_id=job.customer_id, dispatch_id=job.id)
        return
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    matches = list(
        await uow.session.scalars(
            select(Customer)
            .where(Customer.name.ilike(pattern, escape="\\"))
            .order_by(Customer.name)
            .limit(MAX_MATCHES + 1)
        )
    )
    exact = [c for c in matches if c.name.lower() == text.lower()]
    if len(exact) == 1 or len(matches) == 1:
        await file_report(uow, reporter, data, customer_id=(exact or matches)[0].id)
        return
    if not matches or len(matches) > MAX_MATCHES:
        raise DomainError("fault_err_customer", text=text[:100], many=bool(matches))
    buttons = tuple(
        (Button.of("fault_pick_customer", cb("fltn", c.id, "cust"), name=c.name[:40]),)
        for c in matches
    )
    buttons += ((Button.of("fault_no_customer", cb("fltn", 0, "nocust")),),)
    await uow.out.send(Msg("fault_pick_customer", {}, user_id=reporter.id, buttons=buttons))


async def report_customer(
    uow: UnitOfWork, reporter: User, data: dict[str, Any], customer_id: int | None
) -> None:
    """A customer button (or "no customer") on the last question."""
    if customer_id is not None and await uow.session.get(Customer, customer_id) is None:
        raise DomainError("err_stale_button")
    await file_report(uow, reporter, data, customer_id=customer_id)


async def file_report(
    uow: UnitOfWork,
    reporter: User,
    data: dict[str, Any],
    *,
    customer_id: int | None,
    dispatch_id: int | None = None,
) -> MajorFault:
    """Store the report and send it at once to everyone who must know."""
    if not all(data.get(k) for k in ("occurred_at", "place", "symptoms", "plan")):
        raise DomainError("err_stale_button")
    now = uow.clock.now()
    fault = MajorFault(
        number="",
        status=OPEN,
        occurred_at=datetime.fromisoformat(str(data["occurred_at"])),
        place=str(data["place"]),
        symptoms=str(data["symptoms"]),
        plan=str(data["plan"]),
        customer_id=customer_id,
        dispatch_id=dispatch_id,
        reported_by=reporter.id,
        reported_at=now,
        updated_at=now,
        analysis={},
    )
    uow.session.add(fault)
    await uow.session.flush()
    fault.number = f"MF{fault.id:06d}"
    _record(uow, fault, "reported", actor=reporter, customer_id=customer_id)
    await conversations.leave(uow, reporter.id, FLOW)
    params = await fault_params(uow, fault)
    informed = 0
    for user in await _staff_audience(uow, fault):
        if user.id == reporter.id:
            continue
        buttons = tracking_buttons(fault) if Role(user.role) in TRACKER_ROLES else None
        if await uow.out.send(
            Msg("fault_alert", params, user_id=user.id, buttons=buttons, priority=Priority.URGENT)
        ):
            informed += 1
    _record(uow, fault, "alerted", actor=None, recipients=informed)
    await uow.out.send(
        Msg(
            "fault_reported",
            {**params, "informed": informed},
            user_id=reporter.id,
            buttons=tracking_buttons(fault) if Role(reporter.role) in TRACKER_ROLES else None,
        )
    )
    return fault


# ---- tracking ---------------------------------------------------------------------------------


async def list_faults(uow: UnitOfWork, user: User) -> None:
    """``/fault`` for supervisors and managers: what is open, each with its buttons."""
    faults = await open_faults(uow)
    new = (Button.of("fault_new", cb("fltn", 0, "new")),)
    if not faults:
        await uow.out.send(Msg("fault_list", {"faults": []}, user_id=user.id, buttons=(new,)))
        return
    await uow.out.send(
        Msg("fault_list", {"faults": [f.number for f in faults]}, user_id=user.id, buttons=(new,))
    )
    for fault in faults:
        await uow.out.send(
            Msg(
                "fault_card",
                await fault_params(uow, fault),
                user_id=user.id,
                buttons=tracking_buttons(fault),
            )
        )


async def ask_update(uow: UnitOfWork, user: User, fault_id: int) -> None:
    fault = await open_fault(uow, fault_id)
    await conversations.enter(uow, user.id, FLOW, "update", fault_id=fault.id)
    await uow.out.send(Msg("fault_ask_update", {"number": fault.number}, user_id=user.id))


async def add_update(uow: UnitOfWork, user: User, fault_id: int, text: str) -> None:
    """A progress update: kept in the history and passed on to everyone tracking the fault."""
    fault = await open_fault(uow, fault_id)
    value = _clean(text)
    _record(uow, fault, "update", actor=user, text=value)
    await conversations.leave(uow, user.id, FLOW)
    params = {"number": fault.number, "text": value, "author": user.name, "at": uow.clock.now()}
    for person in await _staff_audience(uow, fault):
        if person.id == user.id:
            continue
        buttons = tracking_buttons(fault) if Role(person.role) in TRACKER_ROLES else None
        await uow.out.send(
            Msg(
                "fault_update", params, user_id=person.id, buttons=buttons, priority=Priority.URGENT
            )
        )
    await uow.out.send(Msg("fault_update_saved", {"number": fault.number}, user_id=user.id))


async def start_close(uow: UnitOfWork, user: User, fault_id: int) -> None:
    """Closing starts the fault analysis report, one question at a time."""
    fault = await open_fault(uow, fault_id)
    await conversations.enter(uow, user.id, FLOW, ANALYSIS_STEPS[0], fault_id=fault.id)
    await uow.out.send(
        Msg(f"fault_ask_{ANALYSIS_STEPS[0]}", {"number": fault.number}, user_id=user.id)
    )


async def analysis_text(
    uow: UnitOfWork, user: User, step: str, data: dict[str, Any], text: str
) -> None:
    fault = await open_fault(uow, int(data["fault_id"]))
    data = {**data, step: _clean(text)}
    index = ANALYSIS_STEPS.index(step)
    if index + 1 < len(ANALYSIS_STEPS):
        following = ANALYSIS_STEPS[index + 1]
        await conversations.enter(uow, user.id, FLOW, following, **data)
        await uow.out.send(Msg(f"fault_ask_{following}", {"number": fault.number}, user_id=user.id))
        return
    await conversations.enter(uow, user.id, FLOW, "confirm", **data)
    analysis = {k: data[k] for k in ANALYSIS_STEPS}
    await uow.out.send(
        Msg(
            "fault_close_confirm",
            {"number": fault.number, "analysis": analysis},
            user_id=user.id,
            buttons=(
                (Button.of("fault_send_analysis", cb("flt", fault.id, "send")),),
                (Button.of("fault_restart_analysis", cb("flt", fault.id, "close")),),
            ),
        )
    )


async def close_fault(uow: UnitOfWork, user: User, fault_id: int) -> MajorFault:
    """Close with the analysis report the user just confirmed, and send the report out."""
    fault = await open_fault(uow, fault_id)
    step = await conversations.current(uow, user.id)
    if (
        step is None
        or step.flow != FLOW
        or step.step != "confirm"
        or step.data.get("fault_id") != fault.id
    ):
        raise DomainError("err_stale_button")
    analysis = {k: str(step.data[k]) for k in ANALYSIS_STEPS}
    now = uow.clock.now()
    fault.status = CLOSED
    fault.closed_at = now
    fault.closed_by = user.id
    fault.analysis = analysis
    _record(uow, fault, "closed", actor=user, **analysis)
    await conversations.leave(uow, user.id, FLOW)
    params = await fault_params(uow, fault)
    params["closed_by"] = user.name
    audience = await _staff_audience(uow, fault)
    if user.id not in {person.id for person in audience}:
        audience.append(user)
    for person in audience:
        await uow.out.send(Msg("fault_analysis", params, user_id=person.id))
    sent = 0
    public = {
        "number": fault.number,
        "occurred_at": fault.occurred_at,
        "place": fault.place,
        "analysis": analysis,
    }
    for customer_user in await customer_contacts(uow, fault):
        if await uow.out.send(Msg("fault_analysis_customer", public, user_id=customer_user)):
            sent += 1
    _record(uow, fault, "analysis_sent", actor=user, customers=sent)
    return fault
