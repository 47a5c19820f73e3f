"""What each kind of timer does when it fires (each runs inside the sweep's transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.flows import job, offers
from bot.services.uow import UnitOfWork

TimerAction = Callable[[UnitOfWork, dict[str, Any]], Awaitable[None]]


async def _offer_timeout(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    await offers.offer_timed_out(uow, int(payload["offer_id"]))


def _on_dispatch(action: Callable[[UnitOfWork, int], Awaitable[None]]) -> TimerAction:
    async def run(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await action(uow, int(payload["dispatch_id"]))

    return run


ACTIONS: dict[str, TimerAction] = {
    offers.OFFER_TIMEOUT: _offer_timeout,
    job.CONTACT_REMINDER: _on_dispatch(job.contact_reminder),
    job.CONTACT_OVERDUE: _on_dispatch(job.contact_overdue),
    job.ARRIVAL_REMINDER: _on_dispatch(job.arrival_reminder),
    job.ARRIVAL_OVERDUE: _on_dispatch(job.arrival_overdue),
}


def register(kind: str, action: TimerAction) -> None:
    ACTIONS[kind] = action
