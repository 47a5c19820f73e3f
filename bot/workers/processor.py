"""Handles stored updates: in order within a chat, chats side by side, each update once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.db.models import Inbox
from bot.runtime.base import Runtime
from bot.services import inbox
from bot.services.context import Services
from bot.workers.loop import Worker

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)


class InboxProcessor(Worker):
    """Claims the head update of each idle chat and feeds it through the runtime."""

    def __init__(self, services: Services, runtime: Runtime, *, batch: int = 50) -> None:
        super().__init__()
        self.services = services
        self.runtime = runtime
        self.batch = batch

    async def run_once(self) -> int:
        async with self.services.uow() as uow:
            rows = await inbox.claim(uow.session, uow.clock.now(), LEASE, self.batch)
            await uow.session.commit()
            uow.committed = True
        if rows:
            await asyncio.gather(*(self._handle(row) for row in rows))
        return len(rows)

    async def _handle(self, row: Inbox) -> None:
        try:
            await self.runtime.feed(row.payload)
        except Exception as exc:  # any failure is recorded, never lost
            await self._failed(row, exc)
            return
        # An update no handler takes (a member update, a channel post) is done too, or it
        # would block its chat's queue forever.
        async with self.services.uow() as uow:
            await inbox.mark_unhandled_done(uow.session, row.update_id, uow.clock.now())
            await uow.commit()

    async def _failed(self, row: Inbox, exc: Exception) -> None:
        max_attempts = self.services.settings.inbox_max_attempts
        if row.attempts < max_attempts:
            log.warning(
                "update %s failed (%s), attempt %s of %s",
                row.update_id,
                type(exc).__name__,
                row.attempts,
                max_attempts,
            )
            async with self.services.uow() as uow:
                await inbox.release(uow.session, row.update_id, type(exc).__name__)
                await uow.commit()
            return
        from bot.handlers.router import handle_failure
        from bot.runtime.payloads import event_of_payload

        await handle_failure(self.services, event_of_payload(row.payload), exc)
