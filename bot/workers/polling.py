"""Long polling that never loses an update: store in the inbox first, then move the offset."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from bot.db.models import Inbox
from bot.runtime.base import Runtime, SendError
from bot.services import inbox
from bot.services.context import Services
from bot.workers.loop import Worker, nap

log = logging.getLogger(__name__)


class Poller(Worker):
    """getUpdates → inbox rows (committed) → next offset; the offset is Telegram's only ack."""

    idle = 0.0

    def __init__(
        self,
        services: Services,
        runtime: Runtime,
        *,
        timeout: int = 25,
        on_stored: Callable[[list[int | None]], None] | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.runtime = runtime
        self.timeout = timeout
        self.on_stored = on_stored  # told the chats of the stored updates: the processor
        self.offset: int | None = None
        self.started = False
        self.backoff = 0.5

    async def _resume_offset(self) -> None:
        async with self.services.uow() as uow:
            last = await uow.session.scalar(select(func.max(Inbox.update_id)))
        self.offset = (int(last) + 1) if last is not None else None
        self.started = True

    async def _fetch(self) -> list[dict[str, Any]] | None:
        """One long poll, abandoned (nothing lost: no offset moved) when we stop."""
        request = asyncio.ensure_future(self.runtime.get_updates(self.offset, self.timeout))
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({request, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not request.done():
            request.cancel()
            return None
        return request.result()

    async def run_once(self) -> int:
        if not self.started:
            await self._resume_offset()
        try:
            updates = await self._fetch()
        except (SendError, OSError) as exc:
            log.warning(
                "getUpdates failed (%s); retrying in %.1fs", type(exc).__name__, self.backoff
            )
            await nap(self.stopping, self.backoff)
            self.backoff = min(self.backoff * 2, 30)
            return 0
        self.backoff = 0.5
        if not updates:
            return 0
        async with self.services.uow() as uow:
            await inbox.store(uow.session, updates, uow.clock.now())
            await uow.commit(wake=False)
        if self.on_stored is not None:
            self.on_stored([inbox.chat_of(u) for u in updates])
        self.offset = max(int(u["update_id"]) for u in updates) + 1
        return len(updates)
