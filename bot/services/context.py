"""What every use case is given: settings, a clock, the renderer and units of work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.core.clock import Clock
from bot.i18n import Renderer


@dataclass
class Services:
    """The application's shared, long-lived collaborators (built once by bootstrap)."""

    settings: Settings
    clock: Clock
    renderer: Renderer
    sessionmaker: async_sessionmaker[AsyncSession]
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self)


from bot.services.uow import UnitOfWork  # noqa: E402  (cycle: the uow needs Services)
