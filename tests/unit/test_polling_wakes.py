"""Who wakes the inbox processor: the poller once it has stored updates, not every commit;
and when the processor claims: only when something may be claimable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.bootstrap import FieldBot
from bot.db.models import Inbox
from bot.services.context import Services
from bot.workers import processor as processor_module
from bot.workers.polling import Poller
from bot.workers.processor import InboxProcessor


class _OneBatch:
    """A runtime whose getUpdates returns one batch, then nothing."""

    def __init__(self, updates: list[dict[str, Any]]) -> None:
        self.updates = updates

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        batch, self.updates = self.updates, []
        return batch


async def test_the_poller_wakes_the_processor_after_the_updates_are_committed(services) -> None:
    stored_when_woken: list[int] = []

    async def count() -> int:
        async with services.uow() as uow:
            return int(await uow.session.scalar(select(func.count()).select_from(Inbox)) or 0)

    woken: list[str] = []
    poller = Poller(
        services,
        _OneBatch([{"update_id": 5, "message": {"chat": {"id": 9}, "text": "hi"}}]),  # type: ignore[arg-type]
        on_stored=lambda chats: woken.append(f"processor {chats}"),
    )
    assert await poller.run_once() == 1
    stored_when_woken.append(await count())
    assert woken == ["processor [9]"]
    assert stored_when_woken == [1]
    assert await poller.run_once() == 0  # nothing new: nobody woken
    assert woken == ["processor [9]"]


def test_a_handlers_commit_wakes_the_sender_only(make_settings) -> None:
    bot = FieldBot(make_settings(), serve_http=False)
    assert bot.services.after_commit == [bot.sender.wake.set]
    assert bot.poller.on_stored == bot.processor.stored


def _update(update_id: int, chat: int) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"chat": {"id": chat}, "text": "hi"}}


class _Feeder:
    """A runtime that records what it was fed; an update can be held, or fail once."""

    def __init__(self) -> None:
        self.fed: list[int] = []
        self.hold: dict[int, asyncio.Event] = {}
        self.fail_once: set[int] = set()
        self.changed = asyncio.Event()  # something was fed or claimed

    async def feed(self, payload: dict[str, Any]) -> None:
        update_id = int(payload["update_id"])
        self.fed.append(update_id)
        self.changed.set()
        if update_id in self.hold:
            await self.hold[update_id].wait()
        if update_id in self.fail_once:
            self.fail_once.discard(update_id)
            raise RuntimeError("a bug in a handler")


async def _until(runtime: _Feeder, condition: Callable[[], bool]) -> None:
    """Wait for ``condition``: far less than the processor's idle round (60 s here)."""
    async with asyncio.timeout(10):
        while not condition():
            runtime.changed.clear()
            await runtime.changed.wait()


async def _settled(services: Services) -> None:
    """Every stored update is done, and the loop has run whatever that set off."""
    async with asyncio.timeout(10):
        while True:
            async with services.uow() as uow:
                stmt = select(func.count()).select_from(Inbox).where(Inbox.status == "pending")
                if not await uow.session.scalar(stmt):
                    break
            await asyncio.sleep(0.01)  # polls the database
    await asyncio.sleep(0.05)


@pytest.fixture
async def running(services: Services, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A processor whose idle round is a minute away, its claim rounds counted, and a poller
    storing the batches it is given."""
    runtime = _Feeder()
    processor = InboxProcessor(services, runtime)  # type: ignore[arg-type]
    processor.idle = 60.0
    rounds: list[int] = []
    claim = processor_module.inbox.claim

    async def counted(*args: Any, **kwargs: Any) -> Any:
        rows = await claim(*args, **kwargs)
        rounds.append(len(rows))
        runtime.changed.set()
        return rows

    monkeypatch.setattr(processor_module.inbox, "claim", counted)
    batches = _OneBatch([])
    poller = Poller(services, batches, on_stored=processor.stored)  # type: ignore[arg-type]

    async def store(*updates: dict[str, Any]) -> None:
        batches.updates = list(updates)
        await poller.run_once()

    task = asyncio.create_task(processor.run_forever())
    await _until(runtime, lambda: len(rounds) == 1)  # the start-up round
    yield runtime, store, rounds
    processor.stop()
    await task


Running = tuple[_Feeder, Callable[..., Awaitable[None]], list[int]]


async def test_updates_that_finish_with_nothing_waiting_cost_no_further_claim_round(
    services: Services, running: Running
) -> None:
    runtime, store, rounds = running
    await store(_update(1, 7), _update(2, 8))
    await _until(runtime, lambda: sorted(runtime.fed) == [1, 2])
    await _settled(services)
    # the start-up round, then one round for the batch: neither a second round straight
    # after it nor one per finished update (each used to find nothing, in a transaction)
    assert rounds == [0, 2]


async def test_the_next_update_of_a_chat_is_handled_as_soon_as_the_one_before_finishes(
    services: Services, running: Running
) -> None:
    runtime, store, _rounds = running
    await store(_update(1, 7), _update(2, 7), _update(3, 8))
    await _until(runtime, lambda: len(runtime.fed) == 3)
    assert runtime.fed.index(1) < runtime.fed.index(2)
    # and one that arrives while its chat is busy
    runtime.hold[4] = asyncio.Event()
    await store(_update(4, 9))
    await _until(runtime, lambda: runtime.fed[-1:] == [4])
    await store(_update(5, 9))
    await asyncio.sleep(0.05)
    assert 5 not in runtime.fed  # its chat is busy: in order, one at a time
    runtime.hold[4].set()
    await _until(runtime, lambda: runtime.fed[-1:] == [5])
    await _settled(services)


async def test_an_update_given_back_after_a_failure_is_tried_again_at_once(
    services: Services, running: Running
) -> None:
    runtime, store, _rounds = running
    runtime.fail_once.add(1)
    await store(_update(1, 7))
    await _until(runtime, lambda: runtime.fed == [1, 1])
