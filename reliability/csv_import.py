"""CSV import at scale: rows/s, peak memory, a kill -9 half-way, and a second run.

Writes a CSV of ``--rows`` dispatches (about 1 % bad rows: a bad phone, a window in the past,
a missing value; some quoted multi-line descriptions with commas; some formula cells), then
runs the real ``fieldbot dispatch import --json`` on it in a child process, on a scratch
database of its own:

1. ``--kill-after`` seconds into a first import the child is killed with SIGKILL;
2. the import is run again to the end (timed: rows/s, the child's peak RSS);
3. and once more, which must import nothing.

Then the database must hold exactly one dispatch per good row (no duplicate, whatever the
kill interrupted), each with its "created" history line (no half-stored row), and every bad
row must have been reported with its line number. Exit status 0 when all of that holds.

    uv run python reliability/csv_import.py                    # 100,000 rows, SQLite
    uv run python reliability/csv_import.py --rows 5000 --database postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "benchmarks", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from perfkit import dbs  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from bot.db.engine import make_engine  # noqa: E402
from bot.db.models import Dispatch, DispatchEvent  # noqa: E402

COLUMNS = [
    "customer",
    "contact_name",
    "contact_phone",
    "address",
    "equipment_model",
    "quantity",
    "serials",
    "service_type",
    "window_start",
    "window_end",
    "description",
    "ref",
]
# the real CLI, reporting its own peak RSS (ru_maxrss, kB on Linux) on the way out
CHILD = (
    "import atexit, resource, sys; u = lambda: resource.getrusage(resource.RUSAGE_SELF); "
    "atexit.register(lambda: print('PEAK_RSS_KB', u().ru_maxrss, u().ru_utime + u().ru_stime, "
    "file=sys.stderr)); from bot.cli import main; main()"
)
SERVICE_TYPES = ["repair", "maintenance", "installation", "startup", "维修"]


def write_csv(path: Path, rows: int, seed: int) -> set[int]:
    """The file, streamed to disk; returns the line numbers of the rows that must be refused."""
    rng = random.Random(seed)
    bad: set[int] = set()
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        line = 2
        for n in range(rows):
            day = 1 + n % 28
            values = {
                "customer": f"客户 {n % 2000} Co., Ltd",
                "contact_name": "李娜",
                "contact_phone": f"138{n % 100_000_000:08d}",
                "address": f"{n % 5000} Century Avenue, Pudong",
                "equipment_model": f"CH-{n % 50}",
                "quantity": "1",
                "serials": f"SN-{n}",
                "service_type": SERVICE_TYPES[n % len(SERVICE_TYPES)],
                "window_start": f"2030-03-{day:02d}T09:00",
                "window_end": f"2030-03-{day:02d}T12:00",
                "description": "",
                "ref": f"ERP-{n}",
            }
            if n % 10 == 3:
                values["description"] = 'Compressor trips,\nthen restarts; "E4" on display'
            if n % 97 == 5:
                values["customer"] = '=HYPERLINK("http://x")'
            kind = rng.random()
            if kind < 0.004:
                values["contact_phone"] = "call me"
            elif kind < 0.008:
                values["window_end"] = "2020-01-01T00:00"
            elif kind < 0.01:
                values["equipment_model"] = ""
            if kind < 0.01:
                bad.add(line)
            writer.writerow([values[c] for c in COLUMNS])
            line += 1 + values["description"].count("\n")
    return bad


def run_import(
    path: Path, url: str, *, kill_after: float | None = None
) -> tuple[dict, float, int, float]:
    """``fieldbot dispatch import --json`` in a child: (its report, seconds, peak RSS in kB,
    CPU seconds it used: a figure that does not depend on how busy the machine is)."""
    env = {**os.environ, "DATABASE_URL": url, "BOT_USERNAME": "fieldbot_bench_bot"}
    env.pop("BOT_TOKEN", None)
    command = [sys.executable, "-c", CHILD, "dispatch", "import", str(path), "--json"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
        if kill_after is not None:
            try:
                child.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
        _, err = child.communicate()
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode()
    if kill_after is not None:
        return {"killed": child.returncode == -signal.SIGKILL}, seconds, -1, -1.0
    if child.returncode not in (0, 1) or not text.strip():
        raise SystemExit(f"import failed ({child.returncode}): {err.decode()[-2000:]}")
    usage = [x.split()[1:] for x in err.decode().splitlines() if x.startswith("PEAK_RSS_KB")]
    peak, cpu = (int(usage[0][0]), float(usage[0][1])) if usage else (-1, -1.0)
    return json.loads(text), seconds, peak, cpu


async def database_counts(url: str) -> tuple[int, int, int]:
    """(dispatches, distinct import keys, dispatches without their "created" event)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(Dispatch))
            keys = await conn.scalar(select(func.count(func.distinct(Dispatch.import_key))))
            created = select(DispatchEvent.dispatch_id).where(DispatchEvent.kind == "created")
            orphans = await conn.scalar(
                select(func.count()).select_from(Dispatch).where(Dispatch.id.not_in(created))
            )
        return int(total or 0), int(keys or 0), int(orphans or 0)
    finally:
        await engine.dispose()


