"""SQLite called in the event loop's own thread, behind SQLAlchemy's aiosqlite dialect.

aiosqlite runs every cursor operation in a worker thread: a queue put, a thread wake-up, a
GIL hand-over and an event-loop wake-up on the way back, about nine times per transaction.
With WAL and ``synchronous=NORMAL`` the calls themselves take microseconds, so the hops cost
far more than the work (docs/PERFORMANCE.md measured +34 % updates per CPU-second without
them). This module offers the part of ``aiosqlite.Connection`` that SQLAlchemy's dialect uses,
calling :mod:`sqlite3` directly; ``make_engine`` passes it as ``async_creator``.

The price: while another *process* (the CLI, a second bot) holds SQLite's write lock, a call
here blocks the loop for up to ``busy_timeout``. Our own transactions never wait on each
other — one connection per process, queued by the pool — so only short CLI writes can do it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any


class _Immediate:
    """Stands in for aiosqlite's queue to its worker thread: runs the function at once."""

    @staticmethod
    def put_nowait(item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class InLoopCursor:
    """An ``aiosqlite.Cursor`` look-alike whose coroutines complete without suspending."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InLoopCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = None) -> InLoopCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InLoopCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size or self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class InLoopConnection:
    """The part of ``aiosqlite.Connection`` that SQLAlchemy's aiosqlite dialect uses."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn
        self._tx = _Immediate()

    def cursor(self) -> InLoopCursor:
        return InLoopCursor(self._conn.cursor())

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()
        self._connection = None

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    def stop(self) -> None:
        self._conn.close()
        self._connection = None


def creator(path: str, *, timeout: float) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine`` opening ``path`` in the loop's thread."""

    async def connect() -> InLoopConnection:
        # check_same_thread=False: the pool may close a connection from the garbage collector.
        return InLoopConnection(sqlite3.connect(path, timeout=timeout, check_same_thread=False))

    return connect
