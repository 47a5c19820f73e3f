"""The database goes away under the running bot and comes back: nothing is lost, no restart.

The worker loop's retry/backoff is tested on its own (always). The outage itself needs
PostgreSQL (FIELDBOT_TEST_DATABASE_URL): the bot runs in-process against the fake Bot API and
a scratch database of its own (not the one in that URL), reached through a TCP proxy
(reliability/outage_proxy.py) that cuts every connection and refuses new ones for a couple of
seconds. The full-size run with figures is ``reliability/db_outage.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from bot.db.engine import make_engine
from bot.db.models import Inbox, Timer
from bot.fakeapi import FakeTelegram
from bot.flows.offers import OFFER_TIMEOUT
from bot.workers import loop
from bot.workers.loop import Worker, persist, retry_delay
from reliability.outage_proxy import DbProxy
from tests.conftest import _PG_BUILT, PG_URL, reset_database
from tests.e2e.conftest import Harness

OUTAGE = 2.5  # seconds


# ---------------------------------------------------------------- the worker loop


class Flaky(Worker):
    """Fails its first ``failures`` rounds, then finds one piece of work, then stops."""

    idle = 0.01

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.left = failures
        self.rounds = 0

    async def run_once(self) -> int:
        self.rounds += 1
        if self.left:
            self.left -= 1
            raise ConnectionRefusedError("database down")
        self.stop()
        return 1


async def test_a_failing_round_is_retried_with_backoff_until_it_works(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    naps: list[float] = []

    async def fake_nap(_: asyncio.Event, seconds: float) -> None:
        naps.append(seconds)

    monkeypatch.setattr(loop, "nap", fake_nap)
    worker = Flaky(failures=6)
    await asyncio.wait_for(worker.run_forever(), 5)
    assert worker.rounds == 7
    assert naps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]  # doubling, capped
    assert worker.failed_rounds == 0
    # one traceback for the streak, one line per further failure, one for the recovery
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert any("recovered after 6 failed rounds" in r.getMessage() for r in caplog.records)


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 10)] == [0.25, 0.5, 1.0, 2.0, 2.0]


async def test_persist_retries_a_write_until_the_database_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_nap(_: asyncio.Event, seconds: float) -> None:
        return None

    monkeypatch.setattr(loop, "nap", no_nap)
    tries: list[int] = []

    async def write() -> str:
        tries.append(1)
        if len(tries) < 4:
            raise ConnectionRefusedError("down")
        return "recorded"

    assert await persist(asyncio.Event(), "recording", write) == "recorded"
    assert len(tries) == 4


async def test_persist_gives_up_only_when_stopping() -> None:
    stopping = asyncio.Event()
    stopping.set()

    async def write() -> None:
        raise ConnectionRefusedError("down")

    with pytest.raises(ConnectionRefusedError):
        await persist(stopping, "recording", write)


# ---------------------------------------------------------------- the outage (PostgreSQL)

pg_only = pytest.mark.skipif(
    not PG_URL.startswith("postgresql"), reason="needs FIELDBOT_TEST_DATABASE_URL (PostgreSQL)"
)


@pytest.fixture
async def scratch_url() -> AsyncIterator[str]:
    """A database of this test's own on the server of FIELDBOT_TEST_DATABASE_URL."""
    url = make_url(PG_URL)
    name = f"{url.database}_outage"
    admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        scratch = url.set(database=name).render_as_string(hide_password=False)
        _PG_BUILT.discard(scratch)  # a new database: build the schema, do not truncate
        await reset_database(scratch)
        yield scratch
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_username="fieldbot_test_bot") as fake:
        yield fake


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replies(tg: FakeTelegram, chat_id: int) -> int:
    state = tg._chats.get(chat_id)
    return len(state.bot_log) if state is not None else 0


async def wait_replies(tg: FakeTelegram, chats: list[int], count: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while any(replies(tg, c) < count for c in chats):
            await tg._wait_change(0.5)  # wakes on every change the fake sees


@pg_only
@pytest.mark.parametrize("mode", ["webhook"])  # polling: reliability/db_outage.py
async def test_the_bot_rides_out_a_database_outage(
    tg: FakeTelegram, make_settings: Any, scratch_url: str, mode: str
) -> None:
    target = make_url(scratch_url)
    proxy = DbProxy(target.port or 5432, target.host or "127.0.0.1")
    await proxy.start()
    harness = Harness(tg, make_settings, "aiogram", scratch_url)
    overrides: dict[str, Any] = {"database_url": proxy.url_for(scratch_url)}
    if mode == "webhook":
        port = free_port()
        overrides |= {
            "http_port": port,
            "webhook_url": f"http://127.0.0.1:{port}",
            "webhook_secret": "outage-secret",
        }
    users = [tg.user(first_name=f"Visitor{i}") for i in range(3)]
    chats = [u.id for u in users]
    try:
        bot = await harness.start(**overrides)
        for user in users:
            await user.send("hello 0")
        await wait_replies(tg, chats, 1, 30)
        now = datetime.now(UTC)
        engine = make_engine(scratch_url)  # direct, not through the proxy
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(Timer),
                    [
                        {
                            "kind": OFFER_TIMEOUT,  # an offer that does not exist: a no-op
                            "subject": f"canary:{n}",
                            "due_at": now + timedelta(seconds=0.5 * n),
                            "payload": {"offer_id": 0},
                            "status": "pending",
                            "attempts": 0,
                            "created_at": now,
                        }
                        for n in range(4)
                    ],
                )

            await proxy.down()
            for round_ in (1, 2):
                for user in users:
                    await user.send(f"hello {round_}")
            await asyncio.sleep(OUTAGE)
            assert all(replies(tg, c) == 1 for c in chats)  # nothing answered meanwhile
            await proxy.up()

            await wait_replies(tg, chats, 3, 30)
            await tg.wait_idle(quiet=0.5, timeout=30)
            assert [replies(tg, c) for c in chats] == [3, 3, 3]  # once each, none twice
            assert all(not task.done() for task in bot.tasks)  # no worker died
            async with engine.connect() as conn:
                rows = await conn.execute(select(Inbox.status, func.count()).group_by(Inbox.status))
                statuses = {str(status): int(n) for status, n in rows}
                done = set(
                    await conn.scalars(select(Inbox.update_id).where(Inbox.status == "done"))
                )
                canaries = (
                    await conn.execute(
                        select(Timer.status, Timer.attempts).where(Timer.subject.like("canary:%"))
                    )
                ).all()
        finally:
            await engine.dispose()
        assert {int(u["update_id"]) for u in tg.updates} <= done  # no update lost
        assert statuses == {"done": len(done)}
        assert sorted(canaries) == [("done", 1)] * 4  # every timer fired, once
        if mode == "webhook":
            refused = [s for _, s in tg.webhook_deliveries if s != 200]
            assert refused  # Telegram was told to retry, and did
    finally:
        await harness.stop()
        await proxy.stop()
