"""Prototype fixes, applied at run time inside a benchmark bot process only (PERF_PATCHES).

A place to measure a proposed change to ``bot/`` before anyone makes it: add a function
``_<name>`` that monkey-patches the bot process, list the name in ``PATCHES``, and run
``benchmarks/flows.py --ablation`` (each patch alone, all together, as is, and bare, back to
back) or ``--patches <name>``. ``apply`` refuses unknown names loudly rather than measuring
something else.

The prototypes measured in docs/PERFORMANCE.md (sender_batch, lean_handle, no_selectin,
raw_poll, raw_send, inloop_sqlite, gc_freeze, sender_paced) were adopted into ``bot/`` on
2026-11-26; ``git log -- benchmarks/perfkit/patches.py`` has their code. ``raw_core`` (the
seventh round) measures a driver-level data layer for the Core part of an update's path and
is not meant for adoption.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

PATCHES: tuple[str, ...] = ("raw_core",)


def _raw_core() -> None:
    """SQLite only: the Core statements every update runs — the inbox's "done", the outbox
    insert, the conversation step (read and upsert) — straight on the session's sqlite3
    connection, past SQLAlchemy's engine; the same SQL, the same values as SQLAlchemy binds
    them. What a driver-level data layer for that part of the path would save; the ORM loads
    (user, dispatch) and the unit of work's flush and commit stay as they are."""
    from bot.services import conversations, inbox, outbox
    from bot.services.conversations import Step

    def stamp(value: datetime | None) -> str | None:  # SQLAlchemy's SQLite DATETIME format
        if value is None:
            return None
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def connection(session: Any) -> Any:
        """The transaction's sqlite3 connection, or None where the session would have to
        wait for one (then SQLAlchemy does the statement, as without the patch)."""
        if not session._direct():
            return None
        return session.sync_session.connection().connection.driver_connection

    take, flush = inbox.take, outbox.OutboxWriter.flush
    current, enter = conversations.current, conversations.enter

    async def raw_take(session: Any, update_id: int, now: datetime) -> bool:
        raw = connection(session)
        if raw is not None:
            done = raw.execute(
                "UPDATE inbox SET status='done', locked_until=NULL, done_at=?"
                " WHERE update_id=? AND status='pending'",
                (stamp(now), update_id),
            )
            if done.rowcount:
                return True
        return await take(session, update_id, now)

    async def raw_flush(self: Any) -> None:
        raw = connection(self.uow.session) if self.rows else None
        if raw is None:
            await flush(self)
            return
        rows, self.rows = self.rows, []
        raw.executemany(
            "INSERT INTO outbox (chat_id, method, payload, priority, status, attempts,"
            " not_before, created_at, ref, edit_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r["chat_id"],
                    r["method"],
                    json.dumps(r["payload"]),
                    r["priority"],
                    r["status"],
                    r["attempts"],
                    stamp(r["not_before"]),
                    stamp(r["created_at"]),
                    r["ref"],
                    r["edit_of"],
                )
                for r in rows
            ],
        )

    async def raw_current(uow: Any, user_id: int) -> Step | None:
        raw = connection(uow.session)
        if raw is None:
            return await current(uow, user_id)
        row = raw.execute(
            "SELECT flow, step, data FROM conversations WHERE user_id=?", (user_id,)
        ).fetchone()
        return None if row is None else Step(row[0], row[1], json.loads(row[2]))

    async def raw_enter(uow: Any, user_id: int, flow: str, step: str, **data: Any) -> None:
        raw = connection(uow.session)
        if raw is None:
            await enter(uow, user_id, flow, step, **data)
            return
        raw.execute(
            "INSERT INTO conversations (user_id, flow, step, data, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET flow=excluded.flow,"
            " step=excluded.step, data=excluded.data, updated_at=excluded.updated_at",
            (user_id, flow, step, json.dumps(data), stamp(uow.clock.now())),
        )

    inbox.take = raw_take  # type: ignore[assignment]
    outbox.OutboxWriter.flush = raw_flush  # type: ignore[method-assign]
    conversations.current = raw_current  # type: ignore[assignment]
    conversations.enter = raw_enter  # type: ignore[assignment]


def apply(names: list[str]) -> None:
    for name in names:
        if name not in PATCHES:
            known = ", ".join(PATCHES) or "none"
            raise SystemExit(f"unknown patch {name!r}; known: {known}")
        globals()[f"_{name}"]()
