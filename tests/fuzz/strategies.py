"""Hypothesis strategies: nasty text, forged buttons, and the wrong input for every step."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from bot.core.events import Event, Kind
from bot.flows import job
from bot.handlers.registry import COMMANDS
from tests.fuzz.world import Actor, event_for

# ---- text ----------------------------------------------------------------------------------

SAMPLES = [
    "",
    " ",
    "\t\n \u00a0\u3000",  # whitespace only (with a no-break and an ideographic space)
    "\x00",
    "a\x00b",
    "\x00\x01\x1b[31m\x7f",
    "\u202eRTL\u202c text",
    "שלום עולם",  # Hebrew (RTL)
    "مرحبا بالعالم",  # Arabic (RTL)
    "😀" * 50,
    "👩\u200d👩\u200d👧\u200d👦🏳️\u200d🌈👍🏽",  # ZWJ sequences, skin tones
    "e\u0301\u0301\u0301\u0301",  # combining marks
    "\ufeff\u200b\u200c\u200d",  # BOM and zero-width characters
    "\ud800",  # a lone surrogate
    "ok \udfff ok",
    "<b>bold</b><script>alert(1)</script>",
    "&amp; &lt; &#0; &",
    "*bold* _it_ [link](http://x) `code` ~~s~~ ||sp||",
    "*_[",
    "'; DROP TABLE dispatches; --",
    "1 OR 1=1; SELECT * FROM users",
    "{{ 7*7 }} {% raw %}",
    "%(number)s %s {0}",
    "x" * 10_000,
    "长" * 5_000,
    "Relay x 2\nFuse",
    "\n" * 50,
    "/",
    "/ /",
    "//x",
]
nasty_text = st.one_of(
    st.sampled_from(SAMPLES),
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=300),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Mn", "So"]), max_size=40),
)
commandless_text = nasty_text.filter(lambda t: not t.startswith("/"))
blank_text = st.sampled_from(["", " ", "\t\n \u00a0\u3000", "\n" * 50, "   \r\n  "])

# ---- buttons -------------------------------------------------------------------------------

PREFIXES = ["off", "job", "lang", "cmp", "cmi", "so", "fb", "cj", "pap", "sos", "fu", "flt",
            "fltn", "rep", "hov", "x", ""]  # fmt: skip
ACTIONS = ["acc", "dec", "dr", "asg", "ctd", "eta", "omw", "leta", "way", "undo", "out", "nopa",
           "phd", "noex", "redo", "sub", "open", "nudge", "reasg", "set", "ok", "no", "r", "skip",
           "sign", "up", "rem", "take", "view", "add", "new", "cat", "job", "nojob", "done",
           "stop", "upd", "close", "send", "to", "nonotes", "zz"]  # fmt: skip
ENGINEER_ACTIONS = ["ctd", "eta", "omw", "leta", "way", "undo", "out", "nopa", "phd", "noex",
                    "redo", "sub"]  # fmt: skip

malformed_data = st.one_of(
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            ":",
            "::",
            "job::ctd",
            "job:1",
            "job:-1:ctd",
            "job:+1:ctd",
            "job:1.0:ctd",
            "job:１:ctd",  # a full-width digit
            "job:٣:ctd",  # an Arabic-Indic digit
            "job:²:ctd",  # a superscript: isdigit() but not int()
            "job:1:ctd:a:b",
            "job:1:ctd\x00",
            "job:\ud800:ctd",
            "off:1:acc" + " " * 60,
            "job:" + "9" * 19 + ":ctd",
            "job:" + "1" * 80 + ":ctd",
            "é" * 40,
            "😀" * 17,
        ]
    ),
    st.builds(
        lambda p, i, a, g: f"{p}:{i}:{a}:{g}",
        st.sampled_from(PREFIXES),
        st.integers(min_value=-(10**20), max_value=-1),
        st.sampled_from(ACTIONS),
        st.text(max_size=12),
    ),
)


def data(prefix: str, id_: int, action: str, arg: str = "") -> str:
    return f"{prefix}:{id_}:{action}" + (f":{arg}" if arg else "")


unknown_ids = st.integers(min_value=10**9, max_value=10**18 - 1)
# Prefixes whose buttons act on the id they carry (``fltn`` and ``rep`` ignore it).
ID_PREFIXES = ["off", "job", "lang", "cmp", "cmi", "so", "fb", "cj", "pap", "sos", "fu", "flt",
               "hov"]  # fmt: skip
no_such_thing = st.builds(
    data,
    st.sampled_from(ID_PREFIXES),
    unknown_ids,
    st.sampled_from(ACTIONS),
    st.sampled_from(["", "1", "5", "fixed", "en", "quality", "9" * 12]),
)


def button(actor: Actor, raw: str) -> Event:
    return event_for(actor, Kind.BUTTON, data=raw, callback_id="q", message_id=1)


# ---- messages ------------------------------------------------------------------------------

file_ids = st.text(min_size=1, max_size=40)


@st.composite
def message(draw: st.DrawFn, /, actor: Actor, kind: Kind, text: Any = None, **extra: Any) -> Event:
    """A message of ``kind`` from ``actor`` (``text``: a strategy for the text)."""
    fields: dict[str, Any] = {"edited": False, "language": draw(languages)}
    if kind is Kind.TEXT:
        fields["text"] = draw(text if text is not None else commandless_text)
    elif kind is Kind.LOCATION:
        fields["latitude"] = draw(st.floats(-90, 90))
        fields["longitude"] = draw(st.floats(-180, 180))
        fields["live"] = draw(st.booleans())
    elif kind is Kind.CONTACT:
        fields["contact_phone"] = draw(st.one_of(nasty_text, st.just("+1 202 555 0100")))
        fields["contact_user_id"] = draw(st.sampled_from([None, actor.telegram_id + 1]))
    elif kind in (Kind.PHOTO, Kind.VOICE, Kind.DOCUMENT):
        fields["file_ids"] = (draw(file_ids),)
        fields["file_size"] = draw(st.integers(0, 10**9))
        fields["duration"] = draw(st.integers(0, 10**5))
        fields["mime_type"] = draw(st.sampled_from(["", "audio/ogg", "application/zip", "x/\x00"]))
        fields["text"] = draw(st.text(max_size=30))
    fields.update(extra)
    return event_for(actor, kind, **fields)


languages = st.sampled_from([None, "en", "zh-hans", "zh-CN", "fr", "", "EN-gb", "\x00"])


def command(actor: Actor, name: str, args: str = "") -> Event:
    return event_for(actor, Kind.COMMAND, text=f"/{name} {args}".strip(), command=name, args=args)


ROLE_COMMANDS = {  # commands each role may use (anything else is refused)
    "engineer": {"start", "help", "language", "cancel", "jobs", "paper", "complaints", "fault",
                 "duty", "complaint"},
    "supervisor": {"start", "help", "language", "cancel", "report", "fault", "duty", "handover",
                   "complaints", "followups", "complaint"},
    "customer": {"start", "help", "language", "cancel", "myjobs", "complaint", "mycomplaints"},
    "stranger": {"start", "help", "complaint"},
}  # fmt: skip
_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
unknown_command_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1,
                                max_size=40).filter(lambda n: n not in COMMANDS)  # fmt: skip


# Commands that only show something: mid-conversation they answer once and leave the user
# exactly where they were. (A bare /start greets a known user and shows the help: two
# messages by design, so it is in the any-update test only.)
READ_ONLY = {"help", "language", "jobs", "myjobs", "mycomplaints", "duty",
             "complaints", "followups"}  # fmt: skip
start_payloads = st.one_of(
    nasty_text.filter(lambda t: bool(t.strip())),
    st.builds(lambda p, t: p + t, st.sampled_from(["inv_", "job_", "inv", "job"]), nasty_text),
    st.sampled_from(["inv_" + "A" * 24, "job_" + "0" * 12, "inv_\x00", "job_-1"]),
)


def refused_commands(actor: Actor) -> st.SearchStrategy[Event]:
    """Unknown commands, commands of other roles, /start with a bad link, and the commands
    that only show something: each answered once, nothing changed."""
    forbidden = sorted(set(COMMANDS) - ROLE_COMMANDS[actor.role])
    read_only = sorted(READ_ONLY & ROLE_COMMANDS[actor.role])
    return st.one_of(
        st.builds(lambda n, a: command(actor, n, a), unknown_command_names, nasty_text),
        st.builds(lambda n: command(actor, n), st.sampled_from(forbidden)),
        st.builds(lambda n: command(actor, n), st.sampled_from(read_only)),
        st.builds(lambda a: command(actor, "start", a), start_payloads),
    )


# ---- the wrong input for each step ---------------------------------------------------------

ALL_KINDS = [Kind.TEXT, Kind.PHOTO, Kind.VOICE, Kind.DOCUMENT, Kind.CONTACT, Kind.LOCATION,
             Kind.OTHER]  # fmt: skip
# What each step takes as an answer (anything else is the wrong input there). Text marked
# "blank" takes any text except blank or over-long text, which is refused.
TAKES: dict[str, dict[Kind, str]] = {
    "engineer@offer": {},
    "engineer@idle": {},
    "engineer@decline": {Kind.TEXT: "blank"},
    "engineer@contact": {},
    "engineer@eta_contact": {Kind.TEXT: "not_time"},
    "engineer@arrival": {Kind.TEXT: "blank", Kind.LOCATION: "all"},
    "engineer@report_outcome": {},
    "engineer@report_work": {Kind.TEXT: "blank"},
    "engineer@report_parts": {Kind.TEXT: "blank"},
    "engineer@report_photos": {Kind.PHOTO: "all"},
    "engineer@report_extra": {Kind.TEXT: "blank"},
    "engineer@report_confirm": {},
    "engineer@paper": {Kind.PHOTO: "all", Kind.DOCUMENT: "all"},
    "customer@idle": {Kind.CONTACT: "all"},
    "customer@signoff": {Kind.CONTACT: "all"},
    "customer@reason": {Kind.TEXT: "blank", Kind.CONTACT: "all"},
    "customer@rate": {Kind.CONTACT: "all"},
    "customer@comment": {Kind.TEXT: "blank", Kind.CONTACT: "all"},
    "customer@intake_category": {},
    "customer@intake_describe": {
        Kind.TEXT: "blank",
        Kind.PHOTO: "all",
        Kind.VOICE: "all",
        Kind.DOCUMENT: "all",
    },
    "customer@intake_job": {},
    "customer@intake_more": {
        Kind.TEXT: "blank",
        Kind.PHOTO: "all",
        Kind.VOICE: "all",
        Kind.DOCUMENT: "all",
    },
    "customer@answer": {
        Kind.TEXT: "blank",
        Kind.PHOTO: "all",
        Kind.VOICE: "all",
        Kind.DOCUMENT: "all",
    },
    "supervisor@complaint_reply": {
        Kind.TEXT: "blank",
        Kind.PHOTO: "all",
        Kind.VOICE: "all",
        Kind.DOCUMENT: "all",
    },
    "stranger@intake_phone": {Kind.TEXT: "blank", Kind.CONTACT: "all"},
    "supervisor@idle": {},
    "supervisor@handover_notes": {Kind.TEXT: "blank"},
    "supervisor@fault_time": {Kind.TEXT: "all"},
    "stranger@idle": {Kind.CONTACT: "all"},
    "stranger@intake_name": {Kind.TEXT: "blank"},
}
# Valid buttons on the engineer's own job at each step (every other own-job button is stale).
OWN_JOB_ACTIONS: dict[str, set[str]] = {
    "contact": {"ctd"},
    "eta_contact": {"ctd", "eta"},
    "arrival": {"way", "omw"},
    "report_outcome": {"out"},
    "report_parts": {"nopa"},
    "report_photos": {"phd"},
    "report_extra": {"noex"},
    "report_confirm": {"sub", "redo"},
}


def not_time(text: str) -> bool:
    return job._TIME.match(text) is None


def wrong_text(actor: Actor) -> st.SearchStrategy[str] | None:
    """Text that is the wrong answer at the actor's step (None: any text is a fair answer)."""
    rule = TAKES[actor.name].get(Kind.TEXT)
    if rule is None:
        return commandless_text
    if rule == "blank":
        return st.one_of(blank_text, st.just("x" * 10_000))
    if rule == "not_time":
        return commandless_text.filter(not_time)
    return None


