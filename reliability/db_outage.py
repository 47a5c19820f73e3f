"""Database outage under load: PostgreSQL "restarts" for 10 seconds while engineers walk jobs.

The machine's PostgreSQL is shared (CI, other people), so by default the outage is staged by
a TCP proxy in front of it (reliability/outage_proxy.py): the bot connects through the proxy,
which at the chosen moment cuts every open connection and refuses new ones for ``--outage``
seconds, then accepts again — what the bot sees when the server restarts.
``--real-restart`` stops and starts the real cluster instead (``pg_ctlcluster 15 main
stop|start``; needs the rights to, and stops everyone else's databases: manual runs only).

Per mode (webhook, polling): a scratch database, the real bot in a subprocess against the fake
Bot API, N engineers each walking jobs (13 updates a job), canary timers due before, during and
after the outage; the outage starts ``--after`` seconds into the walk. Passes when the bot
process stayed up (same pid, no restart), every job completed, no update lost (each one the
fake handed out is done in the inbox), no message lost or delivered twice, each chat's
messages in order, and every timer fired once.

    uv run python reliability/db_outage.py                       # webhook and polling, 10 s
    uv run python reliability/db_outage.py --mode webhook -n 20 --outage 5
    uv run python reliability/db_outage.py --real-restart        # manual: restarts the cluster
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from bot.db.engine import make_engine
from bot.db.models import Timer
from bot.flows.offers import OFFER_TIMEOUT
from reliability.outage_kit import (
    PG_ADMIN_URL,
    Load,
    LoadSpec,
    dbs,
    error_lines,
    figure,
    suppress_noise,
)
from reliability.outage_proxy import DbProxy

SCRATCH_DB = "fieldbot_outage"
CANARY = "canary:"
CANARY_GRACE = 3.0  # seconds after the last canary is due: a sweep tick (1 s) and its claim


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--engineers", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2, help="per engineer")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the database is down")
    parser.add_argument("--after", type=float, default=5.0, help="seconds into the walk")
    parser.add_argument("--mode", choices=["webhook", "polling", "both"], default="both")
    parser.add_argument("--runtime", choices=["aiogram", "ptb"], default="aiogram")
    parser.add_argument(
        "--visitors",
        type=int,
        default=5,
        help="strangers saying hello each second near the outage",
    )
    parser.add_argument(
        "--max-recovery",
        type=float,
        default=30.0,
        help="fail when an update of the outage waits longer than this after the database is back",
    )
    parser.add_argument("--canaries", type=int, default=20, help="timers due around the outage")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--database", default=SCRATCH_DB, help="scratch database (dropped)")
    parser.add_argument(
        "--real-restart",
        action="store_true",
        help="stop/start the real cluster (pg_ctlcluster 15 main) instead of the proxy",
    )
    return parser.parse_args(argv)


async def add_canaries(url: str, count: int, first: datetime, last: datetime) -> None:
    """``count`` timers due evenly over [first, last] that do nothing when they fire (an
    offer_timeout for an offer that does not exist): the sweep's claim and mark only."""
    engine = make_engine(url)
    step = (last - first) / max(1, count - 1)
    rows = [
        {
            "kind": OFFER_TIMEOUT,
            "subject": f"{CANARY}{n}",
            "due_at": first + step * n,
            "payload": {"offer_id": 0},
            "status": "pending",
            "attempts": 0,
            "created_at": datetime.now(UTC),
        }
        for n in range(count)
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Timer), rows)
    finally:
        await engine.dispose()


