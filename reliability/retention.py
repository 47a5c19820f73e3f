"""How long the daily pruning takes, and how long it holds the bot up (prints figures; not a test).

A backlog of U old handled updates and M old sent messages (a tenth of them job cards under
a ref, re-sent once: the newer copy is kept and emptied, the older deleted), as after a first
upgrade; prunes it with the retention job while a probe task measures how late the event loop
gets (on SQLite the bot's updates wait for as long as a batch holds the write lock).

    uv run python reliability/retention.py 100000 200000
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from bot.bootstrap import build_services, prepare_database
from bot.config import load_settings
from bot.core.clock import FakeClock
from bot.db.models import Inbox, Outbox
from bot.services import retention


async def _seed(engine: object, updates: int, messages: int, at: datetime) -> None:
    text = "Job FB000123: call Li Na on +86 138 0013 8000, 1 Road, Chaoyang. " * 4
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        for start in range(0, updates, 10_000):
            await conn.execute(
                insert(Inbox),
                [
                    {
                        "update_id": n,
                        "chat_id": n % 500,
                        "payload": {"update_id": n, "message": {"text": text}},
                        "status": "done",
                        "attempts": 1,
                        "received_at": at,
                        "done_at": at,
                    }
                    for n in range(start + 1, min(start + 10_000, updates) + 1)
                ],
            )
        for start in range(0, messages, 10_000):
            await conn.execute(
                insert(Outbox),
                [
                    {
                        "chat_id": n % 500,
                        "method": "sendMessage",
                        "payload": {"chat_id": n % 500, "text": text},
                        "priority": 5,
                        "status": "sent",
                        "attempts": 1,
                        "not_before": at,
                        "created_at": at,
                        "sent_at": at,
                        "message_id": n,
                        # rows n and n + 500: one chat, one ref (a card re-sent)
                        "ref": f"job:{n % 500}-{n // 1000}" if n % 10 == 0 else None,
                    }
                    for n in range(start + 1, min(start + 10_000, messages) + 1)
                ],
            )


async def main(updates: int, messages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp)}/retention.db"
        now = datetime(2026, 11, 30, 3, 15, tzinfo=UTC)
        services = build_services(load_settings(database_url=url), clock=FakeClock(now))
        engine = services.sessionmaker.kw["bind"]
        await prepare_database(engine)
        await _seed(engine, updates, messages, now - timedelta(days=60))
        late: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:  # how late a 10 ms sleep wakes: what an update waits
            while not stop.is_set():
                asked = time.perf_counter()
                await asyncio.sleep(0.01)
                late.append(time.perf_counter() - asked - 0.01)

        probing = asyncio.create_task(probe())
        started = time.perf_counter()
        pruned = await retention.prune(services)
        took = time.perf_counter() - started
        stop.set()
        await probing
        async with services.uow() as uow:
            left_in = await uow.session.scalar(select(func.count()).select_from(Inbox))
            left_out = await uow.session.scalar(select(func.count()).select_from(Outbox))
        await engine.dispose()
    late.sort()
    print(f"backlog: {updates:,} updates, {messages:,} messages (60 days old), SQLite")
    print(
        f"pruned: {pruned.updates:,} updates and {pruned.messages:,} messages deleted, "
        f"{pruned.emptied:,} emptied; left {left_in:,} inbox and {left_out:,} outbox rows"
    )
    print(f"time: {took:.1f} s, {(pruned.updates + pruned.messages) / took:,.0f} rows/s")
    print(
        f"event loop late by: p50 {1000 * late[len(late) // 2]:.0f} ms, "
        f"p99 {1000 * late[int(len(late) * 0.99)]:.0f} ms, max {1000 * late[-1]:.0f} ms"
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]] or [100_000, 200_000]
    asyncio.run(main(args[0], args[1] if len(args) > 1 else 2 * args[0]))
