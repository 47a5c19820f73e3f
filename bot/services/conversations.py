"""Where each user is in a conversation, stored with everything else (survives restarts).

Every update of a user in a conversation reads their step and most move it, so these are
plain statements built once (no ORM object, no unit-of-work flush): one SELECT to read, one
upsert to move, one DELETE to leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select

from bot.db.engine import CONFLICT_INSERTS, dialect_of
from bot.db.models import Conversation
from bot.services.uow import UnitOfWork

CONVERSATIONS = cast(Table, Conversation.__table__)
_C = CONVERSATIONS.c

_CURRENT = select(_C.flow, _C.step, _C.data).where(_C.user_id == bindparam("user_id"))
_LEAVE = delete(CONVERSATIONS).where(_C.user_id == bindparam("user_id"))
_LEAVE_FLOW = _LEAVE.where(_C.flow == bindparam("flow"))


def _upsert(insert: Any) -> Any:
    stmt = insert(CONVERSATIONS)
    moved = {name: stmt.excluded[name] for name in ("flow", "step", "data", "updated_at")}
    return stmt.on_conflict_do_update(index_elements=[_C.user_id], set_=moved)


_ENTER = {name: _upsert(insert) for name, insert in CONFLICT_INSERTS.items()}


@dataclass(frozen=True)
class Step:
    flow: str
    step: str
    data: dict[str, Any] = field(default_factory=dict)


async def current(uow: UnitOfWork, user_id: int) -> Step | None:
    row = (await uow.session.execute(_CURRENT, {"user_id": user_id})).first()
    if row is None:
        return None
    return Step(row.flow, row.step, dict(row.data))


async def enter(uow: UnitOfWork, user_id: int, flow: str, step: str, **data: Any) -> None:
    """Put the user at ``flow``/``step``; free text is then read as that step's answer."""
    await uow.session.execute(
        _ENTER[dialect_of(uow.session)],
        {
            "user_id": user_id,
            "flow": flow,
            "step": step,
            "data": data,
            "updated_at": uow.clock.now(),
        },
    )


async def leave(uow: UnitOfWork, user_id: int, flow: str | None = None) -> None:
    """End the user's conversation (only if it is ``flow``, when given)."""
    if flow is None:
        await uow.session.execute(_LEAVE, {"user_id": user_id})
    else:
        await uow.session.execute(_LEAVE_FLOW, {"user_id": user_id, "flow": flow})
