"""End-to-end: the real runtime over real HTTP against the local fake Bot API server."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.bootstrap import FieldBot
from bot.fakeapi import FakeTelegram
from bot.logs import NOISY, SQL, make_handler, set_levels
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


# ---- issue 8 item 11: no phone number, address, token or secret in any log line ---------------

# Personal data the e2e tests and tests/helpers.py put into the bot (customers' and staff
# phones, addresses, contact names) and the fixed secrets of tests/conftest.py and the tests.
KNOWN_PHONES = (
    "+8613800138000",
    "+8613900001111",
    "+8613911112222",
    "+8613900139000",
)
KNOWN_TEXTS = (
    "Century Avenue",
    "Li Na",
    "test-api-token",
    "s3cret-token",
    "123456789:AAEhBOweik9ai0Qa-test-token-xxxxxxxx",
)
# Phone-shaped text: E.164 (``+`` and 7–15 digits, maybe grouped) and mainland mobiles.
PHONE_LIKE = re.compile(r"\+\d[\d \-]{6,16}\d|(?<!\d)(?:86)?1[3-9]\d{9}(?!\d)")


def phone_forms(phone: str) -> set[str]:
    """A phone number as it may be written: E.164, digits only, national, grouped."""
    digits = re.sub(r"\D", "", phone)
    forms = {phone, digits, "+" + digits}
    if digits.startswith("86") and len(digits) == 13:
        national = digits[2:]
        forms |= {national, f"{national[:3]} {national[3:7]} {national[7:]}"}
        forms.add(f"+86 {national[:3]} {national[3:7]} {national[7:]}")
    return {f for f in forms if len(re.sub(r"\D", "", f)) >= 7}


def secrets_of(request: pytest.FixtureRequest) -> set[str]:
    """Every value that must never be logged, for the fixtures this test used."""
    found: set[str] = set(KNOWN_TEXTS)
    phones = set(KNOWN_PHONES)
    args = request.node.funcargs
    tg = args.get("tg")
    harness = args.get("harness")
    if isinstance(harness, Harness):
        tg = tg or harness.tg
        settings = harness.settings()
        found |= {settings.bot_token, settings.api_token, settings.webhook_secret}
    if isinstance(tg, FakeTelegram):
        found.add(tg.token)
        phones |= {u.phone_number for u in tg._users.values() if u.phone_number}
    for phone in phones:
        found |= phone_forms(phone)
    return {s for s in found if s}


@pytest.fixture(autouse=True)
def no_secrets_in_logs(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Every log record of the test at LOG_LEVEL=DEBUG, through production's handler and
    levels (bot/logs.py: format, tracebacks, redaction; SQL held at WARNING whatever
    LOG_LEVEL says), with the framework loggers opened to INFO as well (their DEBUG lines are
    whole request bodies, message texts included: production keeps them at WARNING); at
    teardown the test fails if a line holds a phone number, address, token or secret."""
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("", *NOISY, *SQL, "apscheduler")}
    stream = io.StringIO()
    handler = make_handler(stream)
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    set_levels("DEBUG")  # LOG_LEVEL=DEBUG: the most production writes
    for name in NOISY:  # and the framework loggers opened to INFO (request URLs carry the token)
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    known = secrets_of(request)
    leaks = []
    for line in stream.getvalue().splitlines():
        hits = sorted(s for s in known if s in line) + PHONE_LIKE.findall(line)
        if hits:
            leaks.append(f"{hits}: {line[:300]}")
    if leaks:
        pytest.fail(
            f"{len(leaks)} log line(s) leak personal data or secrets:\n" + "\n".join(leaks[:20])
        )
