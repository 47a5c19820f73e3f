"""Senders in several processes share Telegram's overall limit: each takes its part."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from bot.db.models import LiveSender
from bot.services.context import Services
from bot.workers import limit_share
from bot.workers.limit_share import LimitShare
from bot.workers.sender import GLOBAL_MARGIN, OutboxSender


class _Quiet:
    """A runtime with nothing to send (the outbox stays empty)."""

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        raise AssertionError("nothing should be sent")


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds (the heartbeat is made 20 ms long here): a look every
    10 ms while the senders run their rounds, for at most 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the senders did not get there")


def _running(sender: OutboxSender) -> asyncio.Task[None]:
    return asyncio.create_task(sender.run_forever())


async def _names(services: Services) -> list[str]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(LiveSender.name).order_by(LiveSender.name)))


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limit_share, "HEARTBEAT", 0.02)


async def test_two_senders_each_take_half_and_one_that_stops_gives_its_half_back(
    services: Services,
) -> None:
    limit = services.settings.send_global_rate * GLOBAL_MARGIN
    first, second = OutboxSender(services, _Quiet()), OutboxSender(services, _Quiet())  # type: ignore[arg-type]
    for sender in (first, second):
        sender.idle = 0.01
    a = _running(first)
    await _until(lambda: first.share.next_beat > 0)
    assert first.share.senders == 1 and first.global_bucket.rate == pytest.approx(limit)
    assert first.share.hold_until == 0.0  # alone: sends at once

    b = _running(second)
    await _until(lambda: second.share.senders == 2 and first.share.senders == 2)
    assert second.share.hold_until > 0  # a newcomer waits until the others have counted it
    for sender in (first, second):
        assert sender.global_bucket.rate == pytest.approx(limit / 2)
    assert await _names(services) == sorted([first.share.name, second.share.name])
    # and the chats: each its own part, by its place among the names; the first also keeps
    # the part it had (every chat) for a while, so that none waits for the newcomer
    assert sorted([first.share.part, second.share.part]) == [0, 1]
    assert first.share.before == (1, 0)
    assert [first.share.name, second.share.name][first.share.part == 1] == min(
        first.share.name, second.share.name
    )

    second.stop()
    await b
    assert await _names(services) == [first.share.name]  # a graceful stop leaves at once
    await _until(lambda: first.share.senders == 1)
    assert first.global_bucket.rate == pytest.approx(limit) and first.share.part == 0
    first.stop()
    await a
    assert await _names(services) == []


async def test_a_sender_not_seen_for_a_while_is_gone(services: Services, clock: Any) -> None:
    now = clock.now()
    async with services.uow() as uow:  # a process that crashed without leaving
        await uow.session.execute(
            insert(LiveSender).values(
                name="crashed", seen_at=now - limit_share.ALIVE - timedelta(seconds=1)
            )
        )
        await uow.session.execute(insert(LiveSender).values(name="running", seen_at=now))
        await uow.commit()
    sender = OutboxSender(services, _Quiet())  # type: ignore[arg-type]
    sender.idle = 0.01
    task = _running(sender)
    await _until(lambda: sender.share.next_beat > 0)
    assert sender.share.senders == 2  # itself and "running", not "crashed"
    sender.stop()
    await task


async def test_a_sender_driven_round_by_round_keeps_the_whole_limit(services: Services) -> None:
    """Tests and tools that call ``run_once`` themselves do not take part in the sharing."""
    sender = OutboxSender(services, _Quiet())  # type: ignore[arg-type]
    await sender.run_once()
    assert await _names(services) == [] and sender.share.senders == 1


async def test_a_restart_does_not_wait_for_this_hosts_dead_senders_to_go_stale(
    services: Services, clock: Any
) -> None:
    """Killed or crashed on this host (or this process's earlier life, restarted in a
    container under the same pid): forgotten at once. Elsewhere, or alive: counted."""
    host = socket.gethostname()[:50]
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()  # its pid: a process of this host that is no more
    rows = {
        f"{host}:{gone.pid}:dead": False,
        f"{host}:{os.getpid()}:earlier": False,
        f"{host}:{os.getppid()}:alive": True,
        "elsewhere:1:unknown": True,
    }
    async with services.uow() as uow:
        for name in rows:
            await uow.session.execute(insert(LiveSender).values(name=name, seen_at=clock.now()))
        await uow.commit()
    sender = OutboxSender(services, _Quiet())  # type: ignore[arg-type]
    sender.idle = 0.01
    task = _running(sender)
    await _until(lambda: sender.share.next_beat > 0)
    sender.stop()
    await task
    assert sender.share.senders == 3
    assert await _names(services) == sorted(name for name, alive in rows.items() if alive)


def test_for_a_while_after_the_senders_change_a_sender_also_serves_its_old_part() -> None:
    share = LimitShare()
    share.senders, share.part = 2, 1
    share.before, share.before_until = (1, 0), time.monotonic() + 60
    assert share.chats() == {"parts": 2, "part": 1, "parts_before": 1, "part_before": 0}
    share.before_until = time.monotonic() - 1
    assert share.chats() == {"parts": 2, "part": 1, "parts_before": 2, "part_before": 1}
