"""Who may use what: role checks, done once here for every entry point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.enums import Role
from bot.handlers.context import Ctx

Handler = Callable[[Ctx], Awaitable[None]]

STAFF = frozenset({Role.ENGINEER, Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER})
SUPERVISING = frozenset({Role.SUPERVISOR, Role.MANAGER, Role.DISPATCHER})
ENGINEERS = frozenset({Role.ENGINEER})
ANYONE: frozenset[Role] | None = None


@dataclass(frozen=True)
class Route:
    """A handler and the roles allowed to reach it (None: anyone, strangers included)."""

    handler: Handler
    roles: frozenset[Role] | None = ANYONE

    def allows(self, ctx: Ctx) -> bool:
        if self.roles is None:
            return True
        return ctx.role is not None and ctx.role in self.roles
