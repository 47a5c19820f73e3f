"""Telegram misbehaves under the running bot: 429 with retry_after, 500/502, calls that hang
and then lose their connection, connections dropped at once — on replies, button answers and
queued notifications alike. Nothing is lost or sent twice, each chat keeps its order, and no
chat is called again before its retry_after has run out.

tests/e2e/test_sender.py drives the sender alone with one method and one or two fault kinds;
here the whole bot runs (polling, inbox, handlers, outbox, sender) with every kind mixed. The
load-sized run with figures (10 % of calls, engineers walking jobs) is
``reliability/telegram_faults.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.core.messages import Msg
from bot.db.models import Outbox
from bot.fakeapi import FakeTelegram, FaultPlan
from bot.fakeapi.models import DEFAULT_FAULT_KINDS
from tests.conftest import reset_database
from tests.e2e.conftest import Harness

QUEUED = 5  # numbered notifications per chat


@pytest.fixture(params=["aiogram", "ptb"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_username="fieldbot_test_bot") as fake:
        yield fake


def texts(tg: FakeTelegram, chat_id: int) -> list[str]:
    state = tg._chats.get(chat_id)
    return [str(r.current.get("text") or "") for r in state.bot_log] if state else []


def numbers(tg: FakeTelegram, chat_id: int) -> list[int]:
    return [
        int(t.split("at most ")[1].split(" ")[0]) for t in texts(tg, chat_id) if "at most " in t
    ]


async def settle(tg: FakeTelegram, done: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the bot did not deliver everything in time")
        await tg._wait_change(0.5)  # wakes on every change the fake sees


async def test_every_fault_kind_loses_nothing_and_keeps_each_chats_order(
    tg: FakeTelegram, make_settings: Any, db_url: str, runtime: str
) -> None:
    await reset_database(db_url)
    harness = Harness(tg, make_settings, runtime, db_url)
    bot = await harness.start()
    users = [tg.user(first_name=f"U{i}") for i in range(2)]
    try:
        for user in users:
            await user.send("hello")  # a stranger: one welcome each
        await settle(tg, lambda: all(len(texts(tg, u.id)) == 1 for u in users))

        # A quarter of the bot's calls fail (the seed's first draws hold every kind); a
        # hanging call holds its request half a second, then drops the connection unanswered.
        tg.faults = FaultPlan(
            rate=0.25,
            seed=42,
            timeout_delay=0.5,
            methods={"sendMessage", "answerCallbackQuery", "editMessageText"},
        )
        async with bot.services.uow() as uow:
            for i in range(QUEUED):
                for user in users:
                    await uow.out.send(Msg("err_too_long", {"limit": i}, chat_id=user.id))
            await uow.commit()
        for user in users:
            await user.press_data("zz:1")  # a stale button: answered with an alert
            await user.send("hello again")  # and a reply through the inbox

        await settle(
            tg,
            lambda: (
                all(len(texts(tg, u.id)) == QUEUED + 2 for u in users)
                and len(tg.answered_callbacks) == len(users)
            ),
        )
        await tg.wait_idle(quiet=0.5, timeout=30)
    finally:
        await harness.stop()

    for user in users:
        assert numbers(tg, user.id) == list(range(QUEUED))  # none lost, none twice, in order
        assert len(texts(tg, user.id)) == QUEUED + 2
    assert len(tg.answered_callbacks) == len(users)
    assert tg.early_calls == []  # no chat called again before its retry_after ran out
    assert {f.kind for f in tg.injected_faults} == set(DEFAULT_FAULT_KINDS)
    async with bot.services.uow() as uow:
        statuses = dict(
            (str(s), int(n))
            for s, n in await uow.session.execute(
                select(Outbox.status, func.count()).group_by(Outbox.status)
            )
        )
    assert set(statuses) == {"sent"}


async def test_the_fake_records_calls_made_inside_a_retry_after(tg: FakeTelegram) -> None:
    alice, bob = tg.user(first_name="Alice"), tg.user(first_name="Bob")
    await alice.send("/start")
    await bob.send("/start")
    tg.faults = FaultPlan(rate=1.0, kinds=("429",), retry_after=5, max_faults=1)
    async with aiohttp.ClientSession() as http:

        async def send(chat_id: int, method: str = "sendMessage") -> int:
            params: dict[str, Any] = {"chat_id": chat_id, "text": "hi"}
            if method == "sendChatAction":
                params = {"chat_id": chat_id, "action": "typing"}
            async with http.post(f"{tg.api_url}/{method}", json=params) as resp:
                return resp.status

        assert await send(alice.id) == 429  # retry after 5 s, for Alice's chat
        assert await send(bob.id) == 200  # another chat is free
        assert await send(alice.id, "sendChatAction") == 200  # not rate-limited, but early
        assert await send(alice.id) == 429  # refused again, and early
    assert [(m, c) for m, c, _ in tg.early_calls] == [
        ("sendChatAction", alice.id),
        ("sendMessage", alice.id),
    ]
    assert all(0 < early <= 5 for _, _, early in tg.early_calls)
