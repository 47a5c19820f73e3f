"""The outbox sender: Telegram's rate limits, retry_after, retries with backoff, order per chat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import BigInteger, Integer, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.enums import OutboxStatus
from bot.db.engine import dialect_of
from bot.db.models import Outbox
from bot.runtime.base import (
    NotModified,
    PermanentSendError,
    RetryAfter,
    Runtime,
    SendError,
    TransientSendError,
)
from bot.services.context import Services
from bot.services.uow import UnitOfWork
from bot.workers.limit_share import LimitShare
from bot.workers.loop import Worker

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
OUTBOX = cast(Table, Outbox.__table__)  # Core statements: the sender's rows are plain rows
UNTHROTTLED = frozenset({"answerCallbackQuery", "sendChatAction"})
UNORDERED = ("answerCallbackQuery",)
GLOBAL_MARGIN = 0.99
MAX_IN_FLIGHT = 30
GATHER = 0.005  # seconds a round waits for more sends to finish before recording them

# Told, inside the transaction that records them, which chats a failed send showed to be out
# of reach (bot blocked, chat gone): bot.flows.delivery.unreachable alerts the supervisor.
Unreachable = Callable[[UnitOfWork, list[int]], Awaitable[None]]


CLAIMED = (
    OUTBOX.c.id,
    OUTBOX.c.chat_id,
    OUTBOX.c.method,
    OUTBOX.c.payload,
    OUTBOX.c.attempts,
    OUTBOX.c.edit_of,
)


def _claim_statement(*, lock: bool) -> Any:
    """The head message of each chat that may send now, and button answers (built once)."""
    now = bindparam("now", type_=OUTBOX.c.not_before.type)
    pending = OUTBOX.c.status == OutboxStatus.PENDING.value
    ordered = OUTBOX.c.method.not_in(UNORDERED)
    busy = select(OUTBOX.c.chat_id).where(pending, ordered, OUTBOX.c.locked_until > now)
    # A message held back by quiet hours (never tried, not yet allowed) is not the chat's
    # head: an urgent one written after it goes now. Retries keep their place.
    held = (OUTBOX.c.attempts == 0) & (OUTBOX.c.not_before > now)
    # With several senders each takes the chats of its part (see limit_share): a chat's
    # messages then go through one sender, whose per-chat bucket paces them.
    chat = func.abs(OUTBOX.c.chat_id, type_=BigInteger)

    def part(name: str) -> Any:
        return chat % bindparam(f"parts{name}", type_=Integer) == bindparam(
            f"part{name}", type_=Integer
        )

    ours = part("") | part("_before")
    heads = (
        select(func.min(OUTBOX.c.id))
        .where(pending, ordered, ~held, ours)
        .group_by(OUTBOX.c.chat_id)
        .having(~OUTBOX.c.chat_id.in_(busy))
    )
    # Button answers stop the client's spinner: they never wait behind a chat's queue.
    answers = select(OUTBOX.c.id).where(pending, OUTBOX.c.method.in_(UNORDERED))
    stmt = (
        select(*CLAIMED)
        .where(OUTBOX.c.id.in_(heads) | OUTBOX.c.id.in_(answers), OUTBOX.c.not_before <= now)
        .where((OUTBOX.c.locked_until.is_(None)) | (OUTBOX.c.locked_until <= now))
        .where(OUTBOX.c.id.not_in(bindparam("mine", expanding=True)))
        .order_by(OUTBOX.c.priority, OUTBOX.c.id)
        .limit(bindparam("limit"))
    )
    return stmt.with_for_update(skip_locked=True) if lock else stmt


_CLAIM = _claim_statement(lock=False)
_CLAIM_LOCKED = _claim_statement(lock=True)  # PostgreSQL: skip rows another sender claims
_LEASE = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(locked_until=bindparam("until", type_=OUTBOX.c.locked_until.type))
)
_EDITED = (  # the message id an edit refers to: the newest sent message with its ref
    select(OUTBOX.c.message_id)
    .where(
        OUTBOX.c.ref == bindparam("ref"),
        OUTBOX.c.chat_id == bindparam("chat"),
        OUTBOX.c.status == OutboxStatus.SENT.value,
    )
    .order_by(OUTBOX.c.id.desc())
    .limit(1)
)


@dataclass
class Claimed:
    """An outbox row taken for sending (a plain row: claiming builds no ORM objects)."""

    id: int
    chat_id: int
    method: str
    payload: dict[str, Any]
    attempts: int
    edit_of: str | None


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(
        self, rate: float, burst: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.now = now
        self.stamp = now()

    def _refill(self) -> None:
        current = self.now()
        self.tokens = min(self.burst, self.tokens + (current - self.stamp) * self.rate)
        self.stamp = current

    def wait_time(self) -> float:
        """Seconds until a token is free (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self._refill()
        self.tokens -= 1

    def restart(self) -> None:
        """Earn nothing for the time until now (a request was in flight, see ``_send``)."""
        self.stamp = self.now()

    def set_rate(self, rate: float) -> None:
        self._refill()  # what was earned so far, at the old rate
        self.rate = rate


class OutboxSender(Worker):
    """Claims the head message of each chat that may send now, and sends it."""

    def __init__(
        self,
        services: Services,
        runtime: Runtime,
        *,
        batch: int | None = None,
        on_permanent_failure: Unreachable | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.runtime = runtime
        # About a fifth of a second's worth per round: an urgent message written meanwhile
        # waits for at most that, not for a long batch of bulk follow-ups.
        # At most MAX_IN_FLIGHT at once: a message sent but not yet recorded is sent again
        # if the process dies (Telegram has no idempotency key), so keep that window small.
        self.batch = batch or max(
            1, min(int(services.settings.send_global_rate / 5), MAX_IN_FLIGHT)
        )
        settings = services.settings
        # No saved-up burst overall, and a hair under the limit: Telegram counts arrivals in a
        # sliding second, and network jitter can bring two sends closer than they left.
        self.global_bucket = TokenBucket(settings.send_global_rate * GLOBAL_MARGIN, 1)
        # The overall limit, shared with the senders of other processes (``run_forever``;
        # a sender driven round by round, as tests do, has the whole limit to itself).
        self.share = LimitShare()
        self.chat_buckets: dict[int, TokenBucket] = {}
        self.on_permanent_failure = on_permanent_failure
        self.inflight: set[asyncio.Task[None]] = set()
        self.done: list[dict[str, object]] = []  # outcomes not yet recorded
        self.unreachable: dict[int, int] = {}  # row → its chat, a failure that says "out of reach"
        # Chats reported out of reach, until a message gets through again: one alert per
        # blocked user, not one per message they miss (after a restart, one more at most).
        self.reported: set[int] = set()
        # Rows this process claimed whose outcome is not committed yet. Never claimed again
        # by this process, even when a stall (a long wait for the database) outlasts the
        # lease: only another process can re-send them, and only after this one died.
        self.owned: set[int] = set()

    def _chat_bucket(self, chat_id: int) -> TokenBucket:
        bucket = self.chat_buckets.get(chat_id)
        if bucket is None:
            settings = self.services.settings
            bucket = TokenBucket(settings.send_chat_rate, settings.send_chat_burst)
            self.chat_buckets[chat_id] = bucket
            if len(self.chat_buckets) > 50_000:
                self.chat_buckets.pop(next(iter(self.chat_buckets)))
        return bucket

    async def _claim(self, done: list[dict[str, object]], limit: int) -> list[Claimed]:
        """Record the outcomes of finished sends, then claim the next rows: one transaction."""
        recorded = _ids(done)
        async with self.services.uow() as uow:
            session = uow.session
            await session.connection()  # the lease counts from when we hold the database
            now = self.services.clock.now()
            if done:
                await self._record(uow, done, recorded)
            if self.share.due():
                senders = await self.share.beat(session, now)
                rate = self.services.settings.send_global_rate * GLOBAL_MARGIN / senders
                if rate != self.global_bucket.rate:
                    log.info("%d outbox senders share Telegram's overall limit", senders)
                    self.global_bucket.set_rate(rate)
            if self.share.holding():
                limit = 0
            if limit <= 0:
                await uow.commit(wake=False)
                self._forget(recorded)
                return []
            mine = sorted(self.owned - recorded)  # being sent, or sent and unrecorded: not again
            stmt = _CLAIM_LOCKED if dialect_of(session) == "postgresql" else _CLAIM
            params = {"now": now, "limit": limit, "mine": mine, **self.share.chats()}
            rows = []
            for found in await session.execute(stmt, params):
                row = Claimed(*found)
                if row.method not in UNTHROTTLED and self._chat_bucket(row.chat_id).wait_time() > 0:
                    continue
                rows.append(row)
            if rows:
                await session.execute(_LEASE, {"ids": [r.id for r in rows], "until": now + LEASE})
            await self._resolve_edits(session, rows)
            await uow.commit(wake=False)
            self._forget(recorded)
            self.owned.update(row.id for row in rows)
            return rows

    async def _record(
        self, uow: UnitOfWork, done: list[dict[str, object]], recorded: set[int]
    ) -> None:
        """Record outcomes (``recorded``: their row ids); for those that showed a chat out of
        reach, tell who must know, in the same transaction (a savepoint: an alert that fails
        never holds up the record)."""
        await _record(uow.session, done)
        found = {self.unreachable[i] for i in recorded if i in self.unreachable}
        chats = sorted(found - self.reported)
        if not chats or self.on_permanent_failure is None:
            return
        try:
            async with uow.savepoint():
                await self.on_permanent_failure(uow, chats)
            self.reported.update(chats)
        except Exception as exc:
            log.error(
                "could not tell anyone that %d chat(s) are out of reach (%s)",
                len(chats),
                type(exc).__name__,
                exc_info=exc,
            )

    def _forget(self, recorded: set[int]) -> None:
        """Outcomes committed: no longer ours to send, nor to tell about."""
        self.owned -= recorded
        for row_id in recorded:
            self.unreachable.pop(row_id, None)

    async def run_once(self) -> int:
        if self.inflight:
            # Sends are under way: give them a moment to finish, so that one transaction
            # records several outcomes and claims their chats' next rows (group commit).
            await asyncio.sleep(GATHER)
        done, self.done = self.done, []
        slots = self.batch - len(self.inflight)
        if not done and slots <= 0:
            return 0  # nap until a send finishes and wakes us
        try:
            rows = await self._claim(done, slots)
        except BaseException:
            self.done[:0] = done  # not recorded: keep them for the next try
            raise
        for row in rows:
            if row.method not in UNTHROTTLED:
                delay = self.global_bucket.wait_time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.global_bucket.take()
                self._chat_bucket(row.chat_id).take()
            task = asyncio.create_task(self._send(row))
            self.inflight.add(task)
            task.add_done_callback(self._finished)
        return len(rows) + len(done)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.wake.set()

    async def settle(self) -> None:
        """Wait for the sends in flight and record what they did."""
        if self.inflight:
            await asyncio.gather(*self.inflight, return_exceptions=True)
        if self.done:
            done, self.done = self.done, []
            recorded = _ids(done)
            async with self.services.uow() as uow:
                await self._record(uow, done, recorded)
                await uow.commit(wake=False)
            self._forget(recorded)

    async def _leave(self) -> None:
        async with self.services.uow() as uow:
            await self.share.leave(uow.session)
            await uow.commit(wake=False)

    async def run_forever(self) -> None:
        self.share.join()
        try:
            await super().run_forever()
        finally:
            self.share.quit()
            await self.settle()  # a graceful stop: nothing sent goes unrecorded
            with contextlib.suppress(Exception):  # the database is gone: the row goes stale
                await self._leave()

    async def _resolve_edits(self, session: AsyncSession, rows: list[Claimed]) -> None:
        """Fill in the message id each edit refers to; an edit of a message that never went
        out is marked failed instead of sent."""
        for row in [r for r in rows if r.edit_of]:
            message_id = await session.scalar(_EDITED, {"ref": row.edit_of, "chat": row.chat_id})
            if message_id is None:
                await _record(
                    session,
                    [
                        {
                            "id": row.id,
                            "locked_until": None,
                            "status": OutboxStatus.FAILED.value,
                            "error": "original message not sent",
                        }
                    ],
                )
                rows.remove(row)
            else:
                row.payload = {**row.payload, "message_id": int(message_id)}

    async def _call(self, row: Claimed) -> object:
        """The Bot API call; a chat's next message is paced from when this one *arrived*.

        A chat's messages go one at a time, so once the answer is back the request has
        reached Telegram: counting the chat's interval from then keeps arrivals apart by the
        interval whatever the network's jitter (counting from departure does not).
        """
        try:
            return await self.runtime.call(row.method, row.payload)
        finally:
            if row.method not in UNTHROTTLED:
                self._chat_bucket(row.chat_id).restart()

    async def _send(self, row: Claimed) -> None:
        now = self.services.clock.now
        values: dict[str, object]
        try:
            result = await self._call(row)
        except NotModified:
            values = {"status": OutboxStatus.SENT.value, "sent_at": now()}
        except RetryAfter as exc:
            log.info("chat throttled by Telegram for %ss", exc.seconds)
            bucket = self._chat_bucket(row.chat_id)
            bucket.tokens = -exc.seconds * bucket.rate  # no token until retry_after has passed
            values = {
                "not_before": now() + timedelta(seconds=exc.seconds),
                "attempts": row.attempts + 1,
            }
        except TransientSendError as exc:
            attempts = row.attempts + 1
            if attempts >= self.services.settings.send_max_attempts:
                values = {
                    "status": OutboxStatus.FAILED.value,
                    "attempts": attempts,
                    "error": str(exc)[:300],
                }
            else:
                backoff = min(2**attempts * 0.5, 300)
                values = {
                    "attempts": attempts,
                    "not_before": now() + timedelta(seconds=backoff),
                    "error": str(exc)[:300],
                }
        except PermanentSendError as exc:
            values = {
                "status": OutboxStatus.FAILED.value,
                "attempts": row.attempts + 1,
                "error": str(exc)[:300],
            }
            # The chat is out of reach (blocked, gone) or a new message could not go out:
            # someone must know. An edit, deletion or button answer that fails (the user
            # deleted the message, it is too old) says nothing about reaching the chat.
            if exc.blocked or row.method.startswith("send"):
                self.unreachable[row.id] = row.chat_id
        except SendError as exc:
            values = {"status": OutboxStatus.FAILED.value, "error": str(exc)[:300]}
        else:
            message_id = result.get("message_id") if isinstance(result, dict) else None
            values = {"status": OutboxStatus.SENT.value, "sent_at": now(), "message_id": message_id}
            self.reported.discard(row.chat_id)  # reachable again: a new block is news
        await self._finish(row, values)

    async def _finish(self, row: Claimed, values: dict[str, object]) -> None:
        """Recorded with the next claim, in one transaction for everything that finished."""
        self.done.append({"id": row.id, "locked_until": None, **values})


_RECORD: dict[tuple[str, ...], Any] = {}


def _ids(done: list[dict[str, object]]) -> set[int]:
    return {int(str(values["id"])) for values in done}


async def _record(session: AsyncSession, done: list[dict[str, object]]) -> None:
    """One executemany UPDATE per shape of outcome (sent, retry later, failed …)."""
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for values in done:
        shapes.setdefault(tuple(sorted(values)), []).append(values)
    for keys, same in shapes.items():
        columns = [k for k in keys if k != "id"]
        stmt = _RECORD.get(keys)
        if stmt is None:  # a handful of shapes: each built once
            stmt = _RECORD[keys] = (
                update(OUTBOX)
                .where(OUTBOX.c.id == bindparam("row_id"))
                .values({k: bindparam(f"new_{k}") for k in columns})
            )
        params = [{"row_id": v["id"], **{f"new_{k}": v[k] for k in columns}} for v in same]
        await session.execute(stmt, params)
