"""What each kind of timer does when it fires (each runs inside the sweep's transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.flows import offers
from bot.services.uow import UnitOfWork

TimerAction = Callable[[UnitOfWork, dict[str, Any]], Awaitable[None]]


async def _offer_timeout(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    await offers.offer_timed_out(uow, int(payload["offer_id"]))


ACTIONS: dict[str, TimerAction] = {
    offers.OFFER_TIMEOUT: _offer_timeout,
}


def register(kind: str, action: TimerAction) -> None:
    ACTIONS[kind] = action
