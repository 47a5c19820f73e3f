"""Where each user is in a conversation, stored with everything else (survives restarts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.db.models import Conversation
from bot.services.uow import UnitOfWork


@dataclass(frozen=True)
class Step:
    flow: str
    step: str
    data: dict[str, Any] = field(default_factory=dict)


async def current(uow: UnitOfWork, user_id: int) -> Step | None:
    row = await uow.session.get(Conversation, user_id)
    if row is None:
        return None
    return Step(row.flow, row.step, dict(row.data))


async def enter(uow: UnitOfWork, user_id: int, flow: str, step: str, **data: Any) -> None:
    """Put the user at ``flow``/``step``; free text is then read as that step's answer."""
    row = await uow.session.get(Conversation, user_id)
    now = uow.clock.now()
    if row is None:
        uow.session.add(
            Conversation(user_id=user_id, flow=flow, step=step, data=data, updated_at=now)
        )
    else:
        row.flow, row.step, row.data, row.updated_at = flow, step, data, now
    await uow.session.flush()


async def leave(uow: UnitOfWork, user_id: int, flow: str | None = None) -> None:
    """End the user's conversation (only if it is ``flow``, when given)."""
    row = await uow.session.get(Conversation, user_id)
    if row is not None and (flow is None or row.flow == flow):
        await uow.session.delete(row)
        await uow.session.flush()
