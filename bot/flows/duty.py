"""Duty and handover (值班与交接班), DOMAIN.md §5.

``/duty`` shows who is on duty now (the holiday roster on holiday dates) and the next shifts.

``/handover``: the outgoing supervisor sees what is open — escalations still waiting, complaints
past due, major faults of the last day — types notes (instructions) for the next shift and
picks the incoming supervisor, who confirms with a button. A handover is refused at every one
of these steps while a major fault is unresolved. The ``handovers`` row is the record: what
was open, the notes, who handed over to whom and when each side confirmed. A confirmed handover
also moves ``User.on_duty`` to the incoming supervisor, which decides escalations whenever no
roster shift covers the moment.

Statuses: draft (being written) → pending (waiting for the incoming supervisor) → confirmed;
a draft or pending handover is cancelled when its author starts another.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.core.callbacks import cb
from bot.core.enums import Priority, Role
from bot.core.messages import Button, Msg
from bot.db.models import User
from bot.db.models.supervision import Handover, MajorFault
from bot.flows.faults import OPEN, open_faults
from bot.flows.reports import complaints_past_due, open_escalations
from bot.services import conversations, roster
from bot.services.errors import DomainError
from bot.services.staff import staff_with_role, supervisors_on_duty
from bot.services.uow import UnitOfWork

FLOW = "handover"
DRAFT, PENDING, CONFIRMED, CANCELLED = "draft", "pending", "confirmed", "cancelled"
MAX_NOTES = 3000
NEXT_SHIFTS = 6
RECENT_FAULTS = timedelta(hours=24)
MAX_LISTED = 30


# ---- /duty ------------------------------------------------------------------------------------


async def show_duty(uow: UnitOfWork, user: User) -> None:
    """Who is on duty now (and by which roster), and the next shifts."""
    now = uow.clock.now()
    holiday = await roster.holiday_on(uow, roster.local_date(uow, now))
    rostered = await roster.on_duty_at(uow, now)
    receiving = rostered or await supervisors_on_duty(uow)
    upcoming = await roster.shifts(uow, since=now, limit=NEXT_SHIFTS)
    await uow.out.send(
        Msg(
            "duty_view",
            {
                "holiday": holiday is not None,
                "holiday_name": holiday or "",
                "rostered": [u.name for u in rostered],
                "receiving": [u.name for u in receiving],
                "shifts": [
                    {
                        "name": s.name,
                        "staff_no": s.staff_no,
                        "starts_at": s.starts_at,
                        "ends_at": s.ends_at,
                        "holiday": s.holiday,
                        "now": s.starts_at <= now < s.ends_at,
                    }
                    for s in upcoming
                ],
            },
            user_id=user.id,
        )
    )


# ---- what is open -----------------------------------------------------------------------------


async def open_items(uow: UnitOfWork) -> dict[str, list[dict[str, Any]]]:
    """Open escalations, complaints past due and recent major faults, as a JSON snapshot."""
    now = uow.clock.now()
    faults = await uow.session.scalars(
        select(MajorFault)
        .where(
            (MajorFault.status == OPEN)
            | (MajorFault.reported_at >= now - RECENT_FAULTS)
            | (MajorFault.closed_at >= now - RECENT_FAULTS)
        )
        .order_by(MajorFault.id)
    )
    return {
        "escalations": [
            {
                "kind": e.kind,
                "number": e.number,
                "engineer": e.engineer,
                "since": e.since.isoformat(),
            }
            for e in (await open_escalations(uow))[:MAX_LISTED]
        ],
        "complaints": [
            {"number": c.number, "due": c.due.isoformat(), "owner": c.owner}
            for c in (await complaints_past_due(uow, now))[:MAX_LISTED]
        ],
        "faults": [
            {
                "number": f.number,
                "status": f.status,
                "place": f.place[:100],
                "reported_at": f.reported_at.isoformat(),
            }
            for f in faults
        ],
    }


def items_params(items: dict[str, Any]) -> dict[str, Any]:
    """The stored snapshot with its times as datetimes again (templates format them)."""

    def times(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
        return [
            {k: datetime.fromisoformat(v) if k in keys and v else v for k, v in row.items()}
            for row in rows
        ]

    return {
        "escalations": times(items.get("escalations", []), "since"),
        "complaints": times(items.get("complaints", []), "due"),
        "faults": times(items.get("faults", []), "reported_at"),
    }


# ---- /handover --------------------------------------------------------------------------------


async def _refuse_while_fault_open(uow: UnitOfWork) -> None:
    faults = await open_faults(uow)
    if faults:
        raise DomainError("handover_refused_fault", faults=", ".join(f.number for f in faults))


async def _handover(uow: UnitOfWork, handover_id: int, *statuses: str) -> Handover:
    handover = await uow.session.get(Handover, handover_id)
    if handover is None or handover.status not in statuses:
        raise DomainError("err_stale_button")
    return handover


async def start_handover(uow: UnitOfWork, outgoing: User) -> Handover:
    """List what is open and ask for the notes; refused while a major fault is unresolved."""
    await _refuse_while_fault_open(uow)
    if not await _incoming_choices(uow, outgoing):
        raise DomainError("handover_no_one")
    earlier = await uow.session.scalars(
        select(Handover).where(
            Handover.from_id == outgoing.id, Handover.status.in_([DRAFT, PENDING])
        )
    )
    for old in earlier:
        old.status = CANCELLED
    now = uow.clock.now()
    handover = Handover(
        from_id=outgoing.id,
        status=DRAFT,
        notes="",
        items=await open_items(uow),
        created_at=now,
    )
    uow.session.add(handover)
    await uow.session.flush()
    await conversations.enter(uow, outgoing.id, FLOW, "notes", handover_id=handover.id)
    await uow.out.send(
        Msg(
            "handover_open_items",
            items_params(handover.items),
            user_id=outgoing.id,
            buttons=((Button.of("handover_no_notes", cb("hov", handover.id, "nonotes")),),),
        )
    )
    return handover


async def _incoming_choices(uow: UnitOfWork, outgoing: User) -> list[User]:
    """Other supervisors reachable in chat; whoever is rostered next comes first."""
    now = uow.clock.now()
    order = {s.staff_id: i for i, s in enumerate(await roster.shifts(uow, since=now, limit=20))}
    people = [
        u
        for u in await staff_with_role(uow, Role.SUPERVISOR)
        if u.id != outgoing.id and u.chat_id is not None
    ]
    people.sort(key=lambda u: (order.get(u.id, len(order)), u.id))
    return people[:10]


async def set_notes(uow: UnitOfWork, outgoing: User, handover_id: int, notes: str | None) -> None:
    """The outgoing supervisor's notes (or none); then: who takes over?"""
    handover = await _handover(uow, handover_id, DRAFT)
    if handover.from_id != outgoing.id:
        raise DomainError("err_stale_button")
    if notes is not None:
        notes = notes.strip()
        if not notes:
            raise DomainError("err_text_empty")
        if len(notes) > MAX_NOTES:
            raise DomainError("err_too_long", limit=MAX_NOTES)
        handover.notes = notes
    choices = await _incoming_choices(uow, outgoing)
    if not choices:
        raise DomainError("handover_no_one")
    await conversations.enter(uow, outgoing.id, FLOW, "pick", handover_id=handover.id)
    await uow.out.send(
        Msg(
            "handover_pick",
            {},
            user_id=outgoing.id,
            buttons=tuple(
                (Button.of("handover_to", cb("hov", handover.id, "to", u.id), name=u.name),)
                for u in choices
            ),
        )
    )