def wrong_messages(actor: Actor) -> st.SearchStrategy[Event]:
    takes = TAKES[actor.name]
    options = [
        message(actor, kind)
        for kind in ALL_KINDS
        if kind not in takes and kind is not Kind.TEXT and kind is not Kind.LOCATION
    ]
    text = wrong_text(actor)
    if text is not None:
        options.append(message(actor, Kind.TEXT, text))
    if Kind.LOCATION not in takes:
        options.append(message(actor, Kind.LOCATION))
    return st.one_of(options)


def stale_own_buttons(actor: Actor) -> st.SearchStrategy[Event] | None:
    dispatch_id = actor.own.get("dispatch")
    if actor.role != "engineer" or dispatch_id is None:
        return None
    valid = OWN_JOB_ACTIONS.get(actor.step, set())
    stale = [a for a in ENGINEER_ACTIONS if a not in valid]
    return st.builds(
        lambda a, g: button(actor, data("job", dispatch_id, a, g)),
        st.sampled_from(stale),
        st.sampled_from(["", "fixed", "1", "99999999"]),
    )


def others_buttons(actor: Actor, others: dict[str, list[int]]) -> st.SearchStrategy[Event] | None:
    """Buttons on someone else's things (only where the role may not act on them)."""
    own = actor.own
    if actor.role == "engineer" or actor.role == "stranger":
        dispatches = [d for d in others["dispatch"] if d != own.get("dispatch")]
        offers = [o for o in others["offer"] if o != own.get("offer")]
        return st.one_of(
            st.builds(
                lambda d, a: button(actor, data("job", d, a)),
                st.sampled_from(dispatches),
                st.sampled_from([*ENGINEER_ACTIONS, "open"]),
            ),
            st.builds(
                lambda o, a: button(actor, data("off", o, a, "busy" if a == "dr" else "")),
                st.sampled_from(offers),
                st.sampled_from(["acc", "dec", "dr"]),
            ),
            st.builds(
                lambda d, p: button(actor, data(p, d, "up" if p == "pap" else "sign")),
                st.sampled_from(dispatches),
                st.sampled_from(["pap", "cj"]),
            ),
        )
    if actor.role == "customer":
        signoffs = [s for s in others["signoff"] if s != own.get("signoff")]
        dispatches = [d for d in others["dispatch"] if d != own.get("dispatch")]
        users = [u for u in others["user"] if u != actor.user_id]
        complaints = [c for c in others["complaint"] if c != own.get("complaint")]
        return st.one_of(
            st.builds(
                lambda s, a: button(actor, data("so", s, a)),
                st.sampled_from(signoffs),
                st.sampled_from(["ok", "no"]),
            ),
            st.builds(
                lambda d, r: button(actor, data("fb", d, "r", r)),
                st.sampled_from(dispatches),
                st.sampled_from(["1", "5"]),
            ),
            st.builds(lambda d: button(actor, data("cj", d, "sign")), st.sampled_from(dispatches)),
            st.builds(
                lambda u, a: button(actor, data("cmi", u, a)),
                st.sampled_from(users),
                st.sampled_from(["new", "nojob", "done", "stop"]),
            ),
            st.builds(
                lambda u: button(actor, data("lang", u, "set", "en")), st.sampled_from(users)
            ),
            st.builds(
                lambda c, a: button(actor, data("cmp", c, a, "5" if a == "rate" else "")),
                st.sampled_from(complaints),
                st.sampled_from(["add", "ok", "nok", "rate", "view"]),
            ),
        )
    return None


def wrong_buttons(actor: Actor, others: dict[str, list[int]]) -> st.SearchStrategy[Event]:
    options: list[st.SearchStrategy[Event]] = [
        malformed_data.map(lambda raw: button(actor, raw)),
        no_such_thing.map(lambda raw: button(actor, raw)),
    ]
    for extra in (stale_own_buttons(actor), others_buttons(actor, others)):
        if extra is not None:
            options.append(extra)
    return st.one_of(options)


def edited(actor: Actor) -> st.SearchStrategy[Event]:
    """A live location moving (what the runtimes pass on of edited messages), and an edit of
    an earlier text or media message (which they drop: the handlers must ignore it too)."""
    kinds = [Kind.LOCATION, Kind.LOCATION, Kind.TEXT, Kind.PHOTO, Kind.VOICE, Kind.OTHER]
    return st.sampled_from(kinds).flatmap(
        lambda kind: message(
            actor,
            kind,
            nasty_text if kind is Kind.TEXT else None,
            edited=True,
            **({"live": True} if kind is Kind.LOCATION else {}),
        )
    )
