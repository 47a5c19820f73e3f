"""The inbox: every update is a row before Telegram hears it was received."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.enums import InboxStatus
from bot.db.engine import CONFLICT_INSERTS, dialect_of
from bot.db.models import Inbox

# Core, not the ORM: the inbox is on every update's path, and plain statements on the table
# skip the ORM's per-statement work (entity compile state, session synchronisation).
INBOX = cast(Table, Inbox.__table__)


def chat_of(update: dict[str, Any]) -> int | None:
    """The chat an update belongs to (its handling order is per chat)."""
    for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
        if key in update:
            return int(update[key]["chat"]["id"])
    if "callback_query" in update:
        query = update["callback_query"]
        message = query.get("message")
        if message:
            return int(message["chat"]["id"])
        return int(query["from"]["id"])
    for key in ("my_chat_member", "chat_member", "chat_join_request"):
        if key in update:
            return int(update[key]["chat"]["id"])
    for key in ("inline_query", "chosen_inline_result", "shipping_query", "pre_checkout_query"):
        if key in update:
            return int(update[key]["from"]["id"])
    return None


# Built once per dialect, the values as parameters (executemany for a batch): a multi-row
# VALUES insert is compiled afresh on every call (SQLAlchemy cannot cache it).
_STORE = {
    name: insert(INBOX).on_conflict_do_nothing(index_elements=["update_id"])
    for name, insert in CONFLICT_INSERTS.items()
}


async def store(session: AsyncSession, updates: list[dict[str, Any]], now: datetime) -> int:
    """Insert updates, ignoring ones already stored (redelivery); returns how many were new
    (for a batch of several, as the driver counts them: asyncpg does not, and says -1)."""
    if not updates:
        return 0
    rows = [
        {
            "update_id": int(u["update_id"]),
            "chat_id": chat_of(u),
            "payload": u,
            "status": InboxStatus.PENDING.value,
            "attempts": 0,
            "received_at": now,
        }
        for u in updates
    ]
    result = await session.execute(_STORE[dialect_of(session)], rows)
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Claimed:
    """An update taken for handling (a plain row: claiming builds no ORM objects)."""

    update_id: int
    chat_id: int | None
    payload: dict[str, Any]
    attempts: int  # including this one


def _claim_statement(*, lock: bool) -> Any:
    """The oldest pending update of each chat nobody is working on (built once per kind)."""
    now = bindparam("now", type_=INBOX.c.locked_until.type)
    pending = INBOX.c.status == InboxStatus.PENDING.value
    busy = (
        select(INBOX.c.chat_id)
        .where(pending, INBOX.c.locked_until > now)
        .where(INBOX.c.chat_id.is_not(None))
    )
    heads = (
        select(func.min(INBOX.c.update_id))
        .where(pending)
        .group_by(INBOX.c.chat_id)
        .having(~func.coalesce(INBOX.c.chat_id, -1).in_(busy))
    )
    candidates = (
        select(INBOX.c.update_id, INBOX.c.chat_id, INBOX.c.payload, INBOX.c.attempts)
        .where(INBOX.c.update_id.in_(heads))
        .where(and_(pending))
        .where((INBOX.c.locked_until.is_(None)) | (INBOX.c.locked_until <= now))
        .order_by(INBOX.c.update_id)
        .limit(bindparam("limit"))
    )
    return candidates.with_for_update(skip_locked=True) if lock else candidates


_CLAIM = _claim_statement(lock=False)
_CLAIM_LOCKED = _claim_statement(lock=True)  # PostgreSQL: skip rows another worker claims
_LEASE = (
    update(INBOX)
    .where(INBOX.c.update_id.in_(bindparam("ids", expanding=True)))
    .values(locked_until=bindparam("until"), attempts=INBOX.c.attempts + 1)
)


async def claim(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Claim the oldest pending update of each chat nobody else is working on."""
    stmt = _CLAIM_LOCKED if dialect_of(session) == "postgresql" else _CLAIM
    rows = (await session.execute(stmt, {"now": now, "limit": limit})).all()
    if not rows:
        return []
    ids = [row.update_id for row in rows]
    await session.execute(_LEASE, {"ids": ids, "until": now + lease})
    return [Claimed(int(r.update_id), r.chat_id, r.payload, int(r.attempts) + 1) for r in rows]


_TAKE = (  # every handled update's: built once (b_: not a column name, which would SET it)
    update(INBOX)
    .where(
        INBOX.c.update_id == bindparam("b_update_id"),
        INBOX.c.status == InboxStatus.PENDING.value,
    )
    .values(
        status=InboxStatus.DONE.value,
        done_at=bindparam("b_now", type_=INBOX.c.done_at.type),
        locked_until=None,
    )
)


@dataclass
class Feeding:
    """Set by whoever feeds a stored update through the runtime; tells it a handler ran."""

    update_id: int
    reached: bool = False


feeding: ContextVar[Feeding | None] = ContextVar("feeding", default=None)


def reached(update_id: int) -> None:
    """Called by the handler: the update being fed reached it (it marks the row itself)."""
    current = feeding.get()
    if current is not None and current.update_id == update_id:
        current.reached = True


async def take(session: AsyncSession, update_id: int, now: datetime) -> bool:
    """Mark the update done in the caller's transaction; False when it was done already.

    One statement on the usual path (the update is a pending inbox row). An update that never
    went through the inbox (a host bot feeding our router) is recorded here, once.
    """
    done = await session.execute(_TAKE, {"b_update_id": update_id, "b_now": now})
    if getattr(done, "rowcount", 0):
        return True
    row = {
        "update_id": update_id,
        "chat_id": None,
        "payload": {"update_id": update_id},
        "status": InboxStatus.DONE.value,
        "attempts": 0,
        "received_at": now,
        "done_at": now,
    }
    done = await session.execute(_STORE[dialect_of(session)], row)
    return bool(getattr(done, "rowcount", 0))


async def mark_unhandled_done(session: AsyncSession, update_id: int, now: datetime) -> None:
    """Close an update that went through the runtime without reaching a handler."""
    await session.execute(_TAKE, {"b_update_id": update_id, "b_now": now})


async def mark_failed(session: AsyncSession, update_id: int, now: datetime, error: str) -> None:
    await session.execute(
        update(INBOX)
        .where(INBOX.c.update_id == update_id)
        .values(status=InboxStatus.FAILED.value, done_at=now, locked_until=None, error=error[:200])
    )


async def give_back(session: AsyncSession, update_id: int, error: str) -> None:
    """Let an update be handled again without counting the attempt (the database went away
    mid-update: a restart is not the update's fault)."""
    await session.execute(
        update(INBOX)
        .where(INBOX.c.update_id == update_id, INBOX.c.status == InboxStatus.PENDING.value)
        .values(locked_until=None, attempts=INBOX.c.attempts - 1, error=error[:200])
    )


async def release_leases(session: AsyncSession) -> int:
    """Free every claimed, unfinished update (its claimer is known to be gone); how many."""
    freed = await session.execute(
        update(INBOX)
        .where(INBOX.c.status == InboxStatus.PENDING.value, INBOX.c.locked_until.is_not(None))
        .values(locked_until=None)
    )
    return int(getattr(freed, "rowcount", 0) or 0)


async def release(session: AsyncSession, update_id: int, error: str) -> None:
    """Let an update be tried again (after a failure that was not its fault)."""
    await session.execute(
        update(INBOX)
        .where(INBOX.c.update_id == update_id)
        .values(locked_until=None, error=error[:200])
    )
