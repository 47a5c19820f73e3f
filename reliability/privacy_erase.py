"""How long `fieldbot customer erase` takes as the database grows (prints figures; not a test).

One customer with 5 jobs among N other jobs, with 20 outbox and 10 inbox rows per job (other
chats, texts naming other job numbers); times identify + erase (the sweep reads every text
column of every table). SQLite file in a temp folder.

    uv run python reliability/privacy_erase.py 1000 10000
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bot.bootstrap import build_services, prepare_database
from bot.config import load_settings
from bot.db.models import Customer, Dispatch, Inbox, Outbox, Site
from bot.services import privacy


async def one(jobs: int, tmp: Path) -> None:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp}/t{jobs}.db")
    services = build_services(settings)
    engine = services.sessionmaker.kw["bind"]
    await prepare_database(engine)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(insert(Customer), [{"id": 1, "name": "Acme", "created_at": now}])
        await conn.execute(insert(Site), [{"id": 1, "customer_id": 1, "address": "1 Road"}])
        rows = []
        for i in range(1, jobs + 1):
            mine = i <= 5
            rows.append(
                {
                    "id": i,
                    "number": f"FB{i:06d}",
                    "customer_id": 1,
                    "site_id": 1,
                    "contact_name": "Li Na" if mine else f"Person {i}",
                    "contact_phone": "+8613800138000" if mine else f"+86139{i:08d}",
                    "equipment_model": "CH",
                    "quantity": 1,
                    "serials": [],
                    "service_type": "repair",
                    "window_start": now,
                    "window_end": now + timedelta(hours=3),
                    "status": "closed",
                    "source": "api",
                    "arrival": {},
                    "report": {"final": {}},
                    "created_at": now,
                }
            )
        await conn.execute(insert(Dispatch), rows)
        out, inbox = [], []
        for i in range(1, jobs + 1):
            for k in range(20):
                out.append(
                    {
                        "chat_id": 100 + k,
                        "method": "sendMessage",
                        "status": "sent",
                        "payload": {"chat_id": 100 + k, "text": f"Job FB{i:06d}: Person {i}, call"},
                        "priority": 5,
                        "attempts": 1,
                        "not_before": now,
                        "created_at": now,
                    }
                )
            for k in range(10):
                inbox.append(
                    {
                        "update_id": i * 100 + k,
                        "chat_id": 100 + k,
                        "status": "done",
                        "payload": {"update_id": i * 100 + k, "message": {"text": f"FB{i:06d} ok"}},
                        "attempts": 1,
                        "received_at": now,
                    }
                )
        for start in range(0, len(out), 5000):
            await conn.execute(insert(Outbox), out[start : start + 5000])
        for start in range(0, len(inbox), 5000):
            await conn.execute(insert(Inbox), inbox[start : start + 5000])
    started = time.perf_counter()
    async with services.uow() as uow:
        subject = await privacy.identify(uow, "13800138000")
        done = await privacy.erase(uow, subject)
        await uow.commit()
    took = time.perf_counter() - started
    print(
        f"jobs={jobs} outbox={20 * jobs} inbox={10 * jobs}: erase {took:.2f} s, "
        f"{sum(done.counts.values())} changes"
    )
    await engine.dispose()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in [int(a) for a in sys.argv[1:]] or [1000, 10000]:
            await one(jobs, Path(tmp))


asyncio.run(main())
