"""The outbox sender against the fake Bot API: Telegram's limits, 429 retry_after, faults, order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from bot.bootstrap import build_services, make_runtime
from bot.core.clock import SystemClock
from bot.core.enums import Priority
from bot.core.messages import Msg
from bot.db.models import Outbox
from bot.fakeapi import FakeTelegram, FaultPlan, RateLimits
from bot.flows import delivery
from bot.workers.sender import OutboxSender
from tests.conftest import reset_database
from tests.helpers import onboard


async def drain(sender: OutboxSender, services, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await sender.run_once()
        await sender.settle()
        async with services.uow() as uow:
            pending = await uow.session.scalar(
                select(Outbox.id).where(Outbox.status == "pending").limit(1)
            )
        if pending is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("outbox not drained")


async def make(tg: FakeTelegram, make_settings, db_url: str, runtime: str, **overrides: Any):
    await reset_database(db_url)
    settings = make_settings(
        bot_token=tg.token, telegram_api_url=tg.url, bot_runtime=runtime, **overrides
    )
    services = build_services(settings, clock=SystemClock())
    rt = make_runtime(settings, services)
    await rt.start()
    return services, rt


async def queue(services, chats: list[int], count: int, priority: int = Priority.NORMAL) -> None:
    async with services.uow() as uow:
        for i in range(count):
            for chat in chats:
                await uow.out.send(
                    Msg("err_too_long", {"limit": i}, chat_id=chat, priority=priority)
                )
        await uow.commit()


def numbers(tg: FakeTelegram, chat: int) -> list[int]:
    return [int(m["text"].split("at most ")[1].split(" ")[0]) for m in tg.messages(chat)]


async def test_429_is_honoured_and_nothing_is_lost_or_reordered(
    tg, make_settings, db_url, runtime
) -> None:
    services, rt = await make(tg, make_settings, db_url, runtime)
    users = [tg.user(first_name=f"U{i}") for i in range(3)]
    for u in users:
        await u.send("hi")  # the fake only delivers to chats that started the bot
    tg.faults = FaultPlan(
        rate=0.3, kinds=("429",), retry_after=1, seed=7, methods={"sendMessage"}, max_faults=4
    )
    await queue(services, [u.id for u in users], 5)
    sender = OutboxSender(services, rt)
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    assert tg.faults.injected == 4
    assert tg.retry_after_violations == 0
    for u in users:
        assert numbers(tg, u.id) == [0, 1, 2, 3, 4]


async def test_server_errors_timeouts_and_drops_are_retried(
    tg, make_settings, db_url, runtime
) -> None:
    services, rt = await make(tg, make_settings, db_url, runtime)
    users = [tg.user(first_name=f"U{i}") for i in range(2)]
    for u in users:
        await u.send("hi")
    tg.faults = FaultPlan(
        rate=0.3, kinds=("500", "502", "drop"), seed=3, methods={"sendMessage"}, max_faults=3
    )
    await queue(services, [u.id for u in users], 4)
    sender = OutboxSender(services, rt)
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    assert tg.faults.injected == 3
    for u in users:
        assert numbers(tg, u.id) == [0, 1, 2, 3]


async def test_flood_limits_are_kept(tg, make_settings, db_url, runtime) -> None:
    services, rt = await make(
        tg, make_settings, db_url, runtime, send_chat_rate=1, send_chat_burst=1, send_global_rate=30
    )
    tg.limits = RateLimits(global_per_second=30, per_chat_per_second=1)
    u = tg.user(first_name="U")
    await u.send("hi")
    await queue(services, [u.id], 3)
    sender = OutboxSender(services, rt)
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    assert tg.rate_limited == []
    assert numbers(tg, u.id) == [0, 1, 2]


async def test_urgent_messages_go_first(tg, make_settings, db_url, runtime) -> None:
    services, rt = await make(tg, make_settings, db_url, runtime)
    bulk = [tg.user(first_name=f"B{i}") for i in range(4)]
    boss = tg.user(first_name="Boss")
    for u in [*bulk, boss]:
        await u.send("hi")
    await queue(services, [u.id for u in bulk], 1, priority=Priority.BULK)
    await queue(services, [boss.id], 1, priority=Priority.URGENT)
    sender = OutboxSender(services, rt, batch=1)
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    sends = [params["chat_id"] for method, params in tg.calls if method == "sendMessage"]
    assert int(sends[0]) == boss.id


async def test_a_blocked_user_is_recorded_and_the_supervisor_told(
    tg, make_settings, db_url, runtime
) -> None:
    services, rt = await make(tg, make_settings, db_url, runtime)
    await tg.user(user_id=5001, first_name="Boss").send("hi")
    await onboard(services, 5001, role="supervisor", name="Boss", skills=())
    user = tg.user(user_id=5002, first_name="Gone")
    await user.send("hi")
    await onboard(services, 5002, role="engineer", name="Zhao Gone")
    await drain(OutboxSender(services, rt), services)  # the welcomes
    await user.block()
    await queue(services, [user.id], 3)  # three messages fail: one alert
    sender = OutboxSender(services, rt, on_permanent_failure=delivery.unreachable)
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    async with services.uow() as uow:
        rows = list(
            await uow.session.scalars(
                select(Outbox).where(Outbox.chat_id == user.id, Outbox.status == "failed")
            )
        )
    assert len(rows) == 3 and all("blocked" in (r.error or "") for r in rows)
    alerts = [m["text"] for m in tg.messages(5001) if "cannot be delivered" in m["text"]]
    assert alerts == [
        "⚠️ Messages to Zhao Gone (service engineer) cannot be delivered: they may have blocked the bot."
    ]
    assert sender.unreachable == {}  # told and forgotten


async def test_the_alert_is_written_with_the_failure_it_reports(
    tg, make_settings, db_url, runtime, caplog
) -> None:
    """The failure and the alert are one transaction: the alert sees the failure recorded in
    its own transaction; an alert that raises is logged and undone, and the failure is
    recorded all the same (no alert task left to run, or to be lost, later)."""
    services, rt = await make(tg, make_settings, db_url, runtime)
    told: list[tuple[list[int], int]] = []

    async def tell(uow, chats: list[int]) -> None:
        failed = await uow.session.scalar(select(func.count()).where(Outbox.status == "failed"))
        told.append((chats, int(failed or 0)))
        await uow.out.send(Msg("err_too_long", {"limit": 1}, chat_id=4242))
        raise RuntimeError("the alert breaks")

    user = tg.user(first_name="Gone")
    await user.send("hi")
    await user.block()
    await queue(services, [user.id], 1)
    sender = OutboxSender(services, rt, on_permanent_failure=tell)
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    assert told == [([user.id], 1)]
    async with services.uow() as uow:
        rows = list(await uow.session.scalars(select(Outbox).order_by(Outbox.id)))
    assert [(r.chat_id, r.status) for r in rows] == [(user.id, "failed")]  # alert undone
    assert "could not tell anyone that 1 chat(s) are out of reach (RuntimeError)" in caplog.text


async def test_an_edit_of_a_message_gone_from_the_chat_alerts_nobody(
    tg, make_settings, db_url, runtime
) -> None:
    """The user deleted the message (or it is too old to delete): that one call failed, the
    chat is still reachable, so no supervisor is told it is not."""
    services, rt = await make(tg, make_settings, db_url, runtime)
    failures: list[int] = []

    async def record(_uow: Any, chats: list[int]) -> None:
        failures.extend(chats)

    sender = OutboxSender(services, rt, on_permanent_failure=record)
    user = tg.user(first_name="Here")
    await user.send("hi")
    async with services.uow() as uow:
        gone = {"chat_id": user.id, "message_id": 999_999}
        uow.out.queue(user.id, "editMessageText", {**gone, "text": "changed"})
        uow.out.queue(user.id, "deleteMessage", gone)
        await uow.commit()
    try:
        await drain(sender, services)
    finally:
        await rt.stop()
    async with services.uow() as uow:
        rows = list(await uow.session.scalars(select(Outbox).where(Outbox.chat_id == user.id)))
    assert [(r.method, r.status) for r in rows] == [
        ("editMessageText", "failed"),
        ("deleteMessage", "failed"),
    ]
    assert "not found" in (rows[0].error or "") and "not found" in (rows[1].error or "")
    assert failures == []


async def test_two_senders_share_the_overall_limit(tg, make_settings, db_url, runtime) -> None:
    """Two worker processes' senders on one outbox (as in scale-out): together they keep
    Telegram's overall limit (here 10 a second) from the moment they start, and each chat's
    (1 a second: a chat's messages go through one of them) once both have settled, with
    nothing lost, sent twice or out of order."""
    services, rt = await make(
        tg, make_settings, db_url, runtime, send_global_rate=10, send_chat_rate=1, send_chat_burst=1
    )
    tg.limits = RateLimits(global_per_second=10, per_chat_per_second=1)
    users = [tg.user(first_name=f"U{i}") for i in range(30)]
    for u in users:
        await u.send("hi")
    senders = [OutboxSender(services, rt), OutboxSender(services, rt)]

    async def delivered(count: int) -> None:
        deadline = time.monotonic() + 30
        while sum(len(tg.messages(u.id)) for u in users) < count:
            assert time.monotonic() < deadline, "not delivered in time"
            await tg._wait_change(0.5)  # wakes on every change the fake sees

    await queue(services, [u.id for u in users], 1)  # waiting when both start
    tasks = [asyncio.create_task(s.run_forever()) for s in senders]
    try:
        await delivered(len(users))
        assert tg.rate_limited == []  # the start: the newcomer waited until counted
        settled = max(max(s.share.hold_until, s.share.before_until) for s in senders)
        await asyncio.sleep(max(0.0, settled - time.monotonic()))
        few = users[:3]
        await queue(services, [u.id for u in few], 7)  # 7 more to each of 3 chats
        for s in senders:
            s.wake.set()
        await delivered(len(users) + 7 * len(few))
    finally:
        for s in senders:
            s.stop()
        await asyncio.gather(*tasks)
        await rt.stop()
    assert tg.rate_limited == []  # each chat paced by the one sender of its part
    assert all(numbers(tg, u.id) == [0, *range(7)] for u in few)  # in order
    assert all(numbers(tg, u.id) == [0] for u in users[3:])
    assert all(s.share.senders == 2 for s in senders)
