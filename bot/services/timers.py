"""Deadlines as rows: scheduled and cancelled inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bot.core.enums import TimerStatus
from bot.db.models import Timer
from bot.services.uow import UnitOfWork

# Plain statements built once: job steps schedule and cancel timers on most updates.
TIMERS = cast(Table, Timer.__table__)
_ADD = insert(TIMERS)
_CANCEL = (
    update(TIMERS)
    .where(TIMERS.c.subject == bindparam("b_subject"), TIMERS.c.status == TimerStatus.PENDING.value)
    .values(status=TimerStatus.CANCELLED.value)
)
_CANCEL_KINDS = _CANCEL.where(TIMERS.c.kind.in_(bindparam("b_kinds", expanding=True)))


async def schedule(
    uow: UnitOfWork,
    *,
    kind: str,
    subject: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> int:
    """Add a timer that fires once at ``due_at`` (committed or rolled back with the caller);
    returns its id."""
    row = {
        "kind": kind,
        "subject": subject,
        "due_at": due_at,
        "payload": payload or {},
        "status": TimerStatus.PENDING.value,
        "attempts": 0,
        "created_at": uow.clock.now(),
    }
    result = await uow.session.execute(_ADD, row)
    return int(result.inserted_primary_key[0])  # type: ignore[attr-defined]


async def cancel(uow: UnitOfWork, *, subject: str, kinds: tuple[str, ...] = ()) -> int:
    """Cancel pending timers of ``subject`` (only ``kinds`` when given); returns how many.

    Timer objects this unit of work already holds see the change too (the sweep relies on it
    when an action cancels a timer of its own batch).
    """
    if kinds:
        result = await uow.session.execute(_CANCEL_KINDS, {"b_subject": subject, "b_kinds": kinds})
    else:
        result = await uow.session.execute(_CANCEL, {"b_subject": subject})
    for held in list(uow.session.identity_map.values()):
        if (
            isinstance(held, Timer)
            and held.subject == subject
            and held.status == TimerStatus.PENDING
            and (not kinds or held.kind in kinds)
        ):
            set_committed_value(held, "status", TimerStatus.CANCELLED.value)
    return int(getattr(result, "rowcount", 0) or 0)


async def pending(uow: UnitOfWork, *, subject: str, kind: str | None = None) -> list[Timer]:
    """The pending timers of ``subject`` (of ``kind`` when given), soonest first."""
    stmt = select(Timer).where(Timer.subject == subject, Timer.status == TimerStatus.PENDING)
    if kind is not None:
        stmt = stmt.where(Timer.kind == kind)
    return list(await uow.session.scalars(stmt.order_by(Timer.due_at, Timer.id)))


def next_cron(expression: str, tz: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that the cron ``expression`` names in ``tz``."""
    trigger = CronTrigger.from_crontab(expression, timezone=tz)
    when: datetime | None = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    if when is None:  # pragma: no cover - a five-field cron expression always fires again
        raise ValueError(f"cron expression {expression!r} never fires")
    return when.astimezone(after.tzinfo)
