"""Who wakes the inbox processor: the poller once it has stored updates, not every commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.bootstrap import FieldBot
from bot.db.models import Inbox
from bot.workers.polling import Poller


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
        on_stored=lambda: woken.append("processor"),
    )
    assert await poller.run_once() == 1
    stored_when_woken.append(await count())
    assert woken == ["processor"]
    assert stored_when_woken == [1]
    assert await poller.run_once() == 0  # nothing new: nobody woken
    assert woken == ["processor"]


def test_a_handlers_commit_wakes_the_sender_only(make_settings) -> None:
    bot = FieldBot(make_settings(), serve_http=False)
    assert bot.services.after_commit == [bot.sender.wake.set]
    assert bot.poller.on_stored == bot.processor.wake.set
