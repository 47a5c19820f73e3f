"""Scale-out: one against two fieldbot worker processes on PostgreSQL, in webhook mode.

Both workers share one PostgreSQL database (inbox, outbox and timers claimed with
``FOR UPDATE SKIP LOCKED``) and each serves the webhook on its own port. In production a load
balancer sits in front of them; here the fake Bot API plays it: it delivers updates
round-robin over the workers' webhook URLs, up to 40 at a time (Telegram's default
``max_connections``) and one at a time per chat, as Telegram does (the stock fake posts one
update at a time to one URL; see perfkit/fake.py). Updates land in whichever worker received
them; either worker's processor may handle them.

The same load (N engineers walking whole jobs, as benchmarks/flows.py) runs against one
worker, then two, in one run (--repeat alternates them to average out the machine's noise).
Nothing is pinned: the machine's cores are shared by the workers, PostgreSQL and the driver
(the fake and the simulated users); the table shows who used how much CPU.

    uv run python benchmarks/scaleout.py
    uv run python benchmarks/scaleout.py -n 200 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys

from perfkit import dbs, machine
from perfkit.flowrun import UPDATES_PER_JOB, Config, Result, run, suppress_noise
from perfkit.report import ms, table


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--engineers", type=int, default=100)
    parser.add_argument(
        "--jobs", type=int, default=0, help="per engineer (default: ~2,600 updates)"
    )
    parser.add_argument("--runtime", default="aiogram", choices=["aiogram", "ptb"])
    parser.add_argument(
        "--repeat", type=int, default=1, help="alternate 1 and 2 workers this often"
    )
    parser.add_argument("--pg-admin-url", default=dbs.PG_ADMIN_URL)
    return parser.parse_args(argv)


def row(r: Result) -> list[object]:
    s = r.seconds or 1.0
    busy = r.machine_load * (os.cpu_count() or 1)
    return [
        r.config.workers,
        r.updates,
        f"{r.throughput:.0f}",
        f"{r.per_cpu_second:.0f}",
        f"{r.bot_cpu / s:.2f}",
        f"{r.cpu.get('postgres', 0) / s:.2f}",
        f"{r.cpu.get('driver', 0) / s:.2f}",
        f"{busy:.2f}",
        f"{ms(r.p('first', 50))}/{ms(r.p('first', 95))}/{ms(r.p('first', 99))}",
        len(r.failures),
    ]


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    print(machine.describe())
    if not await dbs.pg_available(args.pg_admin_url):
        print(f"PostgreSQL at {args.pg_admin_url} is not reachable")
        return 2
    url = await dbs.pg_scratch_url(args.pg_admin_url)
    jobs = args.jobs or max(1, math.ceil(2600 / (UPDATES_PER_JOB * args.engineers)))
    results: list[Result] = []
    for _ in range(args.repeat):
        for workers in (1, 2):
            cfg = Config(
                kind="fieldbot",
                runtime=args.runtime,
                db_url=url,
                engineers=args.engineers,
                jobs=jobs,
                workers=workers,
                webhook=True,
                pin=False,
            )
            print(f"{cfg.label}, {jobs} job(s) each ...", flush=True)
            result = await run(cfg)
            results.append(result)
            print(f"    {result.updates} updates, {result.throughput:.0f}/s", flush=True)
            for failure in result.failures[:3]:
                print(f"    ! {failure}")
    print()
    print("Webhook mode on PostgreSQL, N engineers walking jobs (CPU columns: cores in use):")
    print(
        table(
            [
                "workers",
                "updates",
                "upd/s",
                "upd/worker-CPU-s",
                "workers CPU",
                "postgres CPU",
                "driver CPU",
                "machine CPU",
                "1st reply p50/95/99 ms",
                "fail",
            ],
            [row(r) for r in results],
        )
    )
    one = [r.throughput for r in results if r.config.workers == 1]
    two = [r.throughput for r in results if r.config.workers == 2]
    if one and two and sum(one):
        ratio = (sum(two) / len(two)) / (sum(one) / len(one))
        print(f"\nthroughput, two workers / one worker: {ratio:.2f}")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
