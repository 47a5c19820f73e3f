"""Deadlines as rows: scheduled and cancelled inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update

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
    """Cancel pending timers of ``subject`` (only ``kinds`` when given); returns how many."""
    stmt = update(Timer).where(Timer.subject == subject, Timer.status == TimerStatus.PENDING)
    if kinds:
        stmt = stmt.where(Timer.kind.in_(kinds))
    result = await uow.session.execute(stmt.values(status=TimerStatus.CANCELLED))
    return int(getattr(result, "rowcount", 0) or 0)
