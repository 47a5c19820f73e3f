"""End-to-end: the real runtime over real HTTP against the local fake Bot API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.bootstrap import FieldBot
from bot.fakeapi import FakeTelegram
from tests.conftest import reset_database

RUNTIMES = ["aiogram", "ptb"]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_username="fieldbot_test_bot") as fake:
        yield fake


class ShiftedClock:
    """Real time plus an offset a test can move forward (to jump to a window's end)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def shift(self, delta: timedelta) -> None:
        self.offset += delta


class Harness:
    """Starts (and restarts) the bot process against ``tg`` with shrinkable deadlines."""

    def __init__(
        self, tg: FakeTelegram, make_settings: Callable[..., Any], runtime: str, db_url: str
    ) -> None:
        self.tg = tg
        self.make_settings = make_settings
        self.runtime = runtime
        self.db_url = db_url
        self.bot: FieldBot | None = None
        self.overrides: dict[str, Any] = {}
        self.clock = ShiftedClock()

    def settings(self, **overrides: Any) -> Any:
        base: dict[str, Any] = {
            "bot_token": self.tg.token,
            "telegram_api_url": self.tg.url,
            "bot_runtime": self.runtime,
            "http_port": 0,
            "scheduler_interval": "200ms",
        }
        return self.make_settings(**{**base, **self.overrides, **overrides})

    async def start(self, **overrides: Any) -> FieldBot:
        self.overrides.update(overrides)
        self.bot = FieldBot(self.settings(), clock=self.clock)
        await self.bot.start()
        return self.bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None

    async def restart(self) -> FieldBot:
        await self.stop()
        return await self.start()

    def api(self) -> httpx.AsyncClient:
        assert self.bot is not None
        return httpx.AsyncClient(
            base_url=self.bot.http_url, headers={"Authorization": "Bearer test-api-token"}
        )

    @asynccontextmanager
    async def running(self, **overrides: Any) -> AsyncIterator[FieldBot]:
        bot = await self.start(**overrides)
        try:
            yield bot
        finally:
            await self.stop()


@pytest.fixture
async def harness(
    tg: FakeTelegram, make_settings, runtime: str, db_url: str
) -> AsyncIterator[Harness]:
    await reset_database(db_url)
    h = Harness(tg, make_settings, runtime, db_url)
    yield h
    await h.stop()
