"""SQLite called in the event loop's own thread: a SQLAlchemy dialect for ``AsyncEngine``.

aiosqlite runs every cursor operation in a worker thread: a queue put, a thread wake-up, a
GIL hand-over and an event-loop wake-up on the way back, about nine times per transaction.
With WAL and ``synchronous=NORMAL`` the calls themselves take microseconds, so the hops cost
far more than the work (docs/PERFORMANCE.md measured +34 % updates per CPU-second without
them). This dialect is SQLAlchemy's own ``pysqlite`` dialect (the :mod:`sqlite3` module)
declared usable by ``AsyncEngine``: the async layer runs the synchronous ORM/Core code in a
greenlet, and that code calls :mod:`sqlite3` directly, with no await per cursor call and no
adapter in between. Its pool is the asyncio-aware queue pool, so a coroutine waiting for the
connection yields to the loop instead of blocking the thread.

Every transaction takes the write lock up front (``BEGIN IMMEDIATE``): no deadlock when a
reader later wants to write, and claims are atomic. It is issued on the DBAPI connection,
not as a statement through SQLAlchemy's engine events.

The price: while another *process* (the CLI, a second bot) holds SQLite's write lock, a call
here blocks the loop for up to ``busy_timeout``. Our own transactions never wait on each
other — one connection per process, queued by the pool — so only short CLI writes can do it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util import await_

DRIVER = "inloop"


class InLoopCursor(sqlite3.Cursor):
    """A sqlite3 cursor; the asyncio extension closes a finished result's cursor by awaiting
    ``_async_soft_close`` (its adapted drivers buffer rows there), which has nothing to do."""

    async def _async_soft_close(self) -> None:
        return None


class InLoopConnection(sqlite3.Connection):
    """A sqlite3 connection whose cursors are ``InLoopCursor`` (``make_engine`` opens it)."""

    def cursor(self, factory: Any = InLoopCursor) -> Any:
        return super().cursor(factory)


class SQLiteDialect_inloop(SQLiteDialect_pysqlite):  # SQLAlchemy's naming
    driver = DRIVER
    is_async = True  # usable by AsyncEngine: its greenlet calls sqlite3 without awaiting
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool  # one in-memory database, shared

    def get_driver_connection(self, connection: Any) -> Any:
        return connection  # the sqlite3 connection itself

    def do_begin(self, dbapi_connection: Any) -> None:
        dbapi_connection.execute("BEGIN IMMEDIATE")

    # AsyncConnection.execute() insists that a statement awaited something (its check for a
    # synchronous driver used by mistake); one await of nothing satisfies it, for microseconds.
    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        await_(_nothing())
        cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        await_(_nothing())
        cursor.execute(statement)

    def do_executemany(
        self, cursor: Any, statement: Any, parameters: Any, context: Any = None
    ) -> None:
        await_(_nothing())
        cursor.executemany(statement, parameters)


async def _nothing() -> None:
    return None


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inloop")
