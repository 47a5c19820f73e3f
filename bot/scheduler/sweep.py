"""The timer sweep: claim due rows, run each once in its own transaction, retry with backoff."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, update

from bot.core.enums import Priority, TimerStatus
from bot.core.messages import Msg
from bot.db.models import Timer
from bot.scheduler.registry import ACTIONS
from bot.services.context import Services
from bot.services.staff import supervisors_on_duty

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)


async def claim_due(services: Services, limit: int = 200) -> list[int]:
    """Atomically claim due timers (SKIP LOCKED on PostgreSQL; the write lock on SQLite)."""
    async with services.uow() as uow:
        now = uow.clock.now()
        stmt = (
            select(Timer.id)
            .where(Timer.status == TimerStatus.PENDING.value, Timer.due_at <= now)
            .where((Timer.locked_until.is_(None)) | (Timer.locked_until <= now))
            .order_by(Timer.due_at, Timer.id)
            .limit(limit)
        )
        if uow.session.bind is not None and uow.session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(await uow.session.scalars(stmt))
        if ids:
            await uow.session.execute(
                update(Timer)
                .where(Timer.id.in_(ids))
                .values(locked_until=now + LEASE, attempts=Timer.attempts + 1)
            )
        await uow.commit()
        return ids


async def fire(services: Services, timer_id: int) -> None:
    """Run one claimed timer; its effects and its 'done' mark commit together."""
    try:
        async with services.uow() as uow:
            timer = await uow.session.get(Timer, timer_id)
            if timer is None or timer.status != TimerStatus.PENDING.value:
                return
            action = ACTIONS.get(timer.kind)
            if action is None:
                raise LookupError(f"no action for timer kind {timer.kind!r}")
            await action(uow, dict(timer.payload))
            timer.status = TimerStatus.DONE.value
            timer.fired_at = uow.clock.now()
            timer.locked_until = None
            await uow.commit()
    except Exception as exc:
        await _failed(services, timer_id, exc)


async def _failed(services: Services, timer_id: int, exc: Exception) -> None:
    error_id = secrets.token_hex(4)
    log.error(
        "timer %s failed (error id %s): %s", timer_id, error_id, type(exc).__name__, exc_info=exc
    )
    async with services.uow() as uow:
        timer = await uow.session.get(Timer, timer_id)
        if timer is None:
            return
        timer.last_error = f"{type(exc).__name__} ({error_id})"
        if timer.attempts >= services.settings.timer_max_attempts:
            timer.status = TimerStatus.FAILED.value
            for supervisor in await supervisors_on_duty(uow):
                await uow.out.send(
                    Msg(
                        "alert_timer_failed",
                        {"kind": timer.kind, "subject": timer.subject, "error_id": error_id},
                        user_id=supervisor.id,
                        priority=Priority.URGENT,
                    )
                )
        else:
            backoff = min(2**timer.attempts * 5, 3600)
            timer.due_at = uow.clock.now() + timedelta(seconds=backoff)
        timer.locked_until = None
        await uow.commit()


async def sweep(services: Services, limit: int = 200) -> int:
    """One tick: fire everything due now (overdue timers fire once, not once per missed tick)."""
    total = 0
    while True:
        ids = await claim_due(services, limit)
        for timer_id in ids:
            await fire(services, timer_id)
        total += len(ids)
        if len(ids) < limit:
            return total


async def _locked_sweep(services: Services, lock: asyncio.Lock) -> None:
    async with lock:
        await sweep(services)


def build_scheduler(services: Services, *, lock: asyncio.Lock | None = None) -> AsyncIOScheduler:
    """APScheduler drives time; every deadline itself is a database row."""
    scheduler = AsyncIOScheduler(timezone=services.settings.timezone)
    scheduler.add_job(
        _locked_sweep,
        "interval",
        args=[services, lock or asyncio.Lock()],
        seconds=services.settings.scheduler_interval.total_seconds(),
        id="timer-sweep",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    return scheduler
