"""Engine construction: SQLite in WAL mode with immediate transactions, or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.db import sqlite_inloop

# How long a SQLite call waits for another process's write lock (the CLI's short writes).
# The call blocks the event loop meanwhile, so keep it short; the caller retries the update.
BUSY_TIMEOUT = 5.0


def async_url(url: str) -> str:
    """``sqlite:///`` and ``postgresql://`` URLs with the async drivers we ship."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite every transaction takes the write lock up front."""
    url = async_url(url)
    if url.startswith("sqlite"):
        kwargs.setdefault("hide_parameters", True)  # no personal data in error messages
        # One connection: SQLite has one writer anyway, and queueing in the pool (asyncio)
        # beats SQLite's busy-wait sleeps. Other processes (the CLI) still get busy_timeout.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 60)
        # sqlite3 in the loop's thread, not a hop to aiosqlite's worker per call (see module).
        inloop = make_url(url).set(drivername=f"sqlite+{sqlite_inloop.DRIVER}")
        connect_args = {
            "timeout": BUSY_TIMEOUT,
            "check_same_thread": False,  # the pool may close it from the garbage collector
            "factory": sqlite_inloop.InLoopConnection,
        }
        kwargs.setdefault("connect_args", connect_args)
        engine = create_async_engine(inloop, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # BEGIN IMMEDIATE is the dialect's
            cursor = dbapi_connection.cursor()
            if ":memory:" not in url:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            cursor.close()

        return engine
    kwargs.setdefault("hide_parameters", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def dialect_of(session: AsyncSession) -> str:
    """``"sqlite"`` or ``"postgresql"``: the database a session talks to (for the few
    statements that differ, such as upserts and ``FOR UPDATE SKIP LOCKED``)."""
    return session.bind.dialect.name if session.bind is not None else "sqlite"


# Each dialect's ``insert`` with ``on_conflict_do_nothing`` / ``on_conflict_do_update`` (Core's
# own ``insert`` has neither), by ``dialect_of``'s name: for statements built once per dialect.
CONFLICT_INSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def conflict_insert(session: AsyncSession) -> Any:
    """The ``insert`` with ON CONFLICT clauses of the session's database."""
    return CONFLICT_INSERTS[dialect_of(session)]


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    inloop = engine.dialect.driver == sqlite_inloop.DRIVER
    session_class = sqlite_inloop.InLoopSession if inloop else AsyncSession
    return async_sessionmaker(engine, class_=session_class, expire_on_commit=False, autoflush=True)
