"""Complaints (投诉, DOMAIN.md §2): intake in seconds, first-responder ownership (首问负责制),
replies through the bot, business-hours SLA clocks with escalation, resolution, the
satisfaction call-back (回访) and the pattern flag.

Stable interface for other areas::

    await open_complaint(uow, customer=user, dispatch=job, category="quality",
                         description="...", source="signoff_rejected")
    await start_intake(uow, customer_user, dispatch_id=job.id)   # the chat conversation
    complaint_button(customer_user.id, job.id)                    # a "File a complaint" button

Status machine (``TRANSITIONS``)::

    new ──take/reassign──► open ◄──customer answers── waiting
     │                      │  └──ask the customer──►   │
     │                      ▼                           │
     └──────────────► resolved ──solved──► closed       │
                        └──not solved──► open (escalated one level)

Clocks are timer rows (kinds below) counted in the organisation's business calendar
(bot/flows/business_hours.py); asking the customer pauses them, their answer resumes them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.callbacks import cb
from bot.core.enums import Priority, Role
from bot.core.messages import REMOVE_KEYBOARD, Button, KeyButton, Msg
from bot.db.models import Dispatch, User
from bot.db.models.complaints import Complaint
from bot.flows.business_hours import BusinessCalendar, add_time, calendar, time_between
from bot.services import complaints as svc
from bot.services import conversations, timers
from bot.services.errors import DomainError
from bot.services.phones import BadPhone, normalise_phone
from bot.services.staff import staff_with_role, supervisors_on_duty
from bot.services.uow import UnitOfWork

CATEGORIES = ("service_attitude", "late_no_show", "quality", "product_fault", "billing", "other")
SOURCES = ("chat", "signoff_rejected", "low_rating", "followup")  # followup: a 回访 answer
SEVERITIES = ("normal", "urgent")
# Complaints an engineer can cause (product faults and billing are not the engineer's doing).
PATTERN_CATEGORIES = ("service_attitude", "late_no_show", "quality", "other")

NEW, OPEN, WAITING, RESOLVED, CLOSED = "new", "open", "waiting", "resolved", "closed"
TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({OPEN}),
    OPEN: frozenset({WAITING, RESOLVED}),
    WAITING: frozenset({OPEN, RESOLVED}),
    RESOLVED: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset(),
}
CLOCK_STATUSES = (NEW, OPEN, WAITING)  # the resolution clock runs (or is paused)
ACTIVE_STATUSES = (NEW, OPEN, WAITING, RESOLVED)  # not closed

# Timer kinds (subject ``complaint:<id>``).
RESPONSE_WARN = "cmp_response_warn"
RESPONSE_BREACH = "cmp_response_breach"
RESPONSE_ESCALATE = "cmp_response_escalate"
RESOLUTION_WARN = "cmp_resolution_warn"
RESOLUTION_BREACH = "cmp_resolution_breach"
RESOLUTION_ESCALATE = "cmp_resolution_escalate"
CALLBACK = "cmp_callback"
RESPONSE_KINDS = (RESPONSE_WARN, RESPONSE_BREACH, RESPONSE_ESCALATE)
RESOLUTION_KINDS = (RESOLUTION_WARN, RESOLUTION_BREACH, RESOLUTION_ESCALATE)
CLOCK_KINDS = RESPONSE_KINDS + RESOLUTION_KINDS
KINDS = (*CLOCK_KINDS, CALLBACK)
WARN_AT = 2 / 3  # warnings when two thirds of a clock are used

# Conversations.
INTAKE = "cmp_intake"  # steps: name, phone, category, job, describe, more
STAFF = "cmp_staff"  # steps: reply, ask, note, xfer, solution, when
ANSWER = "cmp_answer"  # a customer adding to their complaint

MAX_TEXT = 2000
MAX_DESCRIPTION = 12000
MAX_ATTACHMENTS = 20
MAX_VOICE_BYTES = 5 * 1024 * 1024
MAX_FILE_BYTES = 20 * 1024 * 1024  # what the Bot API lets a bot download
MAX_NAME = 100
MAX_AHEAD = timedelta(days=90)
LIMIT_WARNING_EVERY = timedelta(minutes=10)
ESCALATION_REASONS = ("response", "resolution", "not_solved")
WHEN_DAYS = (1, 3, 7)

SUPERVISING = frozenset({Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER})


@dataclass(frozen=True)
class Piece:
    """One message a customer adds to a complaint: text, or a file with an optional caption."""

    kind: str  # text, photo, voice, document, other
    text: str = ""
    file_id: str = ""
    size: int = 0


# ---- small helpers -------------------------------------------------------------------------------


def subject(complaint_id: int) -> str:
    return svc.subject(complaint_id)


def complaint_button(user_id: int, dispatch_id: int | None = None) -> Button:
    """A "File a complaint" button for a customer (optionally about one of their jobs)."""
    return Button.of("cmp_file", cb("cmi", user_id, "new", dispatch_id or ""))


def _move(complaint: Complaint, to: str) -> str:
    if to not in TRANSITIONS[complaint.status]:
        raise DomainError("err_cmp_state", number=complaint.number, status=complaint.status)
    previous, complaint.status = complaint.status, to
    return previous


def _supervising(user: User) -> bool:
    return user.role in {r.value for r in SUPERVISING}


def _is_staff(user: User) -> bool:
    return user.role != Role.CUSTOMER.value


async def _name(uow: UnitOfWork, user_id: int | None) -> str:
    if user_id is None:
        return ""
    user = await uow.session.get(User, user_id)
    return user.name if user else ""


def _resolution_sla(uow: UnitOfWork, complaint: Complaint) -> timedelta:
    if complaint.severity == "urgent":
        return uow.settings.complaint_urgent_resolution_sla
    return uow.settings.complaint_resolution_sla


def _meta(complaint: Complaint, **changes: Any) -> dict[str, Any]:
    meta = dict(complaint.meta or {})
    meta.update(changes)
    complaint.meta = meta
    return meta


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


async def card(uow: UnitOfWork, complaint: Complaint) -> dict[str, Any]:
    """What a message about ``complaint`` shows (never the customer's phone)."""
    job_number = ""
    if complaint.dispatch_id is not None:
        dispatch = await uow.session.get(Dispatch, complaint.dispatch_id)
        job_number = dispatch.number if dispatch else ""
    photos = sum(1 for a in complaint.attachments if a.get("kind") == "photo")
    voices = sum(1 for a in complaint.attachments if a.get("kind") == "voice")
    files = sum(1 for a in complaint.attachments if a.get("kind") == "document")
    return {
        "number": complaint.number,
        "category": complaint.category,
        "severity": complaint.severity,
        "status": complaint.status,
        "source": complaint.source,
        "customer": complaint.contact_name,
        "job": job_number,
        "engineer": await _name(uow, complaint.engineer_id),
        "owner": await _name(uow, complaint.owner_id),
        "description": complaint.description[:1500],
        "photos": photos,
        "voices": voices,
        "files": files,
        "created_at": complaint.created_at,
        "response_due": complaint.response_due,
        "resolution_due": complaint.resolution_due,
        "solution": complaint.solution or "",
        "solution_due": complaint.solution_due,
        "escalation_level": complaint.escalation_level,
    }


def next_promise(complaint: Complaint) -> tuple[str, datetime | None]:
    """What the customer is promised next, and by when."""
    if complaint.status == NEW:
        return "response", complaint.response_due
    if complaint.status == OPEN:
        return "resolution", complaint.resolution_due
    if complaint.status == WAITING:
        return "waiting", None
    if complaint.status == RESOLVED:
        return "completion", complaint.solution_due
    return "closed", None


def next_clock(complaint: Complaint) -> tuple[datetime | None, datetime | None]:
    """The running clock's (warning, deadline); (None, None) when none runs."""
    if complaint.status == NEW:
        return complaint.response_warn_at, complaint.response_due
    if complaint.status == OPEN:
        return complaint.resolution_warn_at, complaint.resolution_due
    return None, None


# ---- recipients ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    user_id: int | None = None
    chat_id: int | None = None

    def msg(self, template: str, params: dict[str, Any], **kw: Any) -> Msg:
        return Msg(template, params, user_id=self.user_id, chat_id=self.chat_id, **kw)


async def supervisor_targets(uow: UnitOfWork) -> list[Target]:
    """The supervisors' group chat when one is configured, else the on-duty supervisor(s)."""
    group = await svc.supervisors_chat(uow)
    if group is not None:
        return [Target(chat_id=group)]
    supervisors = [Target(user_id=s.id) for s in await supervisors_on_duty(uow)]
    return supervisors or await _managers(uow)  # nobody supervises: the manager must know


async def _managers(uow: UnitOfWork) -> list[Target]:
    managers = await staff_with_role(uow, Role.MANAGER)
    return [Target(user_id=m.id) for m in managers if m.chat_id is not None]


async def manager_targets(uow: UnitOfWork) -> list[Target]:
    """Second-level escalations: the manager(s); the supervisors when there is no manager."""
    return await _managers(uow) or await supervisor_targets(uow)


def owner_buttons(complaint: Complaint) -> tuple[tuple[Button, ...], ...]:
    cid = complaint.id
    rows: list[tuple[Button, ...]] = [
        (
            Button.of("cmp_reply", cb("cmp", cid, "reply")),
            Button.of("cmp_ask", cb("cmp", cid, "ask")),
        ),
        (
            Button.of("cmp_transfer", cb("cmp", cid, "xfer")),
            Button.of("cmp_note", cb("cmp", cid, "note")),
        ),
    ]
    last = [Button.of("cmp_call", cb("cmp", cid, "call"))]
    if complaint.severity != "urgent":
        last.append(Button.of("cmp_urgent", cb("cmp", cid, "urg")))
    rows.append(tuple(last))
    rows.append((Button.of("cmp_resolve", cb("cmp", cid, "res")),))
    return tuple(rows)


def escalation_buttons(complaint: Complaint) -> tuple[tuple[Button, ...], ...]:
    cid = complaint.id
    return (
        (
            Button.of("cmp_take_over", cb("cmp", cid, "tko")),
            Button.of("cmp_reassign", cb("cmp", cid, "own")),
        ),
        (
            Button.of("cmp_note", cb("cmp", cid, "note")),
            Button.of("cmp_call", cb("cmp", cid, "call")),
        ),
    )


def take_button(complaint: Complaint) -> tuple[tuple[Button, ...], ...]:
    return ((Button.of("cmp_take", cb("cmp", complaint.id, "take")),),)


def announce_ref(complaint: Complaint) -> str:
    return f"cmpnew:{complaint.id}"


# ---- opening a complaint -------------------------------------------------------------------------


async def open_complaint(
    uow: UnitOfWork,
    *,
    customer: User | None,
    dispatch: Dispatch | None,
    category: str,
    description: str,
    source: str,
    name: str = "",
    phone: str = "",
) -> Complaint:
    """Register a complaint at once: number, SLA clocks (timer rows), tell the customer the
    number and promised first-response time, announce it to the on-duty supervisor(s) (or the
    supervisors' group chat) with a "Take" button. ``source`` is "chat", "signoff_rejected",
    "low_rating" or "followup"; ``category`` one of ``CATEGORIES``."""
    return await _open(
        uow,
        customer=customer,
        dispatch=dispatch,
        category=category,
        description=description,
        source=source,
        name=name,
        phone=phone,
    )


async def _open(
    uow: UnitOfWork,
    *,
    customer: User | None,
    dispatch: Dispatch | None,
    category: str,
    description: str,
    source: str,
    name: str = "",
    phone: str = "",
    attachments: list[dict[str, Any]] | None = None,
    intake: bool = False,
) -> Complaint:
    if category not in CATEGORIES:
        raise ValueError(f"unknown complaint category {category!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown complaint source {source!r}")
    now = uow.clock.now()
    clean_phone: str | None = None
    for candidate in (
        phone,
        customer.phone if customer else None,
        dispatch.contact_phone if dispatch else None,
    ):
        if candidate:
            try:
                clean_phone = normalise_phone(str(candidate), uow.settings.phone_region)
                break
            except BadPhone:
                continue
    contact_name = (
        name.strip()
        or (customer.name if customer else "")
        or (dispatch.contact_name if dispatch else "")
    )[:200]
    complaint = await svc.create(
        uow,
        status=NEW,
        category=category,
        severity="normal",
        source=source,
        customer_user_id=customer.id if customer else None,
        contact_name=contact_name,
        contact_phone=clean_phone,
        address=await svc.site_address(uow, dispatch) if dispatch else None,
        dispatch_id=dispatch.id if dispatch else None,
        engineer_id=dispatch.engineer_id if dispatch else None,
        description=description.strip()[:MAX_DESCRIPTION],
        attachments=list(attachments or []),
        escalation_level=0,
        reopen_count=0,
    )
    _meta(complaint, clock_started=now.isoformat(), paused_s=0.0, messages=1 if intake else 0)
    cal = await calendar(uow)
    await _start_response_clock(uow, complaint, cal, now)
    await _start_resolution_clock(uow, complaint, cal, now)
    await svc.record(
        uow,
        complaint,
        "opened",
        actor=customer if source == "chat" else None,
        source=source,
        category=category,
        dispatch_id=complaint.dispatch_id,
        description=complaint.description[:MAX_TEXT],
        attachments=len(complaint.attachments),
    )
    if customer is not None:
        buttons = None
        if intake:
            buttons = ((Button.of("cmp_done", cb("cmi", customer.id, "done")),),)
        await uow.out.send(
            Msg(
                "cmp_registered",
                {
                    "number": complaint.number,
                    "due": complaint.response_due,
                    "intake": intake,
                    "source": source,
                },
                user_id=customer.id,
                buttons=buttons,
            )
        )
    await _announce(uow, complaint)
    await _check_pattern(uow, complaint)
    return complaint


async def _start_response_clock(
    uow: UnitOfWork, complaint: Complaint, cal: BusinessCalendar | None, now: datetime
) -> None:
    sla = uow.settings.complaint_response_sla
    complaint.response_due = add_time(cal, now, sla)
    complaint.response_warn_at = add_time(cal, now, sla * WARN_AT)
    payload = {"complaint_id": complaint.id}
    sub = subject(complaint.id)
    await timers.schedule(
        uow, kind=RESPONSE_WARN, subject=sub, due_at=complaint.response_warn_at, payload=payload
    )
    await timers.schedule(
        uow, kind=RESPONSE_BREACH, subject=sub, due_at=complaint.response_due, payload=payload
    )


async def _start_resolution_clock(
    uow: UnitOfWork,
    complaint: Complaint,
    cal: BusinessCalendar | None,
    now: datetime,
    elapsed: timedelta = timedelta(0),
) -> None:
    """Resolution deadline and warning, ``elapsed`` of the clock already used."""
    sla = _resolution_sla(uow, complaint)
    payload = {"complaint_id": complaint.id}
    sub = subject(complaint.id)
    complaint.resolution_due = add_time(cal, now, max(sla - elapsed, timedelta(0)))
    warn_left = sla * WARN_AT - elapsed
    if warn_left > timedelta(0):
        complaint.resolution_warn_at = add_time(cal, now, warn_left)
        await timers.schedule(
            uow,
            kind=RESOLUTION_WARN,
            subject=sub,
            due_at=complaint.resolution_warn_at,
            payload=payload,
        )
    else:
        complaint.resolution_warn_at = now
    await timers.schedule(
        uow, kind=RESOLUTION_BREACH, subject=sub, due_at=complaint.resolution_due, payload=payload
    )


async def _announce(uow: UnitOfWork, complaint: Complaint) -> None:
    """The new complaint to the people who must act: the on-duty supervisor(s) or the group."""
    params = await card(uow, complaint)
    sent: list[dict[str, int]] = []
    for target in await supervisor_targets(uow):
        ok = await uow.out.send(
            target.msg(
                "cmp_new",
                params,
                buttons=take_button(complaint),
                ref=announce_ref(complaint),
                priority=Priority.URGENT,
            )
        )
        if ok:
            sent.append(
                {"user_id": target.user_id} if target.user_id else {"chat_id": target.chat_id or 0}
            )
    _meta(complaint, announced=sent)


async def _check_pattern(uow: UnitOfWork, complaint: Complaint) -> None:
    """The third complaint about one engineer within the window goes to the supervisor."""
    if complaint.engineer_id is None or complaint.category not in PATTERN_CATEGORIES:
        return
    since = uow.clock.now() - uow.settings.complaint_pattern_window
    recent = await svc.recent_about_engineer(uow, complaint.engineer_id, since, PATTERN_CATEGORIES)
    if len(recent) < 3:
        return
    three = recent[:3]
    tickets = [await card(uow, c) for c in reversed(three)]
    days = max(1, round(uow.settings.complaint_pattern_window.total_seconds() / 86400))
    params = {
        "engineer": await _name(uow, complaint.engineer_id),
        "days": days,
        "count": len(recent),
        "tickets": tickets,
    }
    for target in await supervisor_targets(uow):
        await uow.out.send(target.msg("cmp_pattern", params, priority=Priority.URGENT))
    await svc.record(
        uow,
        complaint,
        "pattern_flagged",
        engineer_id=complaint.engineer_id,
        complaints=[c.number for c in three],
    )


# ---- the customer's intake conversation ----------------------------------------------------------


async def start_intake(
    uow: UnitOfWork, user: User, *, dispatch_id: int | None = None, fresh: bool = False
) -> None:
    """Begin the complaint conversation for a customer (``fresh``: a stranger just created,
    asked for name and phone first). ``dispatch_id`` preselects one of their own jobs."""
    if _is_staff(user):
        raise DomainError("err_cmp_staff_intake")
    dispatch = None
    if dispatch_id is not None:
        found = await uow.session.get(Dispatch, dispatch_id)
        if found is not None and found.customer_user_id == user.id:
            dispatch = found
    data: dict[str, Any] = {"dispatch_id": dispatch.id if dispatch else None}
    unknown = user.phone is None and not await svc.customer_jobs(uow, user, limit=1)
    if fresh or not user.name or unknown:  # a stranger: name and phone first
        await conversations.enter(uow, user.id, INTAKE, "name", **data)
        await uow.out.send(Msg("cmp_ask_name", {}, user_id=user.id, keyboard=REMOVE_KEYBOARD))
        return
    await _ask_category(uow, user, data)


async def start_for_stranger(
    uow: UnitOfWork, *, telegram_id: int, chat_id: int, first_name: str, language: str | None
) -> User:
    """``/complaint`` from someone we do not know: a customer record bound to their account."""
    user = await svc.customer_for_telegram(
        uow, telegram_id=telegram_id, chat_id=chat_id, name=first_name, language=language
    )
    if user is None:
        raise DomainError("err_forbidden")
    await start_intake(uow, user, fresh=True)
    return user


async def _ask_category(uow: UnitOfWork, user: User, data: dict[str, Any]) -> None:
    await conversations.enter(uow, user.id, INTAKE, "category", **data)
    rows = [(Button.of(f"cmp_cat_{c}", cb("cmi", user.id, "cat", c)),) for c in CATEGORIES]
    rows.append((Button.of("cmp_stop", cb("cmi", user.id, "stop")),))
    await uow.out.send(Msg("cmp_ask_category", {}, user_id=user.id, buttons=tuple(rows)))


async def intake_name(uow: UnitOfWork, user: User, data: dict[str, Any], text: str) -> None:
    name = " ".join(text.split())
    if not name or len(name) > MAX_NAME or name.startswith("/"):
        raise DomainError("err_cmp_name", limit=MAX_NAME)
    user.name = name
    await conversations.enter(uow, user.id, INTAKE, "phone", **data)
    await uow.out.send(
        Msg(
            "cmp_ask_phone",
            {"name": name},
            user_id=user.id,
            keyboard=((KeyButton("cmp_share_phone", request_contact=True),),),
        )
    )


async def intake_phone(uow: UnitOfWork, user: User, data: dict[str, Any], phone: str) -> None:
    try:
        user.phone = normalise_phone(phone, uow.settings.phone_region)
    except BadPhone:
        raise DomainError("err_cmp_phone") from None
    await uow.out.send(Msg("cmp_phone_saved", {}, user_id=user.id, keyboard=REMOVE_KEYBOARD))
    await _ask_category(uow, user, data)


async def intake_category(uow: UnitOfWork, user: User, category: str) -> None:
    step = await _intake_step(uow, user, "category")
    if category not in CATEGORIES:
        raise DomainError("err_stale_button")
    data = {**step.data, "category": category}
    if data.get("dispatch_id") is None:
        jobs = await svc.customer_jobs(uow, user)
        if jobs:
            await conversations.enter(uow, user.id, INTAKE, "job", **data)
            rows = [
                (Button.of("cmp_job", cb("cmi", user.id, "job", j.id), number=j.number),)
                for j in jobs
            ]
            rows.append((Button.of("cmp_no_job", cb("cmi", user.id, "nojob")),))
            await uow.out.send(Msg("cmp_ask_job", {}, user_id=user.id, buttons=tuple(rows)))
            return
    await _ask_description(uow, user, data)


async def intake_job(uow: UnitOfWork, user: User, dispatch_id: int | None) -> None:
    step = await _intake_step(uow, user, "job")
    if dispatch_id is not None:
        dispatch = await uow.session.get(Dispatch, dispatch_id)
        if dispatch is None or dispatch.customer_user_id != user.id:
            raise DomainError("err_stale_button")
    await _ask_description(uow, user, {**step.data, "dispatch_id": dispatch_id})


async def _ask_description(uow: UnitOfWork, user: User, data: dict[str, Any]) -> None:
    await conversations.enter(uow, user.id, INTAKE, "describe", **data)
    await uow.out.send(Msg("cmp_ask_description", {}, user_id=user.id))


async def _intake_step(uow: UnitOfWork, user: User, *steps: str) -> conversations.Step:
    step = await conversations.current(uow, user.id)
    if step is None or step.flow != INTAKE or step.step not in steps:
        raise DomainError("err_stale_button")
    return step


def _check_piece(complaint: Complaint | None, piece: Piece) -> None:
    """Refuse what cannot be added (nothing is changed by a refusal)."""
    if piece.kind == "other":
        raise DomainError("err_cmp_unsupported")
    text = piece.text.strip()
    if piece.kind == "text" and not text:
        raise DomainError("err_cmp_description_empty")
    if len(text) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    if piece.kind == "voice" and piece.size > MAX_VOICE_BYTES:
        raise DomainError("err_cmp_voice_too_big", mb=MAX_VOICE_BYTES // (1024 * 1024))
    if piece.kind in ("photo", "document") and piece.size > MAX_FILE_BYTES:
        raise DomainError("err_cmp_file_too_big", mb=MAX_FILE_BYTES // (1024 * 1024))
    if complaint is not None and len(complaint.description) + len(text) > MAX_DESCRIPTION:
        raise DomainError("err_too_long", limit=MAX_DESCRIPTION)


def _attachment(piece: Piece, actor: User | None, now: datetime) -> dict[str, Any]:
    return {
        "kind": piece.kind,
        "file_id": piece.file_id,
        "at": now.isoformat(),
        "by": actor.id if actor else None,
    }


async def _attachments_full(uow: UnitOfWork, complaint: Complaint, user: User) -> bool:
    """True (and the customer told, at most every few minutes) when no file fits any more."""
    if len(complaint.attachments) < MAX_ATTACHMENTS:
        return False
    now = uow.clock.now()
    warned = _when((complaint.meta or {}).get("limit_warned_at"))
    if warned is None or now - warned >= LIMIT_WARNING_EVERY:
        _meta(complaint, limit_warned_at=now.isoformat())
        await uow.out.send(Msg("err_cmp_attachments", {"limit": MAX_ATTACHMENTS}, user_id=user.id))
    return True


async def intake_piece(uow: UnitOfWork, user: User, piece: Piece) -> Complaint | None:
    """A description message: the first one registers the complaint at once."""
    step = await _intake_step(uow, user, "describe", "more")
    if step.step == "describe":
        _check_piece(None, piece)
        dispatch = None
        if step.data.get("dispatch_id") is not None:
            dispatch = await uow.session.get(Dispatch, int(step.data["dispatch_id"]))
        now = uow.clock.now()
        files = [_attachment(piece, user, now)] if piece.file_id else []
        complaint = await _open(
            uow,
            customer=user,
            dispatch=dispatch,
            category=str(step.data.get("category") or "other"),
            description=piece.text,
            source="chat",
            name=user.name,
            phone=user.phone or "",
            attachments=files,
            intake=True,
        )
        await conversations.enter(
            uow, user.id, INTAKE, "more", **{**step.data, "complaint_id": complaint.id}
        )
        return complaint
    complaint = await _customer_complaint(uow, user, int(step.data["complaint_id"]))
    if complaint.status == CLOSED:
        await conversations.leave(uow, user.id, INTAKE)
        await uow.out.send(Msg("err_cmp_closed", {"number": complaint.number}, user_id=user.id))
        return complaint
    if await add_piece(uow, complaint, user, piece):
        await uow.out.send(
            Msg(
                "cmp_added",
                {"number": complaint.number, "count": _pieces(complaint)},
                user_id=user.id,
                buttons=((Button.of("cmp_done", cb("cmi", user.id, "done")),),),
            )
        )
    return complaint


def _pieces(complaint: Complaint) -> int:
    """How many messages the customer has sent for this complaint."""
    return int((complaint.meta or {}).get("messages", 0))


async def intake_done(uow: UnitOfWork, user: User) -> Complaint:
    """ "Done": the description is complete; the customer gets the summary."""
    step = await _intake_step(uow, user, "describe", "more", "category", "job")
    if step.step != "more":
        raise DomainError("err_cmp_description_empty")
    complaint = await _customer_complaint(uow, user, int(step.data["complaint_id"]))
    await conversations.leave(uow, user.id, INTAKE)
    await svc.record(uow, complaint, "intake_done", actor=user)
    params = await card(uow, complaint)
    await uow.out.send(Msg("cmp_intake_done", params, user_id=user.id))
    return complaint


async def intake_stop(uow: UnitOfWork, user: User) -> None:
    await _intake_step(uow, user, "name", "phone", "category", "job", "describe")
    await conversations.leave(uow, user.id, INTAKE)
    await uow.out.send(Msg("cmp_intake_stopped", {}, user_id=user.id, keyboard=REMOVE_KEYBOARD))


# ---- adding information (customer) ---------------------------------------------------------------


async def _customer_complaint(uow: UnitOfWork, user: User, complaint_id: int) -> Complaint:
    """The customer's own complaint; anyone else's looks exactly like a missing one."""
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.customer_user_id != user.id:
        raise DomainError("err_cmp_not_found")
    return complaint


async def add_piece(uow: UnitOfWork, complaint: Complaint, user: User, piece: Piece) -> bool:
    """Append a customer's message to the ticket and pass it to the owner; False if it did
    not fit (the customer was told)."""
    _check_piece(complaint, piece)
    if piece.file_id and await _attachments_full(uow, complaint, user):
        return False
    now = uow.clock.now()
    text = piece.text.strip()
    if text:
        joined = f"{complaint.description}\n\n{text}" if complaint.description else text
        complaint.description = joined
    if piece.file_id:
        complaint.attachments = [*complaint.attachments, _attachment(piece, user, now)]
    _meta(complaint, messages=_pieces(complaint) + 1)
    await svc.record(
        uow,
        complaint,
        "customer_message",
        actor=user,
        piece=piece.kind,
        text=text,
        file_id=piece.file_id or None,
    )
    if complaint.owner_id is not None:
        await uow.out.send(
            Msg(
                "cmp_relay_to_owner",
                {
                    "number": complaint.number,
                    "customer": complaint.contact_name,
                    "text": text,
                    "kind": piece.kind,
                },
                user_id=complaint.owner_id,
                buttons=(
                    (
                        Button.of("cmp_reply", cb("cmp", complaint.id, "reply")),
                        Button.of("cmp_resolve", cb("cmp", complaint.id, "res")),
                    ),
                ),
            )
        )
        if piece.file_id:
            await svc.send_file(uow, complaint.owner_id, piece.kind, piece.file_id)
    if complaint.status == WAITING:
        await resume(uow, complaint, user)
    return True


async def customer_says(uow: UnitOfWork, user: User, complaint_id: int, piece: Piece) -> None:
    """A customer's message while adding to (or answering about) one complaint."""
    complaint = await _customer_complaint(uow, user, complaint_id)
    if complaint.status == CLOSED:
        await conversations.leave(uow, user.id, ANSWER)
        await uow.out.send(Msg("err_cmp_closed", {"number": complaint.number}, user_id=user.id))
        return
    if await add_piece(uow, complaint, user, piece):
        await uow.out.send(
            Msg(
                "cmp_customer_sent",
                {"number": complaint.number, "owner": await _name(uow, complaint.owner_id)},
                user_id=user.id,
            )
        )


async def ask_customer_to_add(uow: UnitOfWork, user: User, complaint_id: int) -> None:
    """The customer's "Add information" button: their next messages go to this complaint."""
    complaint = await _customer_complaint(uow, user, complaint_id)
    if complaint.status == CLOSED:
        raise DomainError("err_cmp_closed", number=complaint.number)
    await conversations.enter(uow, user.id, ANSWER, "add", complaint_id=complaint.id)
    await uow.out.send(
        Msg(
            "cmp_ask_add",
            {"number": complaint.number, "owner": await _name(uow, complaint.owner_id)},
            user_id=user.id,
        )
    )


# ---- first responder -----------------------------------------------------------------------------


async def _staff_complaint(uow: UnitOfWork, complaint_id: int) -> Complaint:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None:
        raise DomainError("err_cmp_not_found")
    return complaint


def _not_closed(complaint: Complaint) -> None:
    if complaint.status == CLOSED:
        raise DomainError("err_cmp_closed", number=complaint.number)


def _not_about_self(complaint: Complaint, user: User) -> None:
    if complaint.engineer_id is not None and complaint.engineer_id == user.id:
        raise DomainError("err_cmp_own_job", number=complaint.number)


async def take(uow: UnitOfWork, staff: User, complaint_id: int) -> Complaint:
    """The first staff member who takes the complaint owns it (atomically)."""
    complaint = await _staff_complaint(uow, complaint_id)
    _not_closed(complaint)
    _not_about_self(complaint, staff)
    if not _supervising(staff):
        # "Take" is on the announcement, which only the supervising roles receive; owning
        # would show an engineer a customer's phone and address (DOMAIN.md §7).
        raise DomainError("err_cmp_not_found")
    if complaint.owner_id == staff.id:
        raise DomainError("err_cmp_yours_already", number=complaint.number)
    if complaint.owner_id is not None or not await svc.claim_owner(
        uow, complaint, staff.id, open_statuses=CLOCK_STATUSES
    ):
        if complaint.status == CLOSED:
            raise DomainError("err_cmp_closed", number=complaint.number)
        raise DomainError(
            "err_cmp_taken", number=complaint.number, name=await _name(uow, complaint.owner_id)
        )
    await _became_owner(uow, complaint, staff, kind="taken", actor=staff)
    return complaint


async def _became_owner(
    uow: UnitOfWork,
    complaint: Complaint,
    owner: User,
    *,
    kind: str,
    actor: User,
    previous: int | None = None,
) -> None:
    now = uow.clock.now()
    complaint.owner_id = owner.id
    if complaint.taken_at is None:
        complaint.taken_at = now
    first = complaint.first_response_at is None
    if first:
        complaint.first_response_at = now
        await timers.cancel(uow, subject=subject(complaint.id), kinds=RESPONSE_KINDS)
        if complaint.status == NEW:
            _move(complaint, OPEN)
        await _edit_announcement(uow, complaint, owner)
    await svc.record(
        uow, complaint, kind, actor=actor, owner_id=owner.id, previous_owner_id=previous
    )
    params = await card(uow, complaint)
    params["by"] = actor.name if actor.id != owner.id else ""
    await uow.out.send(
        Msg("cmp_owner_card", params, user_id=owner.id, buttons=owner_buttons(complaint))
    )
    for item in complaint.attachments:
        await svc.send_file(uow, owner.id, str(item.get("kind")), str(item.get("file_id")))
    if complaint.customer_user_id is not None:
        await uow.out.send(
            Msg(
                "cmp_customer_owner",
                {"number": complaint.number, "owner": owner.name, "changed": previous is not None},
                user_id=complaint.customer_user_id,
            )
        )


async def _edit_announcement(uow: UnitOfWork, complaint: Complaint, owner: User) -> None:
    """Everyone who got the "Take" button now sees who took it."""
    params = {"number": complaint.number, "name": owner.name}
    for item in (complaint.meta or {}).get("announced", []):
        await uow.out.send(
            Msg(
                "cmp_taken_by",
                params,
                user_id=item.get("user_id"),
                chat_id=item.get("chat_id"),
                edit=announce_ref(complaint),
            )
        )


async def take_over(uow: UnitOfWork, staff: User, complaint_id: int) -> Complaint:
    """An escalation's "Take over": the supervisor becomes the owner."""
    complaint = await _staff_complaint(uow, complaint_id)
    _not_closed(complaint)
    if complaint.owner_id is None:
        return await take(uow, staff, complaint_id)
    return await reassign(uow, staff, complaint_id, staff.id)


async def reassign(
    uow: UnitOfWork, supervisor: User, complaint_id: int, owner_id: int
) -> Complaint:
    """A supervisor gives ownership to another staff member explicitly."""
    complaint = await _staff_complaint(uow, complaint_id)
    _not_closed(complaint)
    new_owner = await uow.session.get(User, owner_id)
    if new_owner is None or not new_owner.active or not _is_staff(new_owner):
        raise DomainError("err_stale_button")
    _not_about_self(complaint, new_owner)
    previous = complaint.owner_id
    if previous == new_owner.id:
        raise DomainError(
            "err_cmp_yours_already" if new_owner.id == supervisor.id else "err_cmp_same_owner",
            number=complaint.number,
            name=new_owner.name,
        )
    if previous is None and not await svc.claim_owner(
        uow, complaint, new_owner.id, open_statuses=CLOCK_STATUSES
    ):
        raise DomainError(
            "err_cmp_taken", number=complaint.number, name=await _name(uow, complaint.owner_id)
        )
    await _became_owner(
        uow, complaint, new_owner, kind="reassigned", actor=supervisor, previous=previous
    )
    if previous is not None:
        await uow.out.send(
            Msg(
                "cmp_owner_removed",
                {"number": complaint.number, "name": new_owner.name, "by": supervisor.name},
                user_id=previous,
            )
        )
    if supervisor.id != new_owner.id:
        await uow.out.send(
            Msg(
                "cmp_reassigned",
                {"number": complaint.number, "name": new_owner.name},
                user_id=supervisor.id,
            )
        )
    return complaint


async def choose_owner(uow: UnitOfWork, supervisor: User, complaint_id: int) -> None:
    complaint = await _staff_complaint(uow, complaint_id)
    _not_closed(complaint)
    exclude = {complaint.owner_id or 0, complaint.engineer_id or 0}
    people = await svc.staff_choices(uow, exclude=exclude)
    if not people:
        raise DomainError("err_cmp_nobody")
    rows = tuple(
        (Button.of("cmp_person", cb("cmp", complaint.id, "ownto", p.id), name=p.name),)
        for p in people
    )
    await uow.out.send(
        Msg("cmp_ask_owner", {"number": complaint.number}, user_id=supervisor.id, buttons=rows)
    )


# ---- the owner's work ----------------------------------------------------------------------------


async def owned(uow: UnitOfWork, staff: User, complaint_id: int) -> Complaint:
    """The complaint if ``staff`` owns it and it is not closed."""
    complaint = await _staff_complaint(uow, complaint_id)
    if complaint.owner_id != staff.id:
        if not _supervising(staff) and complaint.worker_id != staff.id:
            raise DomainError("err_cmp_not_found")
        raise DomainError(
            "err_cmp_not_owner", number=complaint.number, name=await _name(uow, complaint.owner_id)
        )
    _not_closed(complaint)
    return complaint


async def _customer_reachable(uow: UnitOfWork, complaint: Complaint) -> User:
    customer = (
        await uow.session.get(User, complaint.customer_user_id)
        if complaint.customer_user_id
        else None
    )
    if customer is None or customer.chat_id is None or not customer.active:
        raise DomainError("err_cmp_customer_offline", number=complaint.number)
    return customer


async def begin_reply(uow: UnitOfWork, staff: User, complaint_id: int, *, ask: bool) -> None:
    """The owner's "Message the customer" / "Ask the customer": their next message is relayed."""
    complaint = await owned(uow, staff, complaint_id)
    if complaint.status == RESOLVED and ask:
        raise DomainError("err_cmp_state", number=complaint.number, status=complaint.status)
    await _customer_reachable(uow, complaint)
    step = "ask" if ask else "reply"
    await conversations.enter(uow, staff.id, STAFF, step, complaint_id=complaint.id)
    await uow.out.send(
        Msg("cmp_ask_reply", {"number": complaint.number, "ask": ask}, user_id=staff.id)
    )


async def relay_to_customer(
    uow: UnitOfWork, staff: User, complaint_id: int, piece: Piece, *, ask: bool
) -> None:
    """The owner's message reaches the customer with the owner's name (and stays on record)."""
    complaint = await owned(uow, staff, complaint_id)
    if piece.kind == "other" or (piece.kind == "text" and not piece.text.strip()):
        raise DomainError("err_cmp_unsupported")
    if len(piece.text) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    customer = await _customer_reachable(uow, complaint)
    text = piece.text.strip()
    await conversations.leave(uow, staff.id, STAFF)
    await uow.out.send(
        Msg(
            "cmp_relay_to_customer",
            {"number": complaint.number, "owner": staff.name, "text": text, "ask": ask},
            user_id=customer.id,
            buttons=((Button.of("cmp_answer", cb("cmp", complaint.id, "add")),),),
        )
    )
    if piece.file_id:
        await svc.send_file(uow, customer.id, piece.kind, piece.file_id)
    await svc.record(
        uow,
        complaint,
        "owner_question" if ask else "owner_message",
        actor=staff,
        piece=piece.kind,
        text=text,
        file_id=piece.file_id or None,
    )
    current = await conversations.current(uow, customer.id)
    if current is None or current.flow == ANSWER:
        await conversations.enter(uow, customer.id, ANSWER, "answer", complaint_id=complaint.id)
    if ask and complaint.status == OPEN:
        await pause(uow, complaint, staff)
    await uow.out.send(
        Msg(
            "cmp_sent_to_customer",
            {"number": complaint.number, "paused": complaint.status == WAITING},
            user_id=staff.id,
        )
    )


async def pause(uow: UnitOfWork, complaint: Complaint, actor: User) -> None:
    """Waiting on the customer: the running clocks stop, keeping the time they had left."""
    now = uow.clock.now()
    cal = await calendar(uow)
    snapshot = []
    for timer in await svc.pending_timers(uow, subject(complaint.id), CLOCK_KINDS):
        left = time_between(cal, now, timer.due_at) if timer.due_at > now else timedelta(0)
        snapshot.append(
            {"kind": timer.kind, "payload": dict(timer.payload), "left_s": left.total_seconds()}
        )
    await timers.cancel(uow, subject=subject(complaint.id), kinds=CLOCK_KINDS)
    _move(complaint, WAITING)
    complaint.paused_at = now
    _meta(complaint, paused=snapshot)
    await svc.record(uow, complaint, "paused", actor=actor)


async def resume(uow: UnitOfWork, complaint: Complaint, actor: User | None) -> None:
    """The customer answered: the clocks run again from where they stopped."""
    if complaint.status != WAITING:
        return
    now = uow.clock.now()
    cal = await calendar(uow)
    meta = complaint.meta or {}
    for item in meta.get("paused", []):
        due = add_time(cal, now, timedelta(seconds=float(item["left_s"])))
        await timers.schedule(
            uow,
            kind=item["kind"],
            subject=subject(complaint.id),
            due_at=due,
            payload=item["payload"],
        )
        if item["kind"] == RESOLUTION_BREACH:
            complaint.resolution_due = due
        elif item["kind"] == RESOLUTION_WARN:
            complaint.resolution_warn_at = due
    paused_for = (
        time_between(cal, complaint.paused_at, now) if complaint.paused_at else timedelta(0)
    )
    _meta(
        complaint,
        paused=[],
        paused_s=float(meta.get("paused_s", 0.0)) + paused_for.total_seconds(),
    )
    complaint.paused_at = None
    _move(complaint, OPEN)
    await svc.record(uow, complaint, "resumed", actor=actor, paused_s=paused_for.total_seconds())
    if complaint.owner_id is not None:
        await uow.out.send(
            Msg(
                "cmp_resumed",
                {"number": complaint.number, "due": complaint.resolution_due},
                user_id=complaint.owner_id,
            )
        )


async def mark_urgent(uow: UnitOfWork, staff: User, complaint_id: int) -> Complaint:
    """Severity "urgent": the resolution clock uses COMPLAINT_URGENT_RESOLUTION_SLA."""
    complaint = await _staff_complaint(uow, complaint_id)
    if complaint.owner_id != staff.id and not _supervising(staff):
        raise DomainError(
            "err_cmp_not_owner", number=complaint.number, name=await _name(uow, complaint.owner_id)
        )
    if complaint.severity == "urgent":
        raise DomainError("err_cmp_urgent_already", number=complaint.number)
    if complaint.status not in (NEW, OPEN):
        raise DomainError("err_cmp_state", number=complaint.number, status=complaint.status)
    now = uow.clock.now()
    complaint.severity = "urgent"
    if complaint.resolution_due is not None and complaint.resolution_due > now:
        cal = await calendar(uow)
        started = _when((complaint.meta or {}).get("clock_started")) or complaint.created_at
        paused = timedelta(seconds=float((complaint.meta or {}).get("paused_s", 0.0)))
        elapsed = max(time_between(cal, started, now) - paused, timedelta(0))
        await timers.cancel(
            uow, subject=subject(complaint.id), kinds=(RESOLUTION_WARN, RESOLUTION_BREACH)
        )
        await _start_resolution_clock(uow, complaint, cal, now, elapsed)
    await svc.record(uow, complaint, "severity", actor=staff, severity="urgent")
    await uow.out.send(
        Msg(
            "cmp_urgent_set",
            {"number": complaint.number, "due": complaint.resolution_due},
            user_id=staff.id,
        )
    )
    return complaint


# ---- transfer of work and notes ------------------------------------------------------------------


async def choose_worker(uow: UnitOfWork, staff: User, complaint_id: int) -> None:
    complaint = await owned(uow, staff, complaint_id)
    people = await svc.staff_choices(uow, exclude={staff.id, complaint.engineer_id or 0})
    if not people:
        raise DomainError("err_cmp_nobody")
    rows = tuple(
        (Button.of("cmp_person", cb("cmp", complaint.id, "xto", p.id), name=p.name),)
        for p in people
    )
    await uow.out.send(
        Msg("cmp_ask_worker", {"number": complaint.number}, user_id=staff.id, buttons=rows)
    )


async def pick_worker(uow: UnitOfWork, staff: User, complaint_id: int, worker_id: int) -> None:
    complaint = await owned(uow, staff, complaint_id)
    worker = await uow.session.get(User, worker_id)
    if worker is None or not worker.active or not _is_staff(worker) or worker.id == staff.id:
        raise DomainError("err_stale_button")
    _not_about_self(complaint, worker)
    await conversations.enter(
        uow, staff.id, STAFF, "xfer", complaint_id=complaint.id, worker_id=worker.id
    )
    await uow.out.send(
        Msg(
            "cmp_ask_instruction",
            {"number": complaint.number, "name": worker.name},
            user_id=staff.id,
        )
    )


async def transfer(
    uow: UnitOfWork, staff: User, complaint_id: int, worker_id: int, instruction: str
) -> Complaint:
    """The owner asks someone else to act; ownership and the customer contact stay with them."""
    complaint = await owned(uow, staff, complaint_id)
    instruction = instruction.strip()
    if not instruction:
        raise DomainError("err_text_empty")
    if len(instruction) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    worker = await uow.session.get(User, worker_id)
    if worker is None or not worker.active or not _is_staff(worker):
        raise DomainError("err_stale_button")
    complaint.worker_id = worker.id
    await conversations.leave(uow, staff.id, STAFF)
    await svc.record(
        uow, complaint, "transferred", actor=staff, worker_id=worker.id, instruction=instruction
    )
    params = await card(uow, complaint)
    params.update(instruction=instruction, by=staff.name)
    await uow.out.send(
        Msg(
            "cmp_work_request",
            params,
            user_id=worker.id,
            buttons=(
                (
                    Button.of("cmp_note", cb("cmp", complaint.id, "note")),
                    Button.of("cmp_work_done", cb("cmp", complaint.id, "wdone")),
                ),
            ),
        )
    )
    await uow.out.send(
        Msg("cmp_transferred", {"number": complaint.number, "name": worker.name}, user_id=staff.id)
    )
    return complaint


async def work_done(uow: UnitOfWork, staff: User, complaint_id: int) -> None:
    complaint = await _staff_complaint(uow, complaint_id)
    if complaint.worker_id != staff.id:
        raise DomainError("err_stale_button")
    complaint.worker_id = None
    await svc.record(uow, complaint, "work_done", actor=staff)
    await uow.out.send(
        Msg("cmp_work_done", {"number": complaint.number, "name": staff.name}, user_id=staff.id)
    )
    if complaint.owner_id is not None:
        await uow.out.send(
            Msg(
                "cmp_work_done",
                {"number": complaint.number, "name": staff.name},
                user_id=complaint.owner_id,
                buttons=owner_buttons(complaint) if complaint.status != CLOSED else None,
            )
        )


def _may_act(complaint: Complaint, staff: User) -> bool:
    return staff.id in (complaint.owner_id, complaint.worker_id) or _supervising(staff)


async def begin_note(uow: UnitOfWork, staff: User, complaint_id: int) -> None:
    complaint = await _staff_complaint(uow, complaint_id)
    if not _may_act(complaint, staff):
        raise DomainError("err_cmp_not_found")
    await conversations.enter(uow, staff.id, STAFF, "note", complaint_id=complaint.id)
    await uow.out.send(Msg("cmp_ask_note", {"number": complaint.number}, user_id=staff.id))


async def add_note(uow: UnitOfWork, staff: User, complaint_id: int, text: str) -> None:
    """A note on the ticket's record; the owner reads every note others add."""
    complaint = await _staff_complaint(uow, complaint_id)
    if not _may_act(complaint, staff):
        raise DomainError("err_cmp_not_found")
    text = text.strip()
    if not text:
        raise DomainError("err_text_empty")
    if len(text) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    await conversations.leave(uow, staff.id, STAFF)
    await svc.record(uow, complaint, "note", actor=staff, text=text)
    await uow.out.send(Msg("cmp_note_saved", {"number": complaint.number}, user_id=staff.id))
    if complaint.owner_id is not None and complaint.owner_id != staff.id:
        await uow.out.send(
            Msg(
                "cmp_note_to_owner",
                {"number": complaint.number, "name": staff.name, "text": text},
                user_id=complaint.owner_id,
            )
        )


async def show_phone(uow: UnitOfWork, staff: User, complaint_id: int) -> None:
    """ "Call customer": the phone goes to this staff member only (and the look is recorded)."""
    complaint = await _staff_complaint(uow, complaint_id)
    if staff.id != complaint.owner_id and not _supervising(staff):
        raise DomainError("err_cmp_not_found")
    await svc.record(uow, complaint, "phone_shown", actor=staff)
    await uow.out.send(
        Msg(
            "cmp_phone",
            {
                "number": complaint.number,
                "customer": complaint.contact_name,
                "phone": complaint.contact_phone or "",
                "address": complaint.address or "",
            },
            user_id=staff.id,
        )
    )


# ---- resolution and the call-back ----------------------------------------------------------------


async def begin_resolve(uow: UnitOfWork, staff: User, complaint_id: int) -> None:
    complaint = await owned(uow, staff, complaint_id)
    if complaint.status not in (OPEN, WAITING):
        raise DomainError("err_cmp_state", number=complaint.number, status=complaint.status)
    await conversations.enter(uow, staff.id, STAFF, "solution", complaint_id=complaint.id)
    await uow.out.send(Msg("cmp_ask_solution", {"number": complaint.number}, user_id=staff.id))


async def solution_text(uow: UnitOfWork, staff: User, complaint_id: int, text: str) -> None:
    complaint = await owned(uow, staff, complaint_id)
    text = text.strip()
    if not text:
        raise DomainError("err_text_empty")
    if len(text) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    await conversations.enter(
        uow, staff.id, STAFF, "when", complaint_id=complaint.id, solution=text
    )
    rows: list[tuple[Button, ...]] = [
        (Button.of("cmp_when_now", cb("cmp", complaint.id, "when", 0)),)
    ]
    rows.append(
        tuple(
            Button.of("cmp_when_days", cb("cmp", complaint.id, "when", d), days=d)
            for d in WHEN_DAYS
        )
    )
    await uow.out.send(
        Msg("cmp_ask_when", {"number": complaint.number}, user_id=staff.id, buttons=tuple(rows))
    )


def parse_when(text: str, tz: str) -> datetime:
    """``2026-12-03 15:00`` in the organisation's time zone."""
    match = re.fullmatch(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise DomainError("err_cmp_when")
    try:
        year, month, day, hour, minute = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))
    except ValueError:
        raise DomainError("err_cmp_when") from None


async def _solution_step(uow: UnitOfWork, staff: User, complaint_id: int) -> str:
    step = await conversations.current(uow, staff.id)
    if (
        step is None
        or step.flow != STAFF
        or step.step != "when"
        or int(step.data.get("complaint_id", 0)) != complaint_id
    ):
        raise DomainError("err_stale_button")
    return str(step.data["solution"])


async def resolve_in_days(uow: UnitOfWork, staff: User, complaint_id: int, days: int) -> Complaint:
    if days != 0 and days not in WHEN_DAYS:
        raise DomainError("err_stale_button")
    solution = await _solution_step(uow, staff, complaint_id)
    return await resolve(uow, staff, complaint_id, solution, uow.clock.now() + timedelta(days=days))


async def resolve_at_text(uow: UnitOfWork, staff: User, complaint_id: int, text: str) -> Complaint:
    solution = await _solution_step(uow, staff, complaint_id)
    when = parse_when(text, uow.settings.timezone)
    now = uow.clock.now()
    if when < now - timedelta(days=1) or when > now + MAX_AHEAD:
        raise DomainError("err_cmp_when")
    return await resolve(uow, staff, complaint_id, solution, max(when, now))


async def resolve(
    uow: UnitOfWork, staff: User, complaint_id: int, solution: str, completion: datetime
) -> Complaint:
    """The agreed solution and its completion time; the customer is told; the call-back
    follows at the completion time."""
    complaint = await owned(uow, staff, complaint_id)
    now = uow.clock.now()
    _move(complaint, RESOLVED)
    complaint.solution = solution
    complaint.solution_due = completion
    complaint.resolved_at = now
    complaint.paused_at = None
    _meta(complaint, paused=[], callback_sent=False)
    await timers.cancel(uow, subject=subject(complaint.id), kinds=CLOCK_KINDS)
    await conversations.leave(uow, staff.id, STAFF)
    await svc.record(
        uow,
        complaint,
        "resolved",
        actor=staff,
        solution=solution,
        completion=completion.isoformat(),
    )
    params = {
        "number": complaint.number,
        "solution": solution,
        "when": completion,
        "owner": staff.name,
    }
    reached = False
    if complaint.customer_user_id is not None:
        reached = await uow.out.send(
            Msg("cmp_resolved_customer", params, user_id=complaint.customer_user_id)
        )
    await uow.out.send(Msg("cmp_resolved_owner", {**params, "reached": reached}, user_id=staff.id))
    if completion <= now:
        await callback(uow, complaint)
    else:
        await timers.schedule(
            uow,
            kind=CALLBACK,
            subject=subject(complaint.id),
            due_at=completion,
            payload={"complaint_id": complaint.id},
        )
    return complaint


async def callback(uow: UnitOfWork, complaint: Complaint) -> None:
    """The satisfaction call-back (回访): in chat, or by phone through the owner."""
    if complaint.status != RESOLVED or (complaint.meta or {}).get("callback_sent"):
        return
    _meta(complaint, callback_sent=True)
    cid = complaint.id
    sent = False
    if complaint.customer_user_id is not None:
        sent = await uow.out.send(
            Msg(
                "cmp_callback",
                {"number": complaint.number, "solution": complaint.solution or ""},
                user_id=complaint.customer_user_id,
                buttons=(
                    (
                        Button.of("cmp_solved", cb("cmp", cid, "ok")),
                        Button.of("cmp_not_solved", cb("cmp", cid, "nok")),
                    ),
                ),
                urgent=False,
            )
        )
    if not sent and complaint.owner_id is not None:
        await uow.out.send(
            Msg(
                "cmp_callback_by_phone",
                {"number": complaint.number, "customer": complaint.contact_name},
                user_id=complaint.owner_id,
                buttons=(
                    (
                        Button.of("cmp_solved", cb("cmp", cid, "cbok")),
                        Button.of("cmp_not_solved", cb("cmp", cid, "cbnok")),
                    ),
                    (Button.of("cmp_call", cb("cmp", cid, "call")),),
                ),
            )
        )
    await svc.record(uow, complaint, "callback_sent", channel="chat" if sent else "phone")


async def callback_answer(
    uow: UnitOfWork, user: User, complaint_id: int, solved: bool, *, by_phone: bool = False
) -> Complaint:
    """ "Solved" closes the complaint (a rating follows); "not solved" reopens it to the same
    owner and escalates it one level."""
    if by_phone:
        complaint = await owned(uow, user, complaint_id)
    else:
        complaint = await _customer_complaint(uow, user, complaint_id)
    if complaint.status != RESOLVED:
        raise DomainError("err_cmp_answered", number=complaint.number)
    kind = "callback_solved" if solved else "callback_not_solved"
    await svc.record(uow, complaint, kind, actor=user, by_phone=by_phone)
    if solved:
        _move(complaint, CLOSED)
        complaint.satisfied = True
        complaint.closed_at = uow.clock.now()
        await timers.cancel(uow, subject=subject(complaint.id))
        await svc.record(uow, complaint, "closed", actor=user)
        if by_phone:
            await uow.out.send(
                Msg("cmp_closed_owner", {"number": complaint.number}, user_id=user.id)
            )
        else:
            await conversations.leave(uow, user.id, ANSWER)
            await uow.out.send(
                Msg(
                    "cmp_ask_rating",
                    {"number": complaint.number},
                    user_id=user.id,
                    buttons=(
                        tuple(
                            Button.of("cmp_rate", cb("cmp", complaint.id, "rate", n), n=n)
                            for n in range(1, 6)
                        ),
                    ),
                )
            )
            if complaint.owner_id is not None:
                await uow.out.send(
                    Msg(
                        "cmp_closed_owner", {"number": complaint.number}, user_id=complaint.owner_id
                    )
                )
        return complaint
    await reopen(uow, complaint, user, by_phone=by_phone)
    return complaint


async def rate(uow: UnitOfWork, user: User, complaint_id: int, rating: int) -> Complaint:
    complaint = await _customer_complaint(uow, user, complaint_id)
    if complaint.status != CLOSED or not complaint.satisfied or complaint.rating is not None:
        raise DomainError("err_cmp_answered", number=complaint.number)
    if not 1 <= rating <= 5:
        raise DomainError("err_stale_button")
    complaint.rating = rating
    await svc.record(uow, complaint, "rated", actor=user, rating=rating)
    await uow.out.send(
        Msg("cmp_thanks", {"number": complaint.number, "rating": rating}, user_id=user.id)
    )
    return complaint


async def reopen(uow: UnitOfWork, complaint: Complaint, actor: User, *, by_phone: bool) -> None:
    """Not solved: back to the same owner, a fresh resolution clock, one level higher."""
    now = uow.clock.now()
    _move(complaint, OPEN)
    complaint.reopen_count += 1
    complaint.satisfied = False
    complaint.resolved_at = None
    complaint.solution_due = None
    _meta(complaint, clock_started=now.isoformat(), paused_s=0.0, callback_sent=False)
    await timers.cancel(uow, subject=subject(complaint.id))
    cal = await calendar(uow)
    await _start_resolution_clock(uow, complaint, cal, now)
    await svc.record(uow, complaint, "reopened", actor=actor, owner_id=complaint.owner_id)
    level = min(complaint.escalation_level + 1, 2)
    if complaint.owner_id is not None:
        await uow.out.send(
            Msg(
                "cmp_reopened_owner",
                {"number": complaint.number, "due": complaint.resolution_due},
                user_id=complaint.owner_id,
                buttons=owner_buttons(complaint),
                priority=Priority.URGENT,
            )
        )
    if not by_phone and complaint.customer_user_id is not None:
        await conversations.enter(uow, actor.id, ANSWER, "answer", complaint_id=complaint.id)
        await uow.out.send(
            Msg(
                "cmp_reopened_customer",
                {"number": complaint.number, "owner": await _name(uow, complaint.owner_id)},
                user_id=complaint.customer_user_id,
            )
        )
    await escalate(uow, complaint, level=level, reason="not_solved")


# ---- clocks and escalation -----------------------------------------------------------------------


async def escalate(uow: UnitOfWork, complaint: Complaint, *, level: int, reason: str) -> None:
    """An escalation message with buttons: level 1 to the on-duty supervisor (or the group),
    level 2 to the manager(s)."""
    complaint.escalation_level = max(complaint.escalation_level, level)
    await svc.record(uow, complaint, "escalated", level=level, reason=reason)
    params = await card(uow, complaint)
    params.update(level=level, reason=reason)
    targets = await supervisor_targets(uow) if level <= 1 else await manager_targets(uow)
    for target in targets:
        await uow.out.send(
            target.msg(
                "cmp_escalation",
                params,
                buttons=escalation_buttons(complaint),
                priority=Priority.URGENT,
            )
        )


async def response_warning(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.status != NEW or complaint.owner_id is not None:
        return
    await svc.record(uow, complaint, "warned", clock="response")
    params = await card(uow, complaint)
    for target in await supervisor_targets(uow):
        await uow.out.send(
            target.msg(
                "cmp_warning_response",
                params,
                buttons=take_button(complaint),
                priority=Priority.URGENT,
            )
        )


async def response_breached(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.status != NEW or complaint.owner_id is not None:
        return
    await escalate(uow, complaint, level=1, reason="response")
    await _schedule_step(uow, complaint, RESPONSE_ESCALATE)


async def response_escalated(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.status != NEW or complaint.owner_id is not None:
        return
    await escalate(uow, complaint, level=2, reason="response")


async def resolution_warning(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.status not in (NEW, OPEN):
        return
    await svc.record(uow, complaint, "warned", clock="resolution")
    params = await card(uow, complaint)
    if complaint.owner_id is not None:
        await uow.out.send(
            Msg(
                "cmp_warning_resolution",
                params,
                user_id=complaint.owner_id,
                buttons=owner_buttons(complaint),
                priority=Priority.URGENT,
            )
        )
    else:
        for target in await supervisor_targets(uow):
            await uow.out.send(
                target.msg(
                    "cmp_warning_resolution",
                    params,
                    buttons=take_button(complaint),
                    priority=Priority.URGENT,
                )
            )


async def resolution_breached(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.status not in (NEW, OPEN):
        return
    await escalate(uow, complaint, level=1, reason="resolution")
    await _schedule_step(uow, complaint, RESOLUTION_ESCALATE)


async def resolution_escalated(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is None or complaint.status not in (NEW, OPEN):
        return
    await escalate(uow, complaint, level=2, reason="resolution")


async def _schedule_step(uow: UnitOfWork, complaint: Complaint, kind: str) -> None:
    """The manager hears of it ESCALATION_STEP (business time) after the supervisor."""
    cal = await calendar(uow)
    await timers.schedule(
        uow,
        kind=kind,
        subject=subject(complaint.id),
        due_at=add_time(cal, uow.clock.now(), uow.settings.escalation_step),
        payload={"complaint_id": complaint.id},
    )


async def callback_due(uow: UnitOfWork, complaint_id: int) -> None:
    complaint = await svc.get(uow, complaint_id)
    if complaint is not None:
        await callback(uow, complaint)


# ---- status views --------------------------------------------------------------------------------


async def my_complaints(uow: UnitOfWork, user: User, number: str = "") -> None:
    """/mycomplaints: the customer's own tickets (status, owner, next promised time)."""
    if number.strip():
        complaint = await svc.by_number(uow, number)
        if complaint is None or complaint.customer_user_id != user.id:
            raise DomainError("err_cmp_not_found")
        await show_to_customer(uow, user, complaint.id)
        return
    items = []
    rows = []
    for complaint in await svc.of_customer(uow, user):
        promise, when = next_promise(complaint)
        items.append(
            {
                "number": complaint.number,
                "category": complaint.category,
                "status": complaint.status,
                "owner": await _name(uow, complaint.owner_id),
                "promise": promise,
                "when": when,
            }
        )
        rows.append(
            (Button.of("cmp_open", cb("cmp", complaint.id, "view"), number=complaint.number),)
        )
    await uow.out.send(
        Msg("cmp_list_customer", {"items": items}, user_id=user.id, buttons=tuple(rows) or None)
    )


async def show_to_customer(uow: UnitOfWork, user: User, complaint_id: int) -> None:
    complaint = await _customer_complaint(uow, user, complaint_id)
    params = await card(uow, complaint)
    promise, when = next_promise(complaint)
    params.update(promise=promise, when=when)
    buttons = None
    if complaint.status != CLOSED:
        buttons = ((Button.of("cmp_add_info", cb("cmp", complaint.id, "add")),),)
    await uow.out.send(Msg("cmp_detail_customer", params, user_id=user.id, buttons=buttons))


async def staff_list(uow: UnitOfWork, staff: User) -> None:
    """/complaints: open tickets by clock — breached, due soon, the others."""
    now = uow.clock.now()
    involving = None if _supervising(staff) else staff.id
    groups: dict[str, list[dict[str, Any]]] = {"breached": [], "soon": [], "others": []}
    urgent_first: list[tuple[int, datetime, Complaint]] = []
    for complaint in await svc.open_complaints(uow, ACTIVE_STATUSES, involving=involving):
        warn, due = next_clock(complaint)
        if due is not None and due <= now:
            group, rank = "breached", 0
        elif warn is not None and warn <= now:
            group, rank = "soon", 1
        else:
            group, rank = "others", 2
        groups[group].append(
            {
                "number": complaint.number,
                "category": complaint.category,
                "status": complaint.status,
                "severity": complaint.severity,
                "owner": await _name(uow, complaint.owner_id),
                "due": due,
                "level": complaint.escalation_level,
            }
        )
        urgent_first.append((rank, due or datetime.max.replace(tzinfo=now.tzinfo), complaint))
    urgent_first.sort(key=lambda item: (item[0], item[1]))
    rows = tuple(
        (Button.of("cmp_open", cb("cmp", c.id, "view"), number=c.number),)
        for _, _, c in urgent_first[:10]
    )
    for items in groups.values():
        items.sort(key=lambda i: i["due"] or datetime.max.replace(tzinfo=now.tzinfo))
    await uow.out.send(Msg("cmp_list_staff", groups, user_id=staff.id, buttons=rows or None))


async def show_to_staff(uow: UnitOfWork, staff: User, complaint_id: int) -> None:
    complaint = await _staff_complaint(uow, complaint_id)
    if not _may_act(complaint, staff):
        raise DomainError("err_cmp_not_found")
    params = await card(uow, complaint)
    _warn, due = next_clock(complaint)
    params.update(due=due)
    buttons: tuple[tuple[Button, ...], ...] | None = None
    if complaint.status != CLOSED:
        if complaint.owner_id == staff.id:
            buttons = owner_buttons(complaint)
        elif complaint.owner_id is None:
            reassign_row = (Button.of("cmp_reassign", cb("cmp", complaint.id, "own")),)
            buttons = (*take_button(complaint), reassign_row)
        elif _supervising(staff):
            buttons = escalation_buttons(complaint)
        else:
            buttons = (
                (
                    Button.of("cmp_note", cb("cmp", complaint.id, "note")),
                    Button.of("cmp_work_done", cb("cmp", complaint.id, "wdone")),
                ),
            )
    await uow.out.send(Msg("cmp_detail_staff", params, user_id=staff.id, buttons=buttons))


# ---- timer kinds (bot/scheduler/registry.py) -----------------------------------------------------

TIMER_ACTIONS: dict[str, Callable[[UnitOfWork, int], Awaitable[None]]] = {
    RESPONSE_WARN: response_warning,
    RESPONSE_BREACH: response_breached,
    RESPONSE_ESCALATE: response_escalated,
    RESOLUTION_WARN: resolution_warning,
    RESOLUTION_BREACH: resolution_breached,
    RESOLUTION_ESCALATE: resolution_escalated,
    CALLBACK: callback_due,
}


def on_complaint(
    action: Callable[[UnitOfWork, int], Awaitable[None]],
) -> Callable[[UnitOfWork, dict[str, Any]], Awaitable[None]]:
    """A timer action taking the payload's ``complaint_id``."""

    async def run(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await action(uow, int(payload["complaint_id"]))

    return run