# the server's maintenance database creates and drops ours; the suite's "test" is never touched
PG_ADMIN = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "fieldbot_csv_import"


async def drop_pg_scratch() -> None:
    engine = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def scratch_url(database: str) -> str:
    if database == "postgresql":
        url = await dbs.pg_scratch_url(admin_url=PG_ADMIN, database=PG_DB)
    else:
        url = dbs.sqlite_url(name="csv_import.db")
    await dbs.reset(url)
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--kill-after", type=float, default=20.0, help="seconds; 0: no kill")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average {os.getloadavg()}")

    folder = Path(tempfile.mkdtemp(prefix="fieldbot-csv-"))
    path = folder / "jobs.csv"
    started = time.perf_counter()
    bad_lines = write_csv(path, args.rows, args.seed)
    good = args.rows - len(bad_lines)
    size = path.stat().st_size
    print(
        f"file: {args.rows:,} rows ({len(bad_lines)} bad), {size / 1e6:.1f} MB, "
        f"written in {time.perf_counter() - started:.1f} s"
    )
    url = asyncio.run(scratch_url(args.database))
    print(f"database: {args.database}")

    kept_before = 0
    if args.kill_after:
        outcome, seconds, _, _ = run_import(path, url, kill_after=args.kill_after)
        kept_before, _, orphans = asyncio.run(database_counts(url))
        state = "killed (SIGKILL)" if outcome["killed"] else "finished before the kill"
        print(
            f"run 1: {state} after {seconds:.1f} s with {kept_before:,} dispatches stored, "
            f"{orphans} without their history line"
        )

    report, seconds, peak_kb, cpu = run_import(path, url)
    created = len(report["created"])
    rss = f"{peak_kb / 1024:.0f} MB" if peak_kb > 0 else "n/a"
    print(
        f"run 2: {created:,} imported, {len(report['skipped']):,} already there, "
        f"{len(report['errors'])} rejected, {len(report['notices'])} formula signs removed, "
        f"in {seconds:.1f} s = {report['rows'] / seconds:,.0f} rows/s read, "
        f"{created / seconds:,.0f} dispatches/s stored; peak RSS of the import {rss}; "
        f"{cpu:.1f} CPU s ({created / cpu:,.0f} dispatches per CPU second)"
    )
    again, seconds3, _, _ = run_import(path, url)
    print(
        f"run 3: {len(again['created'])} imported, {len(again['skipped']):,} already there, "
        f"in {seconds3:.1f} s"
    )

    total, keys, orphans = asyncio.run(database_counts(url))
    if args.database == "postgresql":
        asyncio.run(drop_pg_scratch())
    reported = {e["line"] for e in report["errors"]}
    checks = {
        "one dispatch per good row": total == good,
        "no row imported twice": keys == total,
        "no half-stored row": orphans == 0,
        "every bad row reported at its line": reported == bad_lines,
        "good rows all accounted for": created + len(report["skipped"]) == good
        and len(report["skipped"]) == kept_before,
        "the third run imported nothing": again["created"] == [],
    }
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    print(f"dispatches stored: {total:,} of {good:,} good rows")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
