"""The timer sweep: claim due rows in batches, run each once, retry failures with backoff.

One batch is one transaction. Its claim is ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL
(each worker process takes rows no other transaction holds) and, on SQLite, the write lock
that every transaction takes up front (``BEGIN IMMEDIATE``, see bot/db/engine.py), so claim,
actions and "done" marks are one atomic step on both databases. There is no lease to expire:
a worker that dies mid-batch rolls back and the rows are due again at once, untouched; one
that lives can never fire a row that another transaction has claimed.

An action that raises rolls its batch back (no effect of it is kept, and no claim: the
transaction is gone); the failure is recorded for that timer alone in a transaction of its own
— rescheduled with backoff (``TIMER_RETRY_BACKOFF``, doubling) or, after
``TIMER_MAX_ATTEMPTS``, marked failed and reported to the supervisor on duty, never silently
dropped — and the rest of the batch fires again without it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, text, update

from bot.core.enums import Priority, Role, TimerStatus
from bot.core.messages import Msg
from bot.db.engine import dialect_of
from bot.db.models import Timer
from bot.scheduler.registry import ACTIONS, RECURRING
from bot.services import retention, timers
from bot.services.context import Services
from bot.services.staff import staff_with_role, supervisors_on_duty
from bot.services.uow import UnitOfWork
from bot.workers.loop import FailureStreak

log = logging.getLogger(__name__)

BATCH = 50  # timers per transaction (on SQLite the write lock is held for one batch)
MAX_BACKOFF = timedelta(hours=1)
_RECURRING_LOCK = 0x5F1E1D07  # pg_advisory_xact_lock key: one ensure_recurring at a time


def _is_postgres(uow: UnitOfWork) -> bool:
    return dialect_of(uow.session) == "postgresql"


def recurring_subject(kind: str) -> str:
    return f"recurring:{kind}"


async def claim_due(
    uow: UnitOfWork, now: datetime, limit: int = BATCH, *, only: list[int] | None = None
) -> list[Timer]:
    """Claim up to ``limit`` timers due at ``now`` for this transaction (oldest first).

    PostgreSQL: row locks, skipping rows another worker's transaction holds. SQLite: this
    transaction already holds the database's write lock. Either way the claim ends with the
    transaction — committed as done or failed-and-rescheduled, or rolled back untouched.
    """
    stmt = (
        select(Timer)
        .where(Timer.status == TimerStatus.PENDING.value, Timer.due_at <= now)
        .order_by(Timer.due_at)  # the (status, due_at) index gives this order: no sort
        .limit(limit)
    )
    if only is not None:
        stmt = stmt.where(Timer.id.in_(only))
    if _is_postgres(uow):
        stmt = stmt.with_for_update(skip_locked=True)
    return list(await uow.session.scalars(stmt))


async def _done(uow: UnitOfWork, fired: list[Timer]) -> None:
    """Mark the batch's timers done (one statement) and line up recurring ones' next time."""
    if not fired:
        return
    await uow.session.execute(
        update(Timer)
        .where(Timer.id.in_([t.id for t in fired]), Timer.status == TimerStatus.PENDING.value)
        .values(
            status=TimerStatus.DONE.value,
            fired_at=uow.clock.now(),
            attempts=Timer.attempts + 1,
            locked_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    for timer in fired:
        if timer.kind in RECURRING:
            await _schedule_next(uow, timer)


def backoff(base: timedelta, attempts: int) -> timedelta:
    """The wait before retry number ``attempts`` (1, 2, …): base, 2×base, 4×base, … ≤ 1 h."""
    wait: timedelta = base * 2 ** max(attempts - 1, 0)
    return min(wait, MAX_BACKOFF)


async def _failed(uow: UnitOfWork, timer: Timer, exc: BaseException) -> None:
    """Record a failed attempt: retry later with backoff, or give up and tell a supervisor."""
    error_id = secrets.token_hex(4)
    log.error(
        "timer %s (%s) failed (error id %s): %s",
        timer.id,
        timer.kind,
        error_id,
        type(exc).__name__,
        exc_info=exc,
    )
    now = uow.clock.now()
    timer.attempts += 1
    timer.last_error = f"{type(exc).__name__} ({error_id})"[:300]
    timer.locked_until = None
    if timer.attempts < uow.settings.timer_max_attempts:
        timer.due_at = now + backoff(uow.settings.timer_retry_backoff, timer.attempts)
        return
    timer.status = TimerStatus.FAILED.value
    if timer.kind in RECURRING:
        await _schedule_next(uow, timer)  # the chain goes on after a failed occurrence
    try:
        async with uow.savepoint():
            await _report(uow, timer.kind, timer.subject, error_id)
    except Exception:  # the row says "failed" and the log has it; the alert is extra
        log.exception("could not report failed timer %s (error id %s)", timer.id, error_id)


async def _report(uow: UnitOfWork, kind: str, subject: str, error_id: str) -> None:
    recipients = await supervisors_on_duty(uow) or await staff_with_role(uow, Role.MANAGER)
    for person in recipients:
        await uow.out.send(
            Msg(
                "alert_timer_failed",
                {"kind": kind, "subject": subject, "error_id": error_id},
                user_id=person.id,
                priority=Priority.URGENT,
            )
        )


async def _schedule_next(uow: UnitOfWork, timer: Timer) -> None:
    """The next occurrence of a recurring timer: the first one after now (missed ones collapse)."""
    other = await uow.session.scalar(
        select(Timer.id).where(
            Timer.kind == timer.kind,
            Timer.status == TimerStatus.PENDING.value,
            Timer.id != timer.id,
        )
    )
    if other is not None:
        return
    after = max(uow.clock.now(), timer.due_at)
    due = RECURRING[timer.kind](after, uow.settings)
    if due is None:
        return
    await timers.schedule(
        uow,
        kind=timer.kind,
        subject=recurring_subject(timer.kind),
        due_at=due,
        payload={"due_at": due.isoformat()},
    )


async def ensure_recurring(services: Services) -> int:
    """One pending row per recurring kind (run at start); returns how many were added.

    A pending row that was never tried and is not yet due follows the current settings (a
    changed cron expression moves it); an overdue one is left to fire once.
    """
    if not RECURRING:
        return 0
    added = 0
    async with services.uow() as uow:
        if _is_postgres(uow):
            await uow.session.execute(text(f"SELECT pg_advisory_xact_lock({_RECURRING_LOCK})"))
        now = uow.clock.now()
        for kind, every in RECURRING.items():
            rows = list(
                await uow.session.scalars(
                    select(Timer)
                    .where(Timer.kind == kind, Timer.status == TimerStatus.PENDING.value)
                    .order_by(Timer.due_at, Timer.id)
                )
            )
            want = every(now, services.settings)
            if want is None:  # switched off
                for row in rows:
                    row.status = TimerStatus.CANCELLED.value
                continue
            if not rows:
                await timers.schedule(
                    uow,
                    kind=kind,
                    subject=recurring_subject(kind),
                    due_at=want,
                    payload={"due_at": want.isoformat()},
                )
                added += 1
                continue
            first = rows[0]
            for duplicate in rows[1:]:
                duplicate.status = TimerStatus.CANCELLED.value
            if first.attempts == 0 and first.due_at > now and first.due_at != want:
                first.due_at = want
                first.payload = {**first.payload, "due_at": want.isoformat()}
        await uow.commit()
    return added


class _ActionFailed(Exception):
    def __init__(self, timer_id: int, error: Exception) -> None:
        super().__init__(timer_id)
        self.timer_id = timer_id
        self.error = error


async def _fire(
    services: Services, now: datetime, limit: int, only: list[int] | None = None
) -> int:
    """Claim and fire one batch in one transaction; returns how many timers it took.

    The happy path costs one claim, the actions and one update for the whole batch. When an
    action raises, the batch rolls back (nothing of it is kept), the failure is recorded for
    that timer alone, and the others are fired again without it.
    """
    ids: list[int] = []
    try:
        async with services.uow() as uow:
            due = await claim_due(uow, now, limit, only=only)
            ids = [timer.id for timer in due]
            fired = []
            for timer in due:
                if timer.status != TimerStatus.PENDING.value:
                    continue  # cancelled by an action earlier in this batch
                action = ACTIONS.get(timer.kind)
                try:
                    if action is None:
                        raise LookupError(f"no action for timer kind {timer.kind!r}")
                    await action(uow, dict(timer.payload))
                except Exception as exc:
                    raise _ActionFailed(timer.id, exc) from exc
                fired.append(timer)
            await _done(uow, fired)
            if ids:
                await uow.commit()
            return len(ids)
    except _ActionFailed as failure:
        await _record_failure(services, failure.timer_id, failure.error)
        rest = [i for i in ids if i != failure.timer_id]
    except Exception as exc:
        if not ids:
            raise
        # Not an action: the batch's own transaction failed (at commit, say). Nothing of it
        # was kept; go one by one so that one bad row cannot hold back the others.
        log.warning("a batch of %s timers failed (%s)", len(ids), type(exc).__name__)
        if len(ids) == 1:
            await _record_failure(services, ids[0], exc)
            return 1
        for timer_id in ids:
            await _fire(services, now, 1, only=[timer_id])
        return len(ids)
    if rest:
        await _fire(services, now, len(rest), only=rest)
    return len(ids)


async def _record_failure(services: Services, timer_id: int, exc: Exception) -> None:
    async with services.uow() as uow:
        stmt = select(Timer).where(Timer.id == timer_id, Timer.status == TimerStatus.PENDING.value)
        if _is_postgres(uow):
            stmt = stmt.with_for_update(skip_locked=True)
        timer = await uow.session.scalar(stmt)
        if timer is None:
            return
        await _failed(uow, timer, exc)
        await uow.commit()


async def sweep(services: Services, limit: int = BATCH) -> int:
    """One tick: fire every timer due now, batch by batch; returns how many were taken.

    Overdue timers (after downtime) are just due rows: each fires once, on the first tick.
    """
    now = services.clock.now()
    total = 0
    while True:
        taken = await _fire(services, now, limit)
        total += taken
        if taken < limit:
            return total


def _ticker(services: Services, lock: asyncio.Lock) -> Callable[[], Awaitable[None]]:
    state = {"ensured": False}
    # A tick that fails (the database is restarting) is tried again at the next tick; logged
    # as one streak, not as APScheduler's traceback on every tick of the outage.
    streak = FailureStreak("the timer sweep", "ticks")

    async def tick() -> None:
        async with lock:
            try:
                if not state["ensured"]:
                    await ensure_recurring(services)
                    state["ensured"] = True
                await sweep(services)
            except Exception as exc:
                streak.failed(exc)
                return
            streak.succeeded()

    return tick


def build_scheduler(services: Services, *, lock: asyncio.Lock | None = None) -> AsyncIOScheduler:
    """APScheduler drives time; every deadline itself is a database row.

    The first tick runs at start (overdue timers fire then, once each); a late or missed tick
    is coalesced into one.
    """
    scheduler = AsyncIOScheduler(timezone=services.settings.timezone)
    scheduler.add_job(
        _ticker(services, lock or asyncio.Lock()),
        "interval",
        seconds=services.settings.scheduler_interval.total_seconds(),
        id="timer-sweep",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )
    from apscheduler.triggers.cron import CronTrigger  # the reports (REPORT_*_CRON settings)

    from bot.flows import reports

    for kind, cron in reports.schedules(services.settings):
        scheduler.add_job(
            reports.run_scheduled,
            CronTrigger.from_crontab(cron, timezone=services.settings.timezone),
            args=[services, kind],
            id=f"report-{kind}",
            coalesce=True,
            misfire_grace_time=3600,
        )
    # Once, now. However late: APScheduler skips a job that starts more than its grace time
    # (1 s by default) behind schedule, and a busy start would lose the missed reports.
    scheduler.add_job(
        reports.catch_up, args=[services], id="report-catch-up", misfire_grace_time=None
    )
    if services.settings.retention_cron:
        scheduler.add_job(
            retention.run,
            CronTrigger.from_crontab(
                services.settings.retention_cron, timezone=services.settings.timezone
            ),
            args=[services],
            id="retention",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=3600,
        )
    return scheduler
