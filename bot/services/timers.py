"""Deadlines as rows: scheduled and cancelled inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update

from bot.core.enums import TimerStatus
from bot.db.models import Timer
from bot.services.uow import UnitOfWork


async def schedule(
    uow: UnitOfWork,
    *,
    kind: str,
    subject: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> Timer:
    """Add a timer that fires once at ``due_at`` (committed or rolled back with the caller)."""
    timer = Timer(
        kind=kind,
        subject=subject,
        due_at=due_at,
        payload=payload or {},
        status=TimerStatus.PENDING,
        attempts=0,
        created_at=uow.clock.now(),
    )
    uow.session.add(timer)
    await uow.session.flush()
    return timer


async def cancel(uow: UnitOfWork, *, subject: str, kinds: tuple[str, ...] = ()) -> int:
    """Cancel pending timers of ``subject`` (only ``kinds`` when given); returns how many.

    An ORM update: Timer objects already in the session see the change too (the sweep relies
    on it when an action cancels a timer of its own batch).
    """
    stmt = update(Timer).where(Timer.subject == subject, Timer.status == TimerStatus.PENDING)
    if kinds:
        stmt = stmt.where(Timer.kind.in_(kinds))
    result = await uow.session.execute(stmt.values(status=TimerStatus.CANCELLED))
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
