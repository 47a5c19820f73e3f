"""Timer sweep figures: tick time and memory with many pending timers, firing lag of a burst.

For each pending count (1,000 and 100,000 by default) the database is filled with timers due
next week, then a fresh worker process (the scheduler and nothing else: no Telegram runtime)

1. runs ``--ticks`` sweep ticks with nothing due and times each (what every
   ``SCHEDULER_INTERVAL`` costs while the timers wait),
2. reads its resident memory (RSS), which must not depend on how many timers are pending:
   they are rows, not in-memory jobs,
3. gets ``--due`` more timers all due at the same instant and runs the real APScheduler
   interval job (``SCHEDULER_INTERVAL``, default 1 s) until every one has fired. Each timer's
   action renders a message and queues it in the outbox, as reminders do; its firing time is
   when its transaction commits. Lag = firing time - due time, so it includes the wait for the
   next tick (up to one interval).

    uv run python benchmarks/timers.py                    # SQLite in a temporary folder
    uv run python benchmarks/timers.py --database-url postgresql://postgres@127.0.0.1:5432/bench
    BENCH_DATABASE_URL=postgresql://... uv run python benchmarks/timers.py

The PostgreSQL database is created if missing and emptied (its public schema dropped): give
it one of its own, not the test suite's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from bot.core.clock import SystemClock  # noqa: E402
from bot.db.engine import async_url, make_engine, make_sessionmaker  # noqa: E402
from bot.db.models import Base, Timer, User  # noqa: E402

KIND = "bench_timer"


# ---- the worker process --------------------------------------------------------------------


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def worker(url: str, due: int, ticks: int, interval: float, user_id: int) -> dict[str, Any]:
    from bot.config import load_settings
    from bot.core.messages import Msg
    from bot.i18n import Renderer
    from bot.scheduler.registry import register
    from bot.scheduler.sweep import build_scheduler, sweep
    from bot.services.context import Services
    from bot.services.uow import UnitOfWork

    settings = load_settings(
        database_url=url, quiet_hours="off", scheduler_interval=f"{int(interval * 1000)}ms"
    )
    services = Services(
        settings=settings,
        clock=SystemClock(),
        renderer=Renderer(),
        sessionmaker=make_sessionmaker(make_engine(settings.database_url)),
    )
    in_batch: list[int] = []
    fired: dict[int, float] = {}
    all_fired = asyncio.Event()

    async def action(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        params = {"kind": KIND, "subject": f"bench:{payload['n']}", "error_id": "-"}
        await uow.out.send(Msg("alert_timer_failed", params, user_id=int(payload["user"])))
        in_batch.append(int(payload["n"]))

    def committed() -> None:
        stamp = time.time()
        for n in in_batch:
            fired[n] = stamp
        in_batch.clear()
        if len(fired) >= due:
            all_fired.set()

    register(KIND, action)
    services.after_commit.append(committed)

    for _ in range(5):  # warm up: connection, statement caches
        await sweep(services)
    tick_seconds = []
    for _ in range(ticks):
        start = time.perf_counter()
        await sweep(services)
        tick_seconds.append(time.perf_counter() - start)
    rss_idle = rss_mib()

    engine = make_engine(settings.database_url)
    due_at = datetime.now(UTC) + timedelta(seconds=2)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Timer),
            [
                {
                    "kind": KIND,
                    "subject": f"bench:{n}",
                    "due_at": due_at,
                    "payload": {"n": n, "user": user_id},
                    "status": "pending",
                    "attempts": 0,
                    "created_at": datetime.now(UTC),
                }
                for n in range(due)
            ],
        )
    await engine.dispose()
    cpu_before = time.process_time()
    scheduler = build_scheduler(services)
    scheduler.start()
    await asyncio.wait_for(all_fired.wait(), timeout=600)
    cpu_burst = time.process_time() - cpu_before
    scheduler.shutdown(wait=False)
    ticks_left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*ticks_left, return_exceptions=True)  # a tick still running ends
    lags = [fired[n] - due_at.timestamp() for n in fired]
    first, last = min(fired.values()), max(fired.values())
    result = {
        "tick_ms_mean": statistics.fmean(tick_seconds) * 1000,
        "tick_ms_p99": percentile(tick_seconds, 99) * 1000,
        "rss_idle_mib": rss_idle,
        "rss_after_mib": rss_mib(),
        "fired": len(fired),
        "lag_p50_s": percentile(lags, 50),
        "lag_p99_s": percentile(lags, 99),
        "lag_max_s": max(lags),
        "burst_s": last - first,
        "cpu_per_timer_ms": cpu_burst / due * 1000,
    }
    await services.sessionmaker.kw["bind"].dispose()
    return result


# ---- the driver ------------------------------------------------------------------------------


async def create_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it does not exist yet."""
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = make_engine(
        target.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with admin.connect() as conn:
            known = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
            )
            if not known:
                await conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        await admin.dispose()