async def submit(uow: UnitOfWork, outgoing: User, handover_id: int, incoming_id: int) -> None:
    """The outgoing side confirms: the incoming supervisor gets the handover to confirm."""
    handover = await _handover(uow, handover_id, DRAFT)
    if handover.from_id != outgoing.id:
        raise DomainError("err_stale_button")
    incoming = await uow.session.get(User, incoming_id)
    if (
        incoming is None
        or incoming.id == outgoing.id
        or not incoming.active
        or incoming.role != Role.SUPERVISOR
    ):
        raise DomainError("err_stale_button")
    await _refuse_while_fault_open(uow)
    handover.items = await open_items(uow)  # as it is now, not when the notes began
    handover.status = PENDING
    handover.to_id = incoming.id
    handover.submitted_at = uow.clock.now()
    await conversations.leave(uow, outgoing.id, FLOW)
    params = {
        **items_params(handover.items),
        "notes": handover.notes,
        "outgoing": outgoing.name,
        "incoming": incoming.name,
    }
    await uow.out.send(
        Msg(
            "handover_request",
            params,
            user_id=incoming.id,
            buttons=((Button.of("handover_confirm", cb("hov", handover.id, "ok")),),),
            priority=Priority.URGENT,
        )
    )
    await uow.out.send(Msg("handover_sent", params, user_id=outgoing.id))


async def confirm(uow: UnitOfWork, incoming: User, handover_id: int) -> Handover:
    """The incoming supervisor confirms: the handover is done and kept; duty moves over."""
    handover = await _handover(uow, handover_id, PENDING)
    if handover.to_id != incoming.id:
        raise DomainError("handover_err_not_yours")
    await _refuse_while_fault_open(uow)
    now = uow.clock.now()
    handover.status = CONFIRMED
    handover.confirmed_at = now
    outgoing = await uow.session.get(User, handover.from_id)
    assert outgoing is not None
    outgoing.on_duty = False
    incoming.on_duty = True
    params = {"outgoing": outgoing.name, "incoming": incoming.name, "at": now}
    await uow.out.send(Msg("handover_confirmed", params, user_id=incoming.id))
    await uow.out.send(Msg("handover_done", params, user_id=outgoing.id))
    return handover
