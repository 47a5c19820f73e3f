"""Two worker processes sweep one database: every due timer fires exactly once.

PostgreSQL (10,000 timers): runs only when FIELDBOT_TEST_DATABASE_URL points at PostgreSQL.
SQLite (600 timers, two processes on one file, taking turns on its write lock): always.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from bot.db.engine import make_engine
from bot.db.models import Timer
from tests.conftest import PG_URL, reset_database

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")


async def seed(url: str, count: int) -> None:
    await reset_database(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE probe_fired (timer_n INTEGER NOT NULL, worker INTEGER NOT NULL)")
            )
            now = datetime.now(UTC)
            rows = [
                {
                    "kind": "probe_fired",
                    "subject": f"probe:{n}",
                    "due_at": now - timedelta(seconds=n % 60),
                    "payload": {"n": n},
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                }
                for n in range(count)
            ]
            for start in range(0, count, 2000):
                await conn.execute(insert(Timer), rows[start : start + 2000])
    finally:
        await engine.dispose()


def start_workers(url: str, n: int) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(1, n + 1)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:  # both start sweeping together
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return workers


async def run_two_workers(url: str, count: int) -> list[int]:
    await seed(url, count)
    workers = start_workers(url, 2)
    taken = []
    for worker in workers:
        out, _ = await asyncio.to_thread(worker.communicate, timeout=120)
        assert worker.returncode == 0
        taken.append(int(out.strip().splitlines()[-1]))

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            fired, distinct = (
                await conn.execute(
                    text("SELECT COUNT(*), COUNT(DISTINCT timer_n) FROM probe_fired")
                )
            ).one()
            per_worker = dict(
                (
                    await conn.execute(
                        text("SELECT worker, COUNT(*) FROM probe_fired GROUP BY worker")
                    )
                ).all()
            )
            statuses = dict(
                (
                    await conn.execute(select(Timer.status, func.count()).group_by(Timer.status))
                ).all()
            )
    finally:
        await engine.dispose()
    assert (fired, distinct) == (count, count)  # every timer once, none twice
    assert statuses == {"done": count}
    assert sum(taken) == count
    assert per_worker == {i + 1: n for i, n in enumerate(taken) if n}
    return taken


@pytest.mark.skipif(
    not PG_URL.startswith("postgresql"), reason="needs FIELDBOT_TEST_DATABASE_URL (PostgreSQL)"
)
async def test_two_workers_on_postgresql_fire_10000_timers_once_each(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    taken = await run_two_workers(PG_URL, 10_000)
    assert taken[0] > 0 and taken[1] > 0  # SKIP LOCKED: both workers fired side by side


async def test_two_worker_processes_on_one_sqlite_file_fire_each_timer_once(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    await run_two_workers(f"sqlite+aiosqlite:///{tmp_path}/two.db", 600)
