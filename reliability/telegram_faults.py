"""Telegram faults under load: 10 % of the bot's calls fail while engineers walk jobs.

The fake Bot API (bot/fakeapi, ``FaultPlan``) fails a seeded 10 % of every call the bot
makes — getUpdates, sendMessage, editMessageText, answerCallbackQuery … — with one of: 429
with ``retry_after``, 500, 502, a hanging request dropped unanswered after ``--hang`` seconds
("timeout"), or a connection dropped at once. The real bot runs in a subprocess (polling by
default) and N engineers walk whole jobs meanwhile. Passes when every job completed, no
update was lost, every message the bot queued arrived exactly once and in order in its chat,
no outbox row failed, and no chat was called again before its retry_after had run out (the
fake records every such call, whatever the method).

``--lost-responses`` adds the sixth kind, a call executed but its answer lost (the connection
drops after the fake has acted): the bot cannot tell it from a call that never arrived, and
sends again — the run then shows how many messages arrived twice (at-least-once delivery).

    uv run python reliability/telegram_faults.py
    uv run python reliability/telegram_faults.py -n 10 --rate 0.2 --mode webhook
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.fakeapi import FaultPlan
from bot.fakeapi.models import DEFAULT_FAULT_KINDS
from reliability.db_outage import drop
from reliability.outage_kit import PG_ADMIN_URL, Load, LoadSpec, dbs, suppress_noise

SCRATCH_DB = "fieldbot_tgfaults"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--engineers", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1, help="per engineer")
    parser.add_argument("--rate", type=float, default=0.1, help="share of calls that fail")
    parser.add_argument("--hang", type=float, default=3.0, help="seconds a 'timeout' hangs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["polling", "webhook"], default="polling")
    parser.add_argument("--runtime", choices=["aiogram", "ptb"], default="aiogram")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--lost-responses", action="store_true", help="add 'lost_response'")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    if args.database == "postgresql":
        url = await dbs.pg_scratch_url(args.pg_admin_url, SCRATCH_DB)
    else:
        url = dbs.sqlite_url()
    spec = LoadSpec(
        engineers=args.engineers,
        jobs=args.jobs,
        webhook=args.mode == "webhook",
        runtime=args.runtime,
        db_url=url,
        direct_url=url,
        settings={"log_level": "WARNING"},
        step_timeout=180,
    )
    load = Load(spec)
    kinds = DEFAULT_FAULT_KINDS + (("lost_response",) if args.lost_responses else ())
    print(
        f"{args.engineers} engineers × {args.jobs} job(s), {args.mode}, {args.runtime}, "
        f"{args.database}; {args.rate:.0%} of calls fail ({', '.join(kinds)}) ...",
        flush=True,
    )
    try:
        await load.start()
        calls_before = len(load.tg.calls)
        load.tg.faults = FaultPlan(
            rate=args.rate, kinds=kinds, retry_after=1, seed=args.seed, timeout_delay=args.hang
        )
        await load.walk()
        load.tg.faults = None
        settled = await load.settle(timeout=120)
        outcome = await load.check()
        outcome.problems += load.alive()
        calls = Counter(m for m, _ in load.tg.calls[calls_before:])
        faults = Counter(f.kind for f in load.tg.injected_faults)
        by_method = Counter(f.method for f in load.tg.injected_faults)
        early = list(load.tg.early_calls)
    finally:
        await load.stop()
        if args.database == "postgresql":
            await drop(args.pg_admin_url, SCRATCH_DB)
    problems = list(outcome.problems)
    if not settled:
        problems.append("inbox/outbox still busy 120 s after the walk")
    if early:
        problems.append(f"{len(early)} call(s) inside a retry_after: {early[:3]}")
    walk = load.walk_ended - load.walk_started
    print(f"   walk {walk:.0f} s; bot calls {sum(calls.values())}: {dict(calls.most_common(6))}")
    print(f"   faults injected {sum(faults.values())}: {dict(faults)}; by method {dict(by_method)}")
    print(
        f"   jobs completed {outcome.jobs_done}/{outcome.jobs}; updates {outcome.updates_sent}, "
        f"lost {outcome.updates_lost}; messages queued {outcome.messages_queued}, delivered "
        f"{outcome.messages_delivered}, lost {outcome.messages_lost}, doubled "
        f"{outcome.messages_doubled}; chats out of order {outcome.out_of_order_chats}; "
        f"calls inside a retry_after {len(early)}"
    )
    print(f"   outbox rows: {dict(outcome.outbox)}")
    for problem in problems:
        print(f"   ! {problem}")
    print("PASS" if not problems else "FAIL")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
