"""The runtime contract (framework-free): how a framework feeds us events and sends our calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.core.events import Event

EventHandler = Callable[[Event], Awaitable[None]]


class SendError(Exception):
    """A Bot API call failed; subclasses say whether and when to try again."""


class RetryAfter(SendError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds}s")
        self.seconds = seconds


class TransientSendError(SendError):
    """Network trouble or a 5xx: try again later."""


class PermanentSendError(SendError):
    """Blocked by the user, chat gone, bad request: trying again will not help."""

    def __init__(self, description: str, *, blocked: bool = False) -> None:
        super().__init__(description)
        self.blocked = blocked


class NotModified(SendError):
    """An edit that changes nothing: counts as delivered."""


class Runtime(Protocol):
    """What aiogram and python-telegram-bot each provide."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def get_me(self) -> dict[str, Any]: ...

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]: ...

    async def feed(self, payload: dict[str, Any]) -> None:
        """Turn a stored raw update into our Event through the framework and handle it."""

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        """Make one Bot API call; raise the SendError subclasses above. Returns the result."""

    async def set_webhook(self, url: str, secret: str) -> None: ...

    async def delete_webhook(self) -> None: ...
