"""Long polling that never loses an update: store in the inbox first, then move the offset."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select

from bot.db.models import Inbox
from bot.runtime.base import Runtime, SendError
from bot.services import inbox
from bot.services.context import Services

log = logging.getLogger(__name__)


async def poll_forever(services: Services, runtime: Runtime, *, timeout: int = 25) -> None:
    """getUpdates → inbox rows (committed) → next offset; the offset is Telegram's only ack."""
    async with services.uow() as uow:
        last = await uow.session.scalar(select(func.max(Inbox.update_id)))
    offset = (last + 1) if last is not None else None
    backoff = 0.5
    while True:
        try:
            updates = await runtime.get_updates(offset, timeout)
        except (SendError, OSError) as exc:
            log.warning("getUpdates failed (%s); retrying in %.1fs", type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)
            continue
        backoff = 0.5
        if not updates:
            continue
        async with services.uow() as uow:
            await inbox.store(uow.session, updates, uow.clock.now())
            await uow.commit()
        offset = max(int(u["update_id"]) for u in updates) + 1
