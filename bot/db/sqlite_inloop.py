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

``InLoopSession`` goes one step further. ``AsyncSession`` runs every call (``execute``,
``get``, ``flush``, ``commit`` …) in a greenlet of its own, so that the driver may await
I/O. Here the only thing that can await is the pool's checkout, while another unit of work
holds the connection; so when the session holds its connection, or the pool has it idle, a
call runs the synchronous session directly — about 25 µs less per call (docs/PERFORMANCE.md).
A unit of work that must wait for the connection waits as with ``AsyncSession``; every other
engine gets ``AsyncSession`` itself (``make_sessionmaker``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, Connection, Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_, immutabledict
from sqlalchemy.util.concurrency import in_greenlet

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
    # InLoopSession's direct calls run outside any greenlet: nothing to satisfy there.
    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        _touch_loop()
        cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        _touch_loop()
        cursor.execute(statement)

    def do_executemany(
        self, cursor: Any, statement: Any, parameters: Any, context: Any = None
    ) -> None:
        _touch_loop()
        cursor.executemany(statement, parameters)


def _touch_loop() -> None:
    if in_greenlet():
        await_(_nothing())


async def _nothing() -> None:
    return None


class _HoldingSession(Session):
    """The synchronous session behind ``InLoopSession``; knows whether it holds a connection."""

    holds_connection = False


@event.listens_for(_HoldingSession, "after_begin")
def _held(session: _HoldingSession, _tx: SessionTransaction, _conn: Connection) -> None:
    session.holds_connection = True


@event.listens_for(_HoldingSession, "after_transaction_end")
def _released(session: _HoldingSession, tx: SessionTransaction) -> None:
    if tx.parent is None:  # the outermost transaction: its connection went back to the pool
        session.holds_connection = False


_PREBUFFER = immutabledict({"prebuffer_rows": True})  # as AsyncSession executes
_NO_OPTIONS: immutabledict[str, Any] = immutabledict()


class InLoopSession(AsyncSession):
    """``AsyncSession`` for the in-loop dialect: once its connection is held, a call runs the
    synchronous session directly instead of in a greenlet of its own (see the module)."""

    sync_session_class = _HoldingSession
    sync_session: _HoldingSession

    def _direct(self) -> bool:
        """Nothing this session calls can await: it holds its connection, or the pool has
        the connection idle (opening one awaits a lock of the pool's first-connect events)."""
        if self.sync_session.holds_connection:
            return True
        pool_ = getattr(self.sync_session.bind, "pool", None)
        return isinstance(pool_, pool.QueuePool) and pool_.checkedin() > 0

    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = _NO_OPTIONS,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Result[Any]:
        result: Result[Any]
        if not self._direct():
            result = await super().execute(
                statement,
                params,
                execution_options=execution_options,
                bind_arguments=bind_arguments,
                **kw,
            )
            return result
        options = _PREBUFFER.union(execution_options) if execution_options else _PREBUFFER
        result = self.sync_session.execute(
            statement,
            params,
            execution_options=options,
            bind_arguments=bind_arguments,
            **kw,
        )
        return result

    async def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        """``execute`` and its first column of the first row (both ways, as ``execute``)."""
        return (await self.execute(statement, params, **kw)).scalar()

    async def get(self, entity: Any, ident: Any, **kw: Any) -> Any:
        if not self._direct():
            return await super().get(entity, ident, **kw)
        return self.sync_session.get(entity, ident, **kw)

    async def flush(self, objects: Sequence[Any] | None = None) -> None:
        if not self._direct():
            await super().flush(objects)
            return
        self.sync_session.flush(objects)

    async def commit(self) -> None:
        if not self._direct():
            await super().commit()
            return
        self.sync_session.commit()

    # Ending a transaction hands the connection back to the pool: that never waits.
    async def rollback(self) -> None:
        self.sync_session.rollback()

    async def close(self) -> None:
        self.sync_session.close()


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inloop")
