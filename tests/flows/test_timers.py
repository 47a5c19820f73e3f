"""Timers are rows: made and cancelled with their transaction, fired once, retried, reported.

Every test drives time with the FakeClock; "a restart" is a new Services on the same database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot.bootstrap import build_services
from bot.db.models import Customer, Timer
from bot.scheduler import sweep as sweeper
from bot.scheduler.registry import ACTIONS, RECURRING
from bot.scheduler.sweep import ensure_recurring, sweep
from bot.services import timers
from bot.services.uow import UnitOfWork
from tests.conftest import outbox_rows
from tests.helpers import onboard

PROBE = "test_probe"


async def probe(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    """The effect a timer has: one row per firing (counted by the tests)."""
    uow.session.add(Customer(name=f"probe-{payload['n']}", created_at=uow.clock.now()))
    await uow.session.flush()


@pytest.fixture(autouse=True)
def probe_action(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACTIONS, PROBE, probe)


async def firings(services, n: int | None = None) -> int:
    async with services.uow() as uow:
        stmt = select(func.count()).select_from(Customer)
        if n is None:
            stmt = stmt.where(Customer.name.like("probe-%"))
        else:
            stmt = stmt.where(Customer.name == f"probe-{n}")
        return int(await uow.session.scalar(stmt) or 0)


async def add_probe(services, n: int, due_at: datetime, kind: str = PROBE) -> int:
    async with services.uow() as uow:
        timer_id = await timers.schedule(
            uow, kind=kind, subject=f"test:{n}", due_at=due_at, payload={"n": n}
        )
        await uow.commit()
        return timer_id


async def timer_row(services, timer_id: int) -> Timer:
    async with services.uow() as uow:
        timer = await uow.session.get(Timer, timer_id)
        assert timer is not None
        return timer


# ---- created and cancelled with their transaction -----------------------------------------


async def test_a_rolled_back_transaction_leaves_no_timer(services, clock) -> None:
    with pytest.raises(RuntimeError):
        async with services.uow() as uow:
            await timers.schedule(
                uow, kind=PROBE, subject="t", due_at=clock.now(), payload={"n": 1}
            )
            raise RuntimeError("the change that needed the timer failed")
    async with services.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Timer)) == 0
    assert await sweep(services) == 0 and await firings(services) == 0


async def test_a_cancel_counts_only_when_its_transaction_commits(services, clock) -> None:
    await add_probe(services, 1, clock.now())
    async with services.uow() as uow:
        assert await timers.cancel(uow, subject="test:1") == 1
        # not committed: the step that made the reminder moot did not happen
    assert await sweep(services) == 1 and await firings(services, 1) == 1

    await add_probe(services, 2, clock.now() + timedelta(minutes=5))
    async with services.uow() as uow:
        assert await timers.cancel(uow, subject="test:2", kinds=(PROBE,)) == 1
        await uow.commit()
    clock.advance(timedelta(hours=1))
    assert await sweep(services) == 0 and await firings(services, 2) == 0


async def test_a_timer_waits_for_its_due_time(services, clock) -> None:
    await add_probe(services, 1, clock.now() + timedelta(minutes=10))
    assert await sweep(services) == 0
    clock.advance(timedelta(minutes=9, seconds=59))
    assert await sweep(services) == 0
    clock.advance(timedelta(seconds=1))
    assert await sweep(services) == 1
    assert await firings(services, 1) == 1


# ---- exactly once, across restarts and downtime ----------------------------------------------


async def test_fires_exactly_once_across_a_restart(services, clock, make_settings) -> None:
    await add_probe(services, 1, clock.now())
    await add_probe(services, 2, clock.now() + timedelta(minutes=1))
    assert await sweep(services) == 1
    await services.sessionmaker.kw["bind"].dispose()  # the process stops

    restarted = build_services(make_settings(), clock=clock)
    try:
        assert await sweep(restarted) == 0  # the first one fired before the restart
        clock.advance(timedelta(minutes=1))
        assert await sweep(restarted) == 1
        assert await sweep(restarted) == 0
        assert await firings(restarted, 1) == 1 and await firings(restarted, 2) == 1
    finally:
        await restarted.sessionmaker.kw["bind"].dispose()


async def test_a_process_killed_mid_firing_leaves_no_claim_behind(
    services, clock, make_settings, monkeypatch
) -> None:
    """A crash inside an action rolls back the claim too: after a restart the timer fires at
    once (no lease to wait out, even though the clock never moves) and only once."""

    async def killed(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await probe(uow, payload)
        raise asyncio.CancelledError  # the process is stopped right here

    timer_id = await add_probe(services, 1, clock.now())
    monkeypatch.setitem(ACTIONS, PROBE, killed)
    with pytest.raises(asyncio.CancelledError):
        await sweep(services)
    await services.sessionmaker.kw["bind"].dispose()
    row = await timer_row(build_services(make_settings(), clock=clock), timer_id)
    assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)

    monkeypatch.setitem(ACTIONS, PROBE, probe)
    restarted = build_services(make_settings(), clock=clock)
    try:
        assert await sweep(restarted) == 1
        assert await sweep(restarted) == 0
        assert await firings(restarted, 1) == 1
    finally:
        await restarted.sessionmaker.kw["bind"].dispose()


async def test_overdue_timers_fire_once_after_downtime(services, clock, make_settings) -> None:
    """Three days down: each overdue timer fires once on the first tick, and an hourly recurring
    timer fires once (not 72 times) and is next due within the hour."""
    hourly = "test_hourly"
    RECURRING[hourly] = lambda after, _s: (after + timedelta(hours=1)).replace(
        minute=0, second=0, microsecond=0
    )
    ACTIONS[hourly] = probe
    try:
        clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # far from any real recurring timer
        start = clock.now()
        for n, delay in enumerate([timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)]):
            await add_probe(services, n, start + delay)
        await ensure_recurring(services)
        async with services.uow() as uow:
            recurring = await uow.session.scalar(select(Timer).where(Timer.kind == hourly))
            assert recurring is not None
            recurring.payload = {"n": "hourly"}
            await uow.commit()
        await services.sessionmaker.kw["bind"].dispose()

        clock.advance(timedelta(days=3, minutes=7))
        restarted = build_services(make_settings(), clock=clock)
        try:
            assert await sweep(restarted) == 4
            assert await sweep(restarted) == 0
            assert [await firings(restarted, n) for n in (0, 1, 2)] == [1, 1, 1]
            assert await firings(restarted, "hourly") == 1
            async with restarted.uow() as uow:
                pending = list(
                    await uow.session.scalars(
                        select(Timer).where(Timer.kind == hourly, Timer.status == "pending")
                    )
                )
            assert [t.due_at for t in pending] == [
                (clock.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
            ]
        finally:
            await restarted.sessionmaker.kw["bind"].dispose()
    finally:
        del RECURRING[hourly], ACTIONS[hourly]


# ---- failures -------------------------------------------------------------------------------


async def test_a_failing_timer_is_retried_with_backoff_then_reported(
    make_settings, clock, db_url, monkeypatch
) -> None:
    from tests.conftest import reset_database

    await reset_database(db_url)
    services = build_services(
        make_settings(timer_max_attempts=3, timer_retry_backoff="10s"), clock=clock
    )
    try:
        await onboard(services, 21, role="supervisor", name="Boss", skills=())
        calls = []

        async def broken(uow: UnitOfWork, payload: dict[str, Any]) -> None:
            calls.append(uow.clock.now())
            await probe(uow, payload)  # written, then undone with the failure
            raise RuntimeError("the action is broken")

        monkeypatch.setitem(ACTIONS, PROBE, broken)
        timer_id = await add_probe(services, 1, clock.now())
        before = len(await outbox_rows(services, 21))

        assert await sweep(services) == 1
        row = await timer_row(services, timer_id)
        assert (row.status, row.attempts, row.locked_until) == ("pending", 1, None)
        assert row.due_at == clock.now() + timedelta(seconds=10)
        assert row.last_error and row.last_error.startswith("RuntimeError")
        assert await sweep(services) == 0  # waits out its backoff

        clock.advance(timedelta(seconds=10))
        assert await sweep(services) == 1
        row = await timer_row(services, timer_id)
        assert (row.status, row.attempts) == ("pending", 2)
        assert row.due_at == clock.now() + timedelta(seconds=20)  # doubled

        clock.advance(timedelta(seconds=20))
        assert await sweep(services) == 1
        row = await timer_row(services, timer_id)
        assert (row.status, row.attempts) == ("failed", 3)
        assert len(calls) == 3 and await firings(services, 1) == 0

        alerts = (await outbox_rows(services, 21))[before:]
        assert len(alerts) == 1 and alerts[0].priority == 0
        assert "failed several times" in alerts[0].payload["text"]
        assert "test:1" in alerts[0].payload["text"]

        clock.advance(timedelta(days=1))
        assert await sweep(services) == 0  # given up, never fired again
    finally:
        await services.sessionmaker.kw["bind"].dispose()


async def test_an_unknown_timer_kind_is_not_dropped_silently(services, clock) -> None:
    timer_id = await add_probe(services, 1, clock.now(), kind="no_such_kind")
    assert await sweep(services) == 1
    row = await timer_row(services, timer_id)
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error and row.last_error.startswith("LookupError")


async def test_a_failing_action_undoes_only_its_own_effects(services, clock, monkeypatch) -> None:
    """Timers of one batch share a transaction; each action runs in its own savepoint."""

    async def picky(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await probe(uow, payload)
        if payload["n"] == 2:
            raise ValueError("this one fails")

    monkeypatch.setitem(ACTIONS, PROBE, picky)
    for n in (1, 2, 3):
        await add_probe(services, n, clock.now())
    assert await sweep(services) == 3
    assert [await firings(services, n) for n in (1, 2, 3)] == [1, 0, 1]


async def test_an_action_that_breaks_the_transaction_is_contained(
    services, clock, monkeypatch
) -> None:
    """A database error inside an action (PostgreSQL aborts the whole transaction on one)
    rolls back to the action's savepoint; the other timers of the batch still commit."""

    async def bad_sql(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        if payload["n"] == 2:
            await uow.session.execute(text("SELECT * FROM no_such_table"))
        await probe(uow, payload)

    monkeypatch.setitem(ACTIONS, PROBE, bad_sql)
    ids = [await add_probe(services, n, clock.now()) for n in (1, 2, 3)]
    assert await sweep(services) == 3
    assert [await firings(services, n) for n in (1, 2, 3)] == [1, 0, 1]
    assert (await timer_row(services, ids[1])).attempts == 1


async def test_a_timer_cancelled_earlier_in_its_batch_does_not_fire(
    services, clock, monkeypatch
) -> None:
    """One batch, one transaction: the first action makes the second timer moot."""

    async def first_cancels_second(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await probe(uow, payload)
        if payload["n"] == 1:
            await timers.cancel(uow, subject="test:2")

    monkeypatch.setitem(ACTIONS, PROBE, first_cancels_second)
    await add_probe(services, 1, clock.now() - timedelta(seconds=1))
    second = await add_probe(services, 2, clock.now())
    assert await sweep(services) == 2
    assert [await firings(services, n) for n in (1, 2)] == [1, 0]
    assert (await timer_row(services, second)).status == "cancelled"


async def test_a_batch_that_cannot_commit_is_fired_one_by_one(services, clock, monkeypatch) -> None:
    """Not an action but the batch's commit fails: nothing of it stuck, each timer then
    fires once in its own transaction."""
    for n in (1, 2, 3):
        await add_probe(services, n, clock.now())
    real_commit = UnitOfWork.commit
    failures = []

    async def flaky_commit(self: UnitOfWork) -> None:
        if not failures:
            failures.append(1)
            raise ConnectionError("the database went away at commit")
        await real_commit(self)

    monkeypatch.setattr(UnitOfWork, "commit", flaky_commit)
    assert await sweep(services) == 3
    assert [await firings(services, n) for n in (1, 2, 3)] == [1, 1, 1]
    assert await sweep(services) == 0


async def test_many_due_timers_go_in_batches_each_once(services, clock) -> None:
    async with services.uow() as uow:
        for n in range(sweeper.BATCH * 2 + 7):
            await timers.schedule(
                uow, kind=PROBE, subject=f"test:{n}", due_at=clock.now(), payload={"n": n}
            )
        await uow.commit()
    assert await sweep(services) == sweeper.BATCH * 2 + 7
    assert await firings(services) == sweeper.BATCH * 2 + 7
    assert await sweep(services) == 0


# ---- recurring timers (the December outreach, reports) --------------------------------------


async def outreach_timers(services) -> list[Timer]:
    async with services.uow() as uow:
        return list(
            await uow.session.scalars(
                select(Timer)
                .where(Timer.kind == "followup_outreach", Timer.status == "pending")
                .order_by(Timer.id)
            )
        )


async def test_recurring_timers_are_set_up_once_at_start(services, clock, make_settings) -> None:
    clock.set(datetime(2026, 3, 5, 9, 0, tzinfo=UTC))
    assert await ensure_recurring(services) >= 1
    assert await ensure_recurring(services) == 0  # a second start adds nothing
    [outreach] = await outreach_timers(services)
    # 1 December 10:00 in Asia/Shanghai
    assert outreach.due_at == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert outreach.payload == {"due_at": outreach.due_at.isoformat()}

    moved = build_services(make_settings(outreach_cron="30 9 1 12 *"), clock=clock)
    try:
        await ensure_recurring(moved)  # the setting changed: the untried timer follows it
        [outreach] = await outreach_timers(moved)
        assert outreach.due_at == datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    finally:
        await moved.sessionmaker.kw["bind"].dispose()

    off = build_services(make_settings(outreach_cron="off"), clock=clock)
    try:
        await ensure_recurring(off)
        assert await outreach_timers(off) == []
    finally:
        await off.sessionmaker.kw["bind"].dispose()


async def test_duplicate_recurring_timers_are_merged(services, clock) -> None:
    """Two workers starting at once on one database keep a single outreach timer."""
    await ensure_recurring(services)
    async with services.uow() as uow:
        [first] = await outreach_timers(services)
        await timers.schedule(
            uow,
            kind="followup_outreach",
            subject="recurring:followup_outreach",
            due_at=first.due_at,
            payload=dict(first.payload),
        )
        await uow.commit()
    assert len(await outreach_timers(services)) == 2
    await ensure_recurring(services)
    assert [t.id for t in await outreach_timers(services)] == [first.id]


async def test_a_recurring_timer_that_finally_fails_still_schedules_the_next(
    services, clock, monkeypatch
) -> None:
    async def broken(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        raise RuntimeError("broken")

    monkeypatch.setitem(ACTIONS, "followup_outreach", broken)
    clock.set(datetime(2026, 11, 30, 0, 0, tzinfo=UTC))
    await ensure_recurring(services)
    clock.set(datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    for _ in range(services.settings.timer_max_attempts):
        assert await sweep(services) == 1
        clock.advance(timedelta(hours=1))
    [following] = await outreach_timers(services)
    assert following.due_at == datetime(2027, 12, 1, 2, 0, tzinfo=UTC)


async def test_the_scheduler_ticks_at_start_and_coalesces_missed_ticks(services) -> None:
    """APScheduler only drives the sweep: a late or missed tick runs once, the first at once."""
    scheduler = sweeper.build_scheduler(services)
    job = scheduler.get_job("timer-sweep")
    assert job is not None
    assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time is None
    assert job.trigger.interval == services.settings.scheduler_interval
    assert job.next_run_time is not None  # due now: the first tick runs when it starts
    before = len(scheduler.get_jobs())
    async with services.uow() as uow:
        for n in range(100):
            await timers.schedule(uow, kind=PROBE, subject=f"t:{n}", due_at=uow.clock.now())
        await uow.commit()
    assert len(sweeper.build_scheduler(services).get_jobs()) == before  # rows, not jobs


async def test_ticks_failing_in_an_outage_log_one_traceback_then_the_recovery(
    services, monkeypatch, caplog
) -> None:
    """A database restart makes ticks fail for a while: one traceback for the streak, a line
    for each further tick, one for the recovery — not APScheduler's traceback every tick."""
    tick = sweeper.build_scheduler(services).get_job("timer-sweep").func
    down = {"ticks": 3}
    real_sweep = sweeper.sweep

    async def flaky(svc: Any, *args: Any) -> int:
        if down["ticks"]:
            down["ticks"] -= 1
            raise ConnectionRefusedError("database restarting")
        return await real_sweep(svc, *args)

    monkeypatch.setattr(sweeper, "sweep", flaky)
    async with services.uow() as uow:
        await timers.schedule(
            uow, kind=PROBE, subject="t:1", due_at=uow.clock.now(), payload={"n": 1}
        )
        await uow.commit()
    for _ in range(4):
        await tick()  # never raises: APScheduler has nothing to log
    assert [r.exc_info is not None for r in caplog.records if "timer sweep" in r.getMessage()] == [
        True,
        False,
        False,
        False,
    ]
    assert "recovered after 3 failed ticks" in caplog.records[-1].getMessage()
    assert await firings(services, 1) == 1  # the fourth tick fired the timer
