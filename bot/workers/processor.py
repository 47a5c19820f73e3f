"""Handles stored updates: in order within a chat, chats side by side, each update once."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot.runtime.base import Runtime
from bot.services import inbox
from bot.services.context import Services
from bot.workers.loop import Worker, persist

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)


def database_gone(exc: BaseException) -> bool:
    """The database went away (a restart, a failover, the network), not the update's fault."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OSError | InterfaceError):
        return True
    # An OperationalError is also what SQLite says about a bad statement: only the messages
    # of an unreachable or busy database count, or a bug would be retried forever uncounted.
    message = str(exc).lower()
    return isinstance(exc, OperationalError) and any(word in message for word in GONE_WORDS)


GONE_WORDS = (
    "locked",
    "connection",
    "closed",
    "terminat",
    "shutting down",
    "starting up",
    "unable to open",
    "recovery mode",
)


class InboxProcessor(Worker):
    """Claims the head update of each idle chat and feeds it through the runtime.

    Up to ``batch`` updates are in flight at once, and a slot that frees up is refilled at
    once (no lock-step rounds in which every update waits for the slowest of its batch).

    A claim round is a transaction, so the processor claims only when something may be
    claimable: when updates were stored (``stored``), when an update finishes whose chat has
    more waiting, when its last round filled every slot, and every ``idle`` seconds (updates
    stored by another process, leases that ran out). ``waiting`` counts, per chat, the updates
    this process stored and has not claimed yet.
    """

    def __init__(self, services: Services, runtime: Runtime, *, batch: int = 50) -> None:
        super().__init__()
        self.services = services
        self.runtime = runtime
        self.batch = batch
        self.inflight: dict[asyncio.Task[None], int | None] = {}  # task → its chat
        self.waiting: Counter[int | None] = Counter()
        self.full = False  # the last round filled every slot: more may be claimable

    def stored(self, chats: Iterable[int | None]) -> None:
        """Updates of ``chats`` (one entry per update) were committed to the inbox."""
        self.waiting.update(chats)
        self.wake.set()

    async def run_once(self) -> int:
        slots = self.batch - len(self.inflight)
        if slots <= 0:
            self.full = True
            return 0  # nap until a task finishes and wakes us
        async with self.services.uow() as uow:
            rows = await inbox.claim(uow.session, uow.clock.now(), LEASE, slots)
            await uow.commit(wake=False)
        for row in rows:
            if self.waiting[row.chat_id] > 0:
                self.waiting[row.chat_id] -= 1
            task = asyncio.create_task(self._handle(row))
            self.inflight[task] = row.chat_id
            task.add_done_callback(self._finished)
        self.full = len(rows) == slots
        if not self.full:
            # Every chat with a claimable head was claimed: what is still waiting belongs to
            # chats in flight here (their tasks wake us) or elsewhere (the idle round looks).
            busy = set(self.inflight.values())
            for chat in [c for c in self.waiting if c not in busy or not self.waiting[c]]:
                del self.waiting[chat]
        return len(rows) if self.full else 0  # 0: nap until woken or idle

    def _finished(self, task: asyncio.Task[None]) -> None:
        chat = self.inflight.pop(task, None)
        if self.full or self.waiting[chat] > 0:
            self.wake.set()

    async def run_forever(self) -> None:
        try:
            await super().run_forever()
        finally:
            if self.inflight:  # a graceful stop lets every update in flight finish
                await asyncio.gather(*self.inflight, return_exceptions=True)

    async def _handle(self, row: inbox.Claimed) -> None:
        state = inbox.Feeding(row.update_id)
        token = inbox.feeding.set(state)
        try:
            await self.runtime.feed(row.payload)
        except Exception as exc:  # any failure is recorded, never lost
            # Recorded as soon as the database answers: a record dropped here would leave the
            # update (and its chat's queue) waiting for the lease to run out.
            failure = exc
            if database_gone(failure):
                await persist(
                    self.stopping,
                    f"giving back update {row.update_id}",
                    lambda: self._give_back(row, failure),
                )
            else:
                await persist(
                    self.stopping,
                    f"recording the failure of update {row.update_id}",
                    lambda: self._failed(row, failure),
                )
            return
        finally:
            inbox.feeding.reset(token)
        if state.reached:
            return  # the handler marked it done in its own transaction
        # An update no handler takes (a member update, a channel post) is done too, or it
        # would block its chat's queue forever.
        await persist(self.stopping, f"closing update {row.update_id}", lambda: self._close(row))

    async def _close(self, row: inbox.Claimed) -> None:
        async with self.services.uow() as uow:
            await inbox.mark_unhandled_done(uow.session, row.update_id, uow.clock.now())
            await uow.commit()

    async def _give_back(self, row: inbox.Claimed, exc: Exception) -> None:
        """The database went away mid-update: let it be handled again, and do not count the
        attempt (a restart is not the update's fault; counting would fail it after three)."""
        log.warning(
            "update %s: database unavailable (%s); it will be handled again",
            row.update_id,
            type(exc).__name__,
        )
        async with self.services.uow() as uow:
            await inbox.give_back(uow.session, row.update_id, type(exc).__name__)
            await uow.commit()
        self.waiting[row.chat_id] += 1  # claimable again once its task has finished

    async def _failed(self, row: inbox.Claimed, exc: Exception) -> None:
        max_attempts = self.services.settings.inbox_max_attempts
        if row.attempts < max_attempts:
            log.warning(
                "update %s failed (%s), attempt %s of %s",
                row.update_id,
                type(exc).__name__,
                row.attempts,
                max_attempts,
            )
            async with self.services.uow() as uow:
                await inbox.release(uow.session, row.update_id, type(exc).__name__)
                await uow.commit()
            self.waiting[row.chat_id] += 1  # claimable again once its task has finished
            return
        from bot.handlers.router import handle_failure
        from bot.runtime.payloads import event_of_payload

        await handle_failure(self.services, event_of_payload(row.payload), exc)