async def prepare(url: str, pending: int) -> int:
    """An empty database with one recipient and ``pending`` timers due next week."""
    if url.startswith("postgresql"):
        await create_database(url)
    engine = make_engine(url)
    try:
        if url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            result = await conn.execute(
                insert(User).returning(User.id),
                [
                    {
                        "role": "supervisor",
                        "name": "Bench Reader",
                        "telegram_id": 1,
                        "chat_id": 1,
                        "locale": "en",
                        "active": True,
                        "on_duty": True,
                        "created_at": now,
                    }
                ],
            )
            user_id = int(result.scalar_one())
            chunk = 5000
            for start in range(0, pending, chunk):
                rows = [
                    {
                        "kind": KIND,
                        "subject": f"later:{n}",
                        "due_at": now + timedelta(days=7, seconds=n),
                        "payload": {"n": -n - 1, "user": user_id},
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                    }
                    for n in range(start, min(start + chunk, pending))
                ]
                await conn.execute(insert(Timer), rows)
        if url.startswith("postgresql"):  # as autovacuum would, soon after such a load
            async with engine.begin() as conn:
                await conn.execute(text("ANALYZE timers"))
        return user_id
    finally:
        await engine.dispose()


def run_worker(url: str, args: argparse.Namespace, user_id: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--database-url",
        url,
        "--due",
        str(args.due),
        "--ticks",
        str(args.ticks),
        "--interval",
        str(args.interval),
        "--user",
        str(user_id),
    ]
    out = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0.0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 1024 / 1024
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores · {cpu} · {mem:.0f} GiB RAM · Python "
        f"{platform.python_version()} · load average {load:.1f} at start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--pending", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--due", type=int, default=1_000, help="timers due at one instant")
    parser.add_argument("--ticks", type=int, default=200, help="idle ticks timed")
    parser.add_argument("--interval", type=float, default=1.0, help="SCHEDULER_INTERVAL, s")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--user", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = asyncio.run(
            worker(args.database_url, args.due, args.ticks, args.interval, args.user)
        )
        print(json.dumps(result))
        return

    url = async_url(args.database_url) if args.database_url else ""
    if not url:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='fieldbot-timers-')}/bench.db"
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {machine()}")
    print(f"{database} · {args.due:,} timers due at once · SCHEDULER_INTERVAL={args.interval}s")
    print()
    header = (
        f"{'pending':>9} | {'tick mean':>9} | {'tick p99':>8} | {'RSS idle':>8} | "
        f"{'RSS after':>9} | {'lag p50':>7} | {'lag p99':>7} | {'lag max':>7} | {'burst':>6} | "
        f"{'CPU/timer':>9}"
    )
    print(header)
    print("-" * len(header))
    for pending in args.pending:
        if url.startswith("sqlite"):
            path = Path(url.split("///", 1)[1])
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        user_id = asyncio.run(prepare(url, pending))
        r = run_worker(url, args, user_id)
        assert r["fired"] == args.due, r
        print(
            f"{pending:>9,} | {r['tick_ms_mean']:>6.2f} ms | {r['tick_ms_p99']:>5.2f} ms | "
            f"{r['rss_idle_mib']:>4.0f} MiB | {r['rss_after_mib']:>5.0f} MiB | "
            f"{r['lag_p50_s']:>5.2f} s | {r['lag_p99_s']:>5.2f} s | {r['lag_max_s']:>5.2f} s | "
            f"{r['burst_s']:>4.2f} s | {r['cpu_per_timer_ms']:>6.2f} ms",
            flush=True,
        )
    print()
    print(
        "tick: one sweep with nothing due; RSS: the worker process's resident memory after the "
        "idle ticks and after the burst; lag: commit time - due time (includes the wait for the "
        "next tick); burst: first to last firing of the due timers; CPU/timer: the worker's CPU "
        "time during the burst per fired timer (the database server's not counted)."
    )


if __name__ == "__main__":
    main()
