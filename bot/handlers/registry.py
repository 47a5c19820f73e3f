"""The routing tables every handler module adds itself to (one place to read who may do what).

- ``COMMANDS``: ``/name`` → Route(handler, roles)
- ``BUTTONS``: callback prefix → resolver(data) → (roles, handler) or None
- ``START_PAYLOADS``: deep-link payload prefix → handler (``/start inv_…``, ``/start job_…``)
- ``FLOWS``: conversation flow name → what free text, photos, voice, contacts, locations mean
  while a user is in that flow (the step is stored in the database)
- ``DEFAULTS``: message kind → handler when the user is in no conversation
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.callbacks import Callback
from bot.core.enums import Role
from bot.core.events import Kind
from bot.handlers.access import Handler, Route
from bot.handlers.context import Ctx
from bot.services.conversations import Step

ButtonHandler = Callable[[Ctx, Callback], Awaitable[None]]
ButtonResolver = Callable[[Callback], tuple[frozenset[Role] | None, ButtonHandler] | None]
StepHandler = Callable[[Ctx, Step], Awaitable[None]]
StartHandler = Callable[[Ctx, str], Awaitable[None]]


@dataclass(frozen=True)
class FlowRoutes:
    """Handlers for messages that arrive while a user is in one conversation flow."""

    roles: frozenset[Role] | None
    handlers: dict[Kind, StepHandler]


COMMANDS: dict[str, Route] = {}
BUTTONS: dict[str, ButtonResolver] = {}
START_PAYLOADS: dict[str, StartHandler] = {}
FLOWS: dict[str, FlowRoutes] = {}
DEFAULTS: dict[Kind, Handler] = {}


def command(name: str, roles: frozenset[Role] | None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        assert name not in COMMANDS, f"/{name} registered twice"
        COMMANDS[name] = Route(handler, roles)
        return handler

    return register


def buttons(prefix: str) -> Callable[[ButtonResolver], ButtonResolver]:
    def register(resolver: ButtonResolver) -> ButtonResolver:
        assert prefix not in BUTTONS, f"button prefix {prefix!r} registered twice"
        BUTTONS[prefix] = resolver
        return resolver

    return register


def start_payload(prefix: str) -> Callable[[StartHandler], StartHandler]:
    def register(handler: StartHandler) -> StartHandler:
        START_PAYLOADS[prefix] = handler
        return handler

    return register


def flow(name: str, roles: frozenset[Role] | None, **handlers: StepHandler) -> None:
    """``flow("job", ENGINEERS, text=..., photo=..., location=...)``."""
    FLOWS[name] = FlowRoutes(roles, {Kind(kind): h for kind, h in handlers.items()})


def default(kind: Kind) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        DEFAULTS[kind] = handler
        return handler

    return register
