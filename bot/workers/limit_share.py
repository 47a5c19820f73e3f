"""Telegram's limits, shared by the outbox senders of several worker processes.

Each running sender has a row in ``live_senders``. Every ``HEARTBEAT`` seconds, inside its
claim transaction, it refreshes its row, counts the senders seen within ``ALIVE`` and takes
that part of the overall limit (two workers: half each), and the chats of its part
(``abs(chat_id) % senders``, by its place among their names): each chat's messages go through
one sender, whose per-chat bucket keeps the per-chat limit. A newcomer that finds others waits until
they have counted it; a graceful stop deletes the row at once; a crashed sender's row goes
stale after ``ALIVE`` (or at once, when a sender on the same host finds its process gone).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.engine import conflict_insert, dialect_of
from bot.db.models import LiveSender

HEARTBEAT = 2.0  # seconds between a sender's reports
ALIVE = timedelta(seconds=3 * HEARTBEAT)  # not seen for this long: gone (crashed)
SENDERS = cast(Table, LiveSender.__table__)
LOCK = 0x6669656C64626F74  # PostgreSQL advisory lock key of the heartbeats

_RUNNING: set[str] = set()  # the names of the senders running in this process


def _running_here(name: str, pid: int) -> bool:
    """Whether the sender ``name`` of process ``pid`` of this host runs."""
    if pid == os.getpid():
        return name in _RUNNING  # else: this process's earlier life (a new name every start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class LimitShare:
    """One sender's part of the overall limit."""

    def __init__(self) -> None:
        self.name = f"{socket.gethostname()[:50]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.senders = 1  # running senders, this one included, as of the last heartbeat
        self.part = 0  # this sender's place among them: it sends to the chats of its part
        # When the senders change, the part it had is kept for a while too: better that a
        # chat is served by two senders for a moment than by none until they all have beaten.
        self.before = (1, 0)
        self.before_until = 0.0
        self.next_beat = 0.0  # time.monotonic() of the next heartbeat
        self.hold_until = 0.0  # a newcomer sends once the others have counted it

    def join(self) -> None:
        _RUNNING.add(self.name)

    def due(self) -> bool:
        return self.name in _RUNNING and time.monotonic() >= self.next_beat

    def holding(self) -> bool:
        return time.monotonic() < self.hold_until

    async def beat(self, session: AsyncSession, now: datetime) -> int:
        """In the caller's transaction: report this sender running; how many are."""
        # One beat at a time (SQLite: its write lock), or two senders starting together
        # would each count itself alone.
        if dialect_of(session) == "postgresql":
            await session.execute(select(func.pg_advisory_xact_lock(LOCK)))
        first = self.next_beat == 0.0
        if first:
            await self._forget_dead_here(session)
        seen = conflict_insert(session)(SENDERS).values(name=self.name, seen_at=now)
        await session.execute(
            seen.on_conflict_do_update(index_elements=["name"], set_={"seen_at": now})
        )
        await session.execute(delete(SENDERS).where(SENDERS.c.seen_at < now - 10 * ALIVE))
        alive = select(SENDERS.c.name).where(SENDERS.c.seen_at >= now - ALIVE)
        names = sorted(await session.scalars(alive))
        was = (self.senders, self.part)
        self.senders = max(1, len(names))
        self.part = names.index(self.name) if self.name in names else 0
        if not first and was != (self.senders, self.part):
            self.before, self.before_until = was, time.monotonic() + 2 * HEARTBEAT
        if first and self.senders > 1:
            # Until the others count this one they send at their old part: start once they
            # have (a heartbeat, and as long again for a round under way to reach theirs).
            self.hold_until = time.monotonic() + 2 * HEARTBEAT
        self.next_beat = time.monotonic() + HEARTBEAT
        return self.senders

    def chats(self) -> dict[str, int]:
        """The claim's parameters for the chats of this sender's part (and, for a while after
        the senders changed, of the part it had): ``abs(chat_id) % parts == part``."""
        before = self.before if time.monotonic() < self.before_until else None
        parts_before, part_before = before or (self.senders, self.part)
        return {
            "parts": self.senders,
            "part": self.part,
            "parts_before": parts_before,
            "part_before": part_before,
        }

    async def _forget_dead_here(self, session: AsyncSession) -> None:
        """The senders of this host whose process is gone (killed, crashed; or this process's
        own earlier life, restarted under the same pid in a container) are not running: not
        waiting ALIVE for their rows to go stale spares a restart's first messages."""
        host = self.name.rsplit(":", 2)[0]
        here = select(SENDERS.c.name).where(SENDERS.c.name.startswith(f"{host}:", autoescape=True))
        dead = []
        for name in await session.scalars(here):
            pid = name.rsplit(":", 2)[1]
            if pid.isdigit() and not _running_here(name, int(pid)):
                dead.append(name)
        if dead:
            await session.execute(delete(SENDERS).where(SENDERS.c.name.in_(dead)))

    def quit(self) -> None:
        _RUNNING.discard(self.name)

    async def leave(self, session: AsyncSession) -> None:
        """After ``quit``, in the caller's transaction: the others take this part at their
        next heartbeat."""
        await session.execute(delete(SENDERS).where(SENDERS.c.name == self.name))
