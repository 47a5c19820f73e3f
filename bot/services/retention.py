"""Retention: handled updates and delivered messages are not kept for ever (DOMAIN.md §7).

The inbox keeps every update with its payload (what people wrote, their contact, where they
were) and the outbox every message with its text (a customer's phone and address in the job
card an engineer got). Each row is needed for a while only:

- an inbox row until its update is handled, and a little longer so that a redelivered update
  is recognised; the newest one also tells the poller where to resume. Handled and failed rows
  received more than ``INBOX_RETENTION`` ago are deleted, except the newest.
- an outbox row until its message is sent; after that only the message's id may still be
  needed, for as long as the message can be edited or deleted (the newest message under a
  ``ref`` in a chat: job cards, location pins). Sent and failed rows written more than
  ``OUTBOX_RETENTION`` ago are deleted, except those newest ones, which keep chat, ref and
  message id but lose their payload.

Pending rows are never touched, however old. The pruning runs daily (``RETENTION_CRON``) in
transactions of ``BATCH`` rows, so that a long backlog (the first run after an upgrade) never
holds SQLite's write lock for long; workers that run it at the same time only share the work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, delete, exists, func, or_, select, update

from bot.core.enums import InboxStatus, OutboxStatus
from bot.services.context import Services
from bot.services.inbox import INBOX
from bot.services.outbox import OUTBOX

log = logging.getLogger(__name__)

BATCH = 500

_NEWER = OUTBOX.alias("newer")


@dataclass(frozen=True)
class _Step:
    """One pruning step: ``find`` selects the next keys (oldest first, after ``after``) and
    ``change`` deletes or empties the rows with those keys."""

    find: Any
    change: Any


def _step(find: Any, key: Any, change: Any) -> _Step:
    # Keyset pagination: a row the step keeps is looked at once, not again in every batch.
    return _Step(
        find.where(key > bindparam("after")).order_by(key).limit(bindparam("batch")),
        change.where(key.in_(bindparam("keys", expanding=True))),
    )


_CUTOFF_IN = bindparam("cutoff", type_=INBOX.c.received_at.type)
_PRUNE_INBOX = _step(
    select(INBOX.c.update_id).where(
        INBOX.c.status != InboxStatus.PENDING.value,  # done or failed (see _FINISHED)
        INBOX.c.received_at < _CUTOFF_IN,
        INBOX.c.update_id < select(func.max(INBOX.c.update_id)).scalar_subquery(),
    ),
    INBOX.c.update_id,
    delete(INBOX),
)

# Sent or failed. Written as "not pending" on purpose: SQLite then walks the primary key from
# ``after`` in order, instead of the status index (which holds nearly every row) and a sort of
# all of them in every batch.
_FINISHED = OUTBOX.c.status != OutboxStatus.PENDING.value
_OLD = OUTBOX.c.created_at < bindparam("cutoff", type_=OUTBOX.c.created_at.type)
# A sent message another sent message of its chat replaced under the same ref: an edit or a
# deletion of that ref goes to the newer one (the sender's _EDITED).
_SUPERSEDED = exists().where(
    _NEWER.c.chat_id == OUTBOX.c.chat_id,
    _NEWER.c.ref == OUTBOX.c.ref,
    _NEWER.c.status == OutboxStatus.SENT.value,
    _NEWER.c.id > OUTBOX.c.id,
)
_PRUNE_OUTBOX = _step(
    select(OUTBOX.c.id).where(
        _FINISHED,
        _OLD,
        or_(
            OUTBOX.c.ref.is_(None),
            OUTBOX.c.status == OutboxStatus.FAILED.value,
            _SUPERSEDED,
        ),
    ),
    OUTBOX.c.id,
    delete(OUTBOX),
)
_EMPTY_OUTBOX = _step(
    select(OUTBOX.c.id).where(_FINISHED, _OLD, cast(OUTBOX.c.payload, Text) != "{}"),
    OUTBOX.c.id,
    update(OUTBOX).values(payload={}, error=None),
)


@dataclass(frozen=True)
class Pruned:
    updates: int  # inbox rows deleted
    messages: int  # outbox rows deleted
    emptied: int  # outbox rows kept for their message id, payload removed


async def prune(services: Services, *, batch: int = BATCH) -> Pruned:
    """Delete (and empty) what the retention settings no longer keep; how many rows."""
    settings = services.settings
    now = services.clock.now()
    updates = await _repeat(services, _PRUNE_INBOX, now - settings.inbox_retention, batch)
    outbox_cutoff = now - settings.outbox_retention
    messages = await _repeat(services, _PRUNE_OUTBOX, outbox_cutoff, batch)
    emptied = await _repeat(services, _EMPTY_OUTBOX, outbox_cutoff, batch)
    pruned = Pruned(updates, messages, emptied)
    if updates or messages or emptied:
        log.info(
            "retention: %d updates and %d messages deleted, %d messages emptied",
            updates,
            messages,
            emptied,
        )
    return pruned


async def _repeat(services: Services, step: _Step, cutoff: datetime, batch: int) -> int:
    """Run ``step`` one batch per transaction until a batch comes back short."""
    total, after = 0, -(2**63)
    while True:
        async with services.uow() as uow:
            found = {"cutoff": cutoff, "batch": batch, "after": after}
            keys = list((await uow.session.execute(step.find, found)).scalars())
            if keys:
                await uow.session.execute(step.change, {"keys": keys})
            await uow.commit(wake=False)
        total += len(keys)
        if len(keys) < batch:
            return total
        after = keys[-1]
        await asyncio.sleep(0)  # the bot's own work goes between two batches


async def run(services: Services) -> None:
    """The daily job (``RETENTION_CRON``): a failure is logged and tried again next time."""
    try:
        await prune(services)
    except Exception as exc:
        log.warning("retention: pruning failed (%s); it runs again next time", type(exc).__name__)
