"""One worker process for test_two_workers.py: sweeps one database's timers until none is due.

    python tests/pg/worker.py DATABASE_URL WORKER_NUMBER

Prints "ready" once connected, waits for a line on stdin (so both workers start together),
sweeps, and prints how many timers it took. Each firing inserts (timer number, worker) into
the ``probe_fired`` table in the timer's own transaction.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sqlalchemy import text

from bot.config import load_settings
from bot.core.clock import SystemClock
from bot.db.engine import make_engine, make_sessionmaker
from bot.i18n import Renderer
from bot.scheduler.registry import register
from bot.scheduler.sweep import sweep
from bot.services.context import Services
from bot.services.uow import UnitOfWork

KIND = "probe_fired"


async def main(url: str, worker: int) -> None:
    async def fired(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await uow.session.execute(
            text("INSERT INTO probe_fired (timer_n, worker) VALUES (:n, :w)"),
            {"n": int(payload["n"]), "w": worker},
        )

    register(KIND, fired)
    settings = load_settings(database_url=url, quiet_hours="off")
    services = Services(  # no runtime: the worker only sweeps (and starts fast)
        settings=settings,
        clock=SystemClock(),
        renderer=Renderer(),
        sessionmaker=make_sessionmaker(make_engine(settings.database_url)),
    )
    async with services.uow() as uow:
        await uow.session.execute(text("SELECT 1"))
    print("ready", flush=True)
    sys.stdin.readline()
    total = 0
    while taken := await sweep(services):
        total += taken
    print(total, flush=True)
    await services.sessionmaker.kw["bind"].dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
