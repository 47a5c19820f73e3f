"""Two workers in webhook mode on one PostgreSQL: the same outcome as one worker.

The same load (N engineers each walking jobs, as benchmarks/scaleout.py) runs once against
one worker and once against two sharing the database; the fake Bot API plays the load
balancer (round-robin over the workers' webhook URLs, one update at a time per chat). In the
two-worker run every "Accept" tap is delivered to *both* workers at once (a webhook retry that
lands on the other worker). Passes when every job ends in the same state in both runs, each
job's status changed once per step (no update or timer acted on twice; an accept delivered
twice acts once), no timer fired twice, no update lost, no message lost or doubled.
(tests/pg/test_two_workers.py proves separately that two processes never fire one timer twice.)

    uv run python reliability/two_workers.py
    uv run python reliability/two_workers.py -n 20 --jobs 1
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability.db_outage import drop
from reliability.outage_kit import (
    PG_ADMIN_URL,
    BenchTelegram,
    Load,
    LoadSpec,
    Outcome,
    dbs,
    suppress_noise,
)

SCRATCH_DB = "fieldbot_two_workers"


class TwiceTelegram(BenchTelegram):
    """Delivers every accept tap to every worker at once (the same update, twice)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.doubled = 0

    async def _post_update(self, hook: Any, pending: Any) -> bool:
        data = str(pending.update.get("callback_query", {}).get("data", ""))
        if len(self.webhook_targets) < 2 or not data.endswith(":acc"):
            return bool(await super()._post_update(hook, pending))
        self.doubled += 1
        hooks = [
            dataclasses.replace(hook, url=target + "/telegram/webhook")
            for target in self.webhook_targets
        ]
        post = super()._post_update
        results = await asyncio.gather(*(post(h, pending) for h in hooks))
        return any(results)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--engineers", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2, help="per engineer")
    parser.add_argument("--runtime", choices=["aiogram", "ptb"], default="aiogram")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    return parser.parse_args(argv)


async def one_run(args: argparse.Namespace, url: str, workers: int) -> tuple[Outcome, int]:
    spec = LoadSpec(
        engineers=args.engineers,
        jobs=args.jobs,
        workers=workers,
        webhook=True,
        runtime=args.runtime,
        db_url=url,
        direct_url=url,
        settings={"log_level": "WARNING"},
    )
    tg = TwiceTelegram(bot_username="fieldbot_bench_bot")
    load = Load(spec, tg)
    print(f"== {workers} worker(s): {args.engineers} engineers × {args.jobs} jobs ...", flush=True)
    try:
        await load.start()
        await load.walk()
        if not await load.settle():
            print("   ! inbox/outbox still busy 60 s after the walk")
        outcome = await load.check()
        outcome.problems += load.alive()
        per_worker = dict(tg.deliveries_per_target)
    finally:
        await load.stop()
    print(
        f"   walk {load.walk_ended - load.walk_started:.0f} s; updates {outcome.updates_sent}, "
        f"lost {outcome.updates_lost}; accepts delivered to both workers {tg.doubled}; "
        f"deliveries per worker {list(per_worker.values())}"
    )
    print(
        f"   jobs done {outcome.jobs_done}/{outcome.jobs}; statuses entered twice "
        f"{outcome.events_doubled}; timers done {outcome.timers_done}, fired twice "
        f"{outcome.timers_twice}; messages {outcome.messages_queued}, lost "
        f"{outcome.messages_lost}, doubled {outcome.messages_doubled}"
    )
    for problem in outcome.problems:
        print(f"   ! {problem}")
    return outcome, tg.doubled


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    if not await dbs.pg_available(args.pg_admin_url):
        print(f"PostgreSQL at {args.pg_admin_url} is not reachable")
        return 2
    url = await dbs.pg_scratch_url(args.pg_admin_url, SCRATCH_DB)
    try:
        one, _ = await one_run(args, url, 1)
        two, doubled = await one_run(args, url, 2)
    finally:
        await drop(args.pg_admin_url, SCRATCH_DB)
    problems = [f"one worker: {p}" for p in one.problems]
    problems += [f"two workers: {p}" for p in two.problems]
    if one.final_states != two.final_states:
        differ = {
            k: (one.final_states.get(k), two.final_states.get(k))
            for k in set(one.final_states) | set(two.final_states)
            if one.final_states.get(k) != two.final_states.get(k)
        }
        problems.append(f"final states differ: {dict(list(differ.items())[:5])}")
    if not doubled:
        problems.append("no accept was delivered twice (the check did not run)")
    print(
        f"same final state in both runs: {one.final_states == two.final_states} "
        f"({len(two.final_states)} jobs)"
    )
    for problem in problems:
        print(f"! {problem}")
    print("PASS" if not problems else "FAIL")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
