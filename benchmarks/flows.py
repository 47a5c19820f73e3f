"""Flow throughput and latency, fieldbot beside the bare frameworks, in one run.

N simulated engineers each walk whole jobs (13 updates a job, as bot/demo.py) through the fake
Bot API over HTTP. For every (runtime, database, N) the same load runs against fieldbot and
then against a bare bot of the same framework doing one database write and one reply per
update; the overhead table gives fieldbot's throughput as a share of the bare bot's.

The bot runs in its own process, pinned to CPU 1 (the fake Bot API and the simulated users
run here, pinned to CPU 0), so "updates per bot CPU-second" is what one core of bot gives.
The sender's rate settings are raised (SEND_GLOBAL_RATE=100000, SEND_CHAT_RATE=1000,
SEND_CHAT_BURST=1000) and the fake enforces no flood limits: Telegram's limits would cap
every run at 30 messages a second (benchmarks/outbox.py measures those instead).

    uv run python benchmarks/flows.py                       # N=100; aiogram+PTB; SQLite+PG
    uv run python benchmarks/flows.py -n 1000 --databases sqlite
    uv run python benchmarks/flows.py --profile -n 100 --runtimes aiogram --databases sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
from pathlib import Path

from perfkit import dbs, machine
from perfkit.flowrun import UPDATES_PER_JOB, Config, Result, run, suppress_noise
from perfkit.patches import PATCHES
from perfkit.profiling import summarise
from perfkit.report import ms, table


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-n", "--engineers", default="100", help="simulated engineers, comma-separated"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="jobs per engineer (default: enough for about --updates updates per run)",
    )
    parser.add_argument(
        "--updates", type=int, default=1300, help="target updates per run when --jobs is 0"
    )
    parser.add_argument("--runtimes", default="aiogram,ptb", help="aiogram,ptb")
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument(
        "--kinds",
        default="fieldbot,bare",
        help="fieldbot,bare[,bare-aiohttp,bare-answering]: bare-aiohttp is bare PTB on "
        "fieldbot's PTB transport; bare-answering also answers each button press",
    )
    parser.add_argument(
        "--pg-admin-url",
        default=dbs.PG_ADMIN_URL,
        help="a PostgreSQL server to create the scratch database fieldbot_perf on",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin bot and driver to CPUs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the fieldbot runs with py-spy and print where the bot's CPU goes",
    )
    parser.add_argument(
        "--sql",
        action="store_true",
        help="count the SQL statements and commits per update in the bot process",
    )
    parser.add_argument(
        "--patches",
        default="",
        help="prototype fixes to apply to fieldbot (perfkit/patches.py): " + ",".join(PATCHES),
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="fieldbot as is, with each prototype fix alone, with all of them, and bare",
    )
    parser.add_argument("--step-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def jobs_for(n: int, args: argparse.Namespace) -> int:
    if args.jobs:
        return args.jobs
    return max(1, math.ceil(args.updates / (UPDATES_PER_JOB * n)))


def result_row(r: Result) -> list[object]:
    c = r.config
    fail = f"{len(r.failures)}" if r.failures else "0"
    return [
        c.name,
        c.runtime,
        dbs.label(c.db_url),
        c.engineers,
        c.jobs,
        r.updates,
        f"{r.throughput:.0f}",
        f"{r.per_cpu_second:.0f}",
        f"{100 * r.bot_cpu / r.seconds:.0f}%" if r.seconds else "–",
        f"{100 * r.cpu.get('driver', 0) / r.seconds:.0f}%" if r.seconds else "–",
        f"{ms(r.p('first', 50))}/{ms(r.p('first', 95))}/{ms(r.p('first', 99))}",
        f"{ms(r.p('step', 50))}/{ms(r.p('step', 95))}/{ms(r.p('step', 99))}",
        f"{r.rss_before:.0f}→{r.rss_after:.0f}",
        fail,
    ]


HEADERS = [
    "bot",
    "runtime",
    "db",
    "N",
    "jobs/N",
    "updates",
    "upd/s",
    "upd/CPU-s",
    "bot CPU",
    "driver CPU",
    "1st reply p50/95/99 ms",
    "step p50/95/99 ms",
    "RSS MiB",
    "fail",
]


def overhead_rows(results: list[Result]) -> list[list[object]]:
    rows = []
    bares = {
        (r.config.kind, r.config.runtime, r.config.db_url, r.config.engineers): r
        for r in results
        if r.config.kind.startswith("bare")
    }
    for r in results:
        c = r.config
        if c.kind != "fieldbot":
            continue
        runtime, db, n = c.runtime, c.db_url, c.engineers
        for kind in ("bare", "bare-aiohttp", "bare-answering"):
            bare = bares.get((kind, runtime, db, n))
            if bare is None or not bare.throughput or not bare.per_cpu_second:
                continue
            rows.append(_overhead_row(r, bare))
    return rows


def _overhead_row(r: Result, bare: Result) -> list[object]:
    c = r.config
    wall = r.throughput / bare.throughput
    cpu = r.per_cpu_second / bare.per_cpu_second
    return [
        f"{c.name} vs {bare.config.kind}",
        c.runtime,
        dbs.label(c.db_url),
        c.engineers,
        f"{r.throughput:.0f}",
        f"{bare.throughput:.0f}",
        f"{wall:.2f}",
        f"{r.per_cpu_second:.0f}",
        f"{bare.per_cpu_second:.0f}",
        f"{cpu:.2f}",
        "yes" if min(wall, cpu) >= 0.6 else "no",
    ]


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    print(machine.describe())
    urls: list[str] = []
    for name in _list(args.databases):
        if name == "sqlite":
            urls.append(dbs.sqlite_url())
        elif name in ("postgresql", "pg", "postgres"):
            if await dbs.pg_available(args.pg_admin_url):
                urls.append(await dbs.pg_scratch_url(args.pg_admin_url))
            else:
                print(f"PostgreSQL at {args.pg_admin_url} is not reachable: skipped")
        else:
            raise SystemExit(f"unknown database {name!r}")
    kinds = ["fieldbot"] if args.profile else _list(args.kinds)
    chosen = tuple(_list(args.patches))
    variants: list[tuple[str, tuple[str, ...]]] = [
        (kind, chosen if kind == "fieldbot" else ()) for kind in kinds
    ]
    if args.ablation:
        variants = [("fieldbot", ())]
        variants += [("fieldbot", (p,)) for p in PATCHES]
        variants += [("fieldbot", PATCHES), ("bare", ())]
    configs = [
        Config(
            kind=kind,
            patches=patches,
            runtime=runtime,
            db_url=url,
            engineers=int(n),
            jobs=jobs_for(int(n), args),
            pin=not args.no_pin,
            sql_stats=args.sql,
            step_timeout=args.step_timeout,
        )
        for n in _list(args.engineers)
        for url in urls
        for runtime in _list(args.runtimes)
        for kind, patches in variants  # fieldbot and its bare twin back to back
        if kind != "bare-aiohttp" or runtime == "ptb"  # aiogram is on aiohttp already
    ]
    results: list[Result] = []
    profiles = Path(tempfile.mkdtemp(prefix="fieldbot-profiles-"))
    for number, cfg in enumerate(configs, 1):
        if args.profile:
            cfg.profile = profiles / f"{cfg.label.replace('/', '_')}.txt"
        print(f"[{number}/{len(configs)}] {cfg.label}, {cfg.jobs} job(s) each ...", flush=True)
        result = await run(cfg)
        results.append(result)
        print(
            f"    {result.updates} updates in {result.seconds:.1f}s = {result.throughput:.0f}/s;"
            f" bot CPU {result.bot_cpu:.1f}s ({result.per_cpu_second:.0f} updates/CPU-s);"
            f" first reply p50 {ms(result.p('first', 50))} ms;"
            f" setup {result.setup_seconds:.0f}s"
            + (f"; inbox {result.inbox}" if result.inbox else ""),
            flush=True,
        )
        for failure in result.failures[:3]:
            print(f"    ! {failure}")
        if result.log_lines:
            print(f"    the bot logged {len(result.log_lines)} warning/error line(s), e.g.:")
            for line in result.log_lines[:3]:
                print(f"      {line[:160]}")
        if result.sql and result.updates:
            per = {k: v / result.updates for k, v in result.sql.items()}
            top = sorted(per.items(), key=lambda kv: -kv[1])
            print(
                "    SQL per update: " + ", ".join(f"{k.lstrip('~')} {v:.2f}" for k, v in top[:18])
            )
        if cfg.profile and cfg.profile.exists():
            print(f"    profile of the bot process ({cfg.profile}):")
            print("      " + summarise(cfg.profile).replace("\n", "\n      "))
    print()
    print("Flow throughput and latency (closed loop, no think time; latencies from the fake's")
    print("timestamps: update queued → first bot call / last reply of that step):")
    print(table(HEADERS, [result_row(r) for r in results]))
    rows = overhead_rows(results)
    if rows:
        print()
        print("fieldbot against the bare framework (same load, same run):")
        print(
            table(
                [
                    "fieldbot",
                    "runtime",
                    "db",
                    "N",
                    "fieldbot upd/s",
                    "bare upd/s",
                    "ratio",
                    "fieldbot upd/CPU-s",
                    "bare upd/CPU-s",
                    "ratio/CPU",
                    "≥ 0.6",
                ],
                rows,
            )
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "label": r.config.label,
                        "updates": r.updates,
                        "seconds": r.seconds,
                        "throughput": r.throughput,
                        "per_cpu_second": r.per_cpu_second,
                        "cpu": r.cpu,
                        "first_ms": [r.p("first", q) * 1000 for q in (50, 95, 99)],
                        "step_ms": [r.p("step", q) * 1000 for q in (50, 95, 99)],
                        "rss_mib": [r.rss_before, r.rss_after],
                        "failures": r.failures,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
