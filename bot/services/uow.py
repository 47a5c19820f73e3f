"""Unit of work: one transaction per incoming event; commits explicitly, rolls back by default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from bot.services.context import Services
    from bot.services.outbox import OutboxWriter


class UnitOfWork:
    """``async with services.uow() as uow: ...; await uow.commit()``; anything else rolls back."""

    session: AsyncSession
    out: OutboxWriter

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.clock = services.clock
        self.committed = False

    async def __aenter__(self) -> UnitOfWork:
        from bot.services.outbox import OutboxWriter

        self.session = self.services.sessionmaker()
        self.out = OutboxWriter(self)
        self.committed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.committed:
                self.session.expunge_all()  # read-only use keeps what it loaded
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self, *, wake: bool = True) -> None:
        """Make every change of this unit durable at once, then wake the workers (unless
        ``wake=False``: a worker's own bookkeeping — a claim, an outcome — is no news)."""
        await self.out.flush()
        await self.session.commit()
        self.committed = True
        if wake:
            for hook in self.services.after_commit:
                hook()

    async def rollback(self) -> None:
        self.out.discard_since(0)
        await self.session.rollback()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: on an exception its changes *and* its messages are undone."""
        mark = self.out.mark()
        try:
            async with self.session.begin_nested():
                yield
        except BaseException:
            self.out.discard_since(mark)
            raise