async def canary_report(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Timer.status, Timer.attempts, Timer.due_at, Timer.fired_at).where(
                        Timer.subject.like(f"{CANARY}%")
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    late = [(f - d).total_seconds() for s, _, d, f in rows if s == "done" and f is not None]
    return {
        "count": len(rows),
        "fired": sum(1 for s, *_ in rows if s == "done"),
        "once": sum(1 for s, a, *_ in rows if s == "done" and a == 1),
        "max_late": max(late) if late else None,
    }


def real_restart(seconds: float) -> tuple[float, float]:
    def ctl(action: str) -> None:
        subprocess.run(["pg_ctlcluster", "15", "main", action], check=True)

    ctl("stop")
    down = time.time()
    time.sleep(seconds)
    ctl("start")
    return down, time.time()


async def one_run(args: argparse.Namespace, mode: str, direct: str, proxy: DbProxy | None) -> bool:
    bot_url = proxy.url_for(direct) if proxy is not None else direct
    spec = LoadSpec(
        engineers=args.engineers,
        jobs=args.jobs,
        webhook=mode == "webhook",
        runtime=args.runtime,
        db_url=bot_url,
        direct_url=direct,
        settings={"log_level": "WARNING"},
    )
    load = Load(spec)
    print(f"== {mode}: {args.engineers} engineers × {args.jobs} jobs, set-up ...", flush=True)
    try:
        await load.start()
        tg = load.tg
        pids = [p.pid for p in load.procs]
        now = datetime.now(UTC)
        start = now + timedelta(seconds=args.after - 2)
        last_canary = start + timedelta(seconds=args.outage + 6)
        await add_canaries(direct, args.canaries, start, last_canary)
        walk = asyncio.create_task(load.walk())
        await asyncio.sleep(max(0.0, args.after - 2))
        quiet = asyncio.Event()  # visitors chat from 2 s before the outage to 2 s after it
        chatter = asyncio.create_task(load.chatter(quiet, users=args.visitors))
        await asyncio.sleep(min(2.0, args.after))
        hooks_before = len(tg.webhook_deliveries)
        polls_before = sum(1 for m, _ in tg.calls if m == "getUpdates")
        print(f"   database down for {args.outage:.0f} s ...", flush=True)
        if proxy is not None:
            down, up = await proxy.outage(args.outage)
        else:
            down, up = await asyncio.to_thread(real_restart, args.outage)
        hooks = Counter(str(s) for _, s in tg.webhook_deliveries[hooks_before:])
        polls = sum(1 for m, _ in tg.calls if m == "getUpdates") - polls_before
        print("   database back; walking on ...", flush=True)
        await asyncio.sleep(2)
        quiet.set()
        await chatter
        await walk
        settled = await load.settle()
        # A short walk can end before the last canaries are due: give them their sweep.
        due_in = (last_canary - datetime.now(UTC)).total_seconds() + CANARY_GRACE
        await asyncio.sleep(max(0.0, due_in))
        outcome = await load.check()
        canaries = await canary_report(direct)
        alive = load.alive()
        same = [p.pid for p in load.procs] == pids
        log = load.log_lines()
    finally:
        await load.stop()
    errors, warnings, tracebacks = error_lines(log)
    first = load.first_bot_entry_after(up)
    answered = load.answered_by(down, up)
    problems = list(outcome.problems)
    if alive:
        problems += alive
    if not same:
        problems.append("a bot process was restarted")
    if answered is None or answered - up > args.max_recovery:
        waited = figure(answered - up if answered else None)
        problems.append(f"updates of the outage answered {waited} after the database came back")
    unanswered = load.chatter_unanswered()
    if unanswered:
        problems.append(f"{unanswered} visitor message(s) without exactly one answer")
    if not settled:
        problems.append("inbox/outbox still busy 60 s after the walk")
    if canaries["fired"] != canaries["count"] or canaries["once"] != canaries["count"]:
        problems.append(f"canary timers: {canaries}")
    print(
        f"   updates during the outage: {load.actions_between(down, up)}"
        + (f"; webhook answers then: {dict(hooks)}" if mode == "webhook" else "")
        + (f"; getUpdates calls then: {polls}" if mode == "polling" else "")
    )
    print(
        f"   bot log: {errors} ERROR, {warnings} WARNING lines, {tracebacks} tracebacks;"
        f" process up throughout: {'yes' if not alive and same else 'NO'}"
    )
    print(
        f"   first bot reply after the database came back: "
        f"{figure(first - up if first else None)}; every update of the outage answered "
        f"{figure(answered - up if answered else None)} after it came back"
    )
    print(
        f"   jobs completed {outcome.jobs_done}/{outcome.jobs}; updates {outcome.updates_sent} "
        f"handed out, lost {outcome.updates_lost}, retried {outcome.inbox_retried}; messages "
        f"{outcome.messages_queued} queued, lost {outcome.messages_lost}, doubled "
        f"{outcome.messages_doubled}, chats out of order {outcome.out_of_order_chats}"
    )
    print(
        f"   canary timers fired {canaries['fired']}/{canaries['count']}, once "
        f"{canaries['once']}, latest {figure(canaries['max_late'])} after due; "
        f"walk {load.walk_ended - load.walk_started:.0f} s"
    )
    print(f"   lost = {outcome.updates_lost + outcome.messages_lost}")
    for problem in problems:
        print(f"   ! {problem}")
    print(f"   {'PASS' if not problems else 'FAIL'}")
    return not problems


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    if not await dbs.pg_available(args.pg_admin_url):
        print(f"PostgreSQL at {args.pg_admin_url} is not reachable")
        return 2
    direct = await dbs.pg_scratch_url(args.pg_admin_url, args.database)
    proxy: DbProxy | None = None
    if not args.real_restart:
        target = make_url(direct)
        proxy = DbProxy(target.port or 5432, target.host or "127.0.0.1")
        await proxy.start()
    modes = ["webhook", "polling"] if args.mode == "both" else [args.mode]
    ok = True
    try:
        for mode in modes:
            ok = await one_run(args, mode, direct, proxy) and ok
    finally:
        if proxy is not None:
            await proxy.stop()
        await drop(args.pg_admin_url, args.database)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


async def drop(admin_url: str, database: str) -> None:
    from sqlalchemy import text

    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
