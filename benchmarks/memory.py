"""Resident memory of the bot process: idle on an empty database, then idle and busy with
--jobs jobs and --timers pending timers in the database.

The bot (the real FieldBot, polling the fake Bot API) runs in its own process; its RSS is read
from /proc. Phases, one run:

1. empty database: start, settle, RSS;
2. seed --jobs dispatches (most closed, 10% open, spread over --engineers engineers bound to
   the fake's chats) and --timers pending timers due over the next 30 days, with bulk INSERTs;
3. start on that database: start-up time, RSS after settling (the scheduler sweeps every
   second), then every engineer sends /jobs (their open jobs are listed) and RSS again;
   also the time of one timer-sweep claim query against the full table.

    uv run python benchmarks/memory.py                       # SQLite and PostgreSQL
    uv run python benchmarks/memory.py --jobs 10000 --timers 10000 --databases sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from perfkit import dbs, machine
from perfkit.fake import BenchTelegram, Recorder, SimUser
from perfkit.flowrun import Config, bot_settings, suppress_noise
from perfkit.procs import BotProcess, free_port
from perfkit.report import table
from sqlalchemy import insert

from bot.bootstrap import build_services
from bot.config import load_settings
from bot.db.models import Customer, Dispatch, Site, Timer, User
from bot.scheduler.sweep import sweep

OPEN = ("accepted", "contacted", "en_route", "on_site")
DONE = ("awaiting_signoff", "signed_off", "closed")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--engineers", type=int, default=1_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--runtime", default="aiogram", choices=["aiogram", "ptb"])
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before reading")
    parser.add_argument("--pg-admin-url", default=dbs.PG_ADMIN_URL)
    return parser.parse_args(argv)


async def seed(db_url: str, telegram_ids: list[int], jobs: int, timers: int) -> float:
    """Bulk-insert engineers, customers, sites, dispatches and timers; returns seconds."""
    started = time.monotonic()
    rng = random.Random(7)
    now = datetime.now(UTC)
    services = build_services(load_settings(database_url=db_url))
    try:
        async with services.uow() as uow:
            s = uow.session
            await s.execute(
                insert(User),
                [
                    {
                        "id": i + 1,
                        "telegram_id": tid,
                        "chat_id": tid,
                        "role": "engineer",
                        "name": f"Engineer {i:04d}",
                        "staff_no": f"E{i + 1:05d}",
                        "locale": "en",
                        "active": True,
                        "on_duty": False,
                        "created_at": now,
                    }
                    for i, tid in enumerate(telegram_ids)
                ],
            )
            await s.execute(
                insert(Customer),
                [{"id": i + 1, "name": f"Customer {i}", "created_at": now} for i in range(100)],
            )
            await s.execute(
                insert(Site),
                [
                    {
                        "id": i + 1,
                        "customer_id": i + 1,
                        "address": f"{i} Century Avenue",
                        "latitude": 31.23,
                        "longitude": 121.47,
                    }
                    for i in range(100)
                ],
            )
            engineers = len(telegram_ids)
            for start in range(0, jobs, 5000):
                rows: list[dict[str, Any]] = []
                for i in range(start, min(jobs, start + 5000)):
                    status = OPEN[i % 4] if i % 10 == 0 else DONE[i % 3]
                    window = now + timedelta(hours=rng.randint(-2000, 200))
                    rows.append(
                        {
                            "id": i + 1,
                            "number": f"FB{i + 1:06d}",
                            "customer_id": i % 100 + 1,
                            "site_id": i % 100 + 1,
                            "contact_name": "Li Na",
                            "contact_phone": "+8613800138000",
                            "equipment_model": "CH-200 chiller",
                            "quantity": 1,
                            "serials": [f"SN-{i}"],
                            "service_type": "repair",
                            "window_start": window,
                            "window_end": window + timedelta(hours=3),
                            "status": status,
                            "engineer_id": i % engineers + 1,
                            "source": "api",
                            "arrival": {},
                            "report": {},
                            "created_at": window - timedelta(days=1),
                        }
                    )
                await s.execute(insert(Dispatch), rows)
            for start in range(0, timers, 5000):
                await s.execute(
                    insert(Timer),
                    [
                        {
                            "kind": "arrival_reminder",
                            "subject": f"dispatch:{i % max(jobs, 1) + 1}",
                            "due_at": now + timedelta(minutes=rng.randint(60, 30 * 24 * 60)),
                            "payload": {"dispatch_id": i % max(jobs, 1) + 1},
                            "status": "pending",
                            "attempts": 0,
                            "created_at": now,
                        }
                        for i in range(start, min(timers, start + 5000))
                    ],
                )
            await uow.commit()
        if db_url.startswith("postgresql"):
            from sqlalchemy import text

            async with services.uow() as uow:
                for table_name in ("users", "dispatches", "timers", "customers", "sites"):
                    await uow.session.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "
                            f"(SELECT COALESCE(MAX(id), 1) FROM {table_name}))"
                        )
                    )
                await uow.session.execute(text("ANALYZE"))
                await uow.commit()
    finally:
        await services.sessionmaker.kw["bind"].dispose()
    return time.monotonic() - started


async def sweep_query_ms(db_url: str, repeat: int = 20) -> float:
    services = build_services(load_settings(database_url=db_url))
    try:
        await sweep(services)  # warm the connection
        started = time.monotonic()
        for _ in range(repeat):
            await sweep(services)  # nothing is due: one claim query that finds nothing
        return (time.monotonic() - started) / repeat * 1000
    finally:
        await services.sessionmaker.kw["bind"].dispose()


async def measure(args: argparse.Namespace, db_url: str) -> list[list[object]]:
    rows: list[list[object]] = []
    name = dbs.label(db_url)
    await dbs.reset(db_url)
    tg = BenchTelegram(bot_username="fieldbot_bench_bot")
    await tg.start()
    recorder = Recorder()
    tg.on_event(recorder.observe)
    users = [tg.user(first_name=f"E{i}") for i in range(args.engineers)]
    for user in users:
        tg.state_for(user, None)
    cfg = Config("fieldbot", args.runtime, db_url, args.engineers, 0, pin=False)
    try:
        bot = BotProcess("fieldbot", bot_settings(cfg, tg, free_port()), name="mem")
        started = time.monotonic()
        await bot.start()
        boot = time.monotonic() - started
        await asyncio.sleep(args.settle)
        idle = machine.rss_mib(bot.pid)
        rows.append([name, "empty database, idle", f"{idle:.0f}", f"{boot:.1f}"])
        await bot.stop()
        bot.cleanup()

        seconds = await seed(db_url, [u.id for u in users], args.jobs, args.timers)
        print(f"  {name}: seeded {args.jobs} jobs and {args.timers} timers in {seconds:.0f}s")
        bot = BotProcess("fieldbot", bot_settings(cfg, tg, free_port()), name="mem")
        started = time.monotonic()
        await bot.start()
        boot = time.monotonic() - started
        await asyncio.sleep(args.settle)
        label = f"{args.jobs:,} jobs + {args.timers:,} pending timers, idle"
        rows.append([name, label, f"{machine.rss_mib(bot.pid):.0f}", f"{boot:.1f}"])
        sims = [SimUser(tg, recorder, u, timeout=120) for u in users]
        t0 = time.monotonic()
        for sim in sims:
            await sim.send("/jobs")
        await asyncio.gather(*(sim.wait_any() for sim in sims))
        await tg.wait_idle(quiet=0.5, timeout=300)
        took = time.monotonic() - t0
        await asyncio.sleep(args.settle)
        rows.append(
            [
                name,
                f"… after {len(sims)} × /jobs ({took:.1f}s)",
                f"{machine.rss_mib(bot.pid):.0f}",
                "",
            ]
        )
        await bot.stop()
        bot.cleanup()
        sweep_ms = await sweep_query_ms(db_url)
        rows.append([name, "one timer sweep (nothing due), full tables", f"{sweep_ms:.1f} ms", ""])
    finally:
        await tg.stop()
    return rows


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    print(machine.describe())
    rows: list[list[object]] = []
    for name in [d.strip() for d in args.databases.split(",") if d.strip()]:
        if name == "sqlite":
            url = dbs.sqlite_url()
        elif await dbs.pg_available(args.pg_admin_url):
            url = await dbs.pg_scratch_url(args.pg_admin_url)
        else:
            print(f"PostgreSQL at {args.pg_admin_url} is not reachable: skipped")
            continue
        rows += await measure(args, url)
    print()
    print("Resident memory of the bot process (RSS, MiB) and start-up time (s):")
    print(table(["db", "state", "RSS MiB", "start s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
