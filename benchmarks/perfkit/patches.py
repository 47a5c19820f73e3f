"""Prototype fixes, applied at run time inside a benchmark bot process only (PERF_PATCHES).

These are NOT part of fieldbot: each one sketches a change proposed in docs/PERFORMANCE.md
so that the benchmark can measure its gain before anyone edits bot/. They reach into private
details of the current code and may stop applying when that code changes; ``apply`` says so
loudly rather than measuring something else.

* ``sender_batch``  – OutboxSender: record the outcome of a whole claimed batch in one
  transaction (one executemany UPDATE) instead of one transaction per message.
* ``lean_handle``   – router.handle: an update fed from the inbox is already stored and
  claimed, so skip the INSERT … ON CONFLICT and the is_done SELECT; mark it done with
  ``UPDATE … WHERE status = 'pending'`` and roll back if that touched no row.
* ``no_selectin``   – User.qualifications: load on access instead of a second SELECT
  (selectin) after every User loaded.
* ``raw_poll``      – aiogram runtime: getUpdates as raw JSON (the updates are stored as JSON
  anyway) instead of parsing them into aiogram objects and dumping them back.
* ``inloop_sqlite`` – SQLite: call sqlite3 in the event loop's thread (microsecond calls)
  instead of a hop to aiosqlite's worker thread and back for every cursor operation.
* ``gc_freeze``     – after start-up, ``gc.collect(); gc.freeze()``: the long-lived start-up
  objects are no longer traversed by every full garbage collection.
* ``sender_paced``  – OutboxSender: the global bucket at 97 % of SEND_GLOBAL_RATE with a
  burst of 1 (the stock bucket saves up a full second's worth, so the first second after a
  pause can send twice the limit, and sending exactly at the limit trips Telegram's sliding
  window on jitter), and claims of ~0.2 s of sending instead of 50 rows (an urgent message
  committed during a paced batch of 50 waits for the whole batch, ~1.7 s, before its claim).
* ``raw_send``      – aiogram runtime: outbox rows are Bot API JSON already; POST them as
  JSON with the runtime's aiohttp session instead of validating them into aiogram method
  objects and parsing the answer into aiogram types.
"""

from __future__ import annotations

import json
from typing import Any

PATCHES = ("sender_batch", "lean_handle", "no_selectin", "raw_poll", "raw_send")


def apply(names: list[str]) -> None:
    for name in names:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")
        globals()[f"_{name}"]()


def _sender_batch() -> None:
    from sqlalchemy import update

    from bot.db.models import Outbox
    from bot.workers import sender as mod

    cls = mod.OutboxSender
    original_run_once = cls.run_once

    async def _finish(self: Any, row: Any, values: dict[str, object]) -> None:
        self._done.append({"id": row.id, "locked_until": None, **values})

    async def run_once(self: Any) -> int:
        if not hasattr(self, "_done"):
            self._done = []
        count = await original_run_once(self)
        done, self._done = self._done, []
        if done:
            groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
            for values in done:
                groups.setdefault(tuple(sorted(values)), []).append(values)
            async with self.services.uow() as uow:
                for rows in groups.values():
                    await uow.session.execute(update(Outbox), rows)
                await uow.commit()
        return count

    cls._finish = _finish
    cls.run_once = run_once


def _lean_handle() -> None:
    from sqlalchemy import update

    import bot.bootstrap
    from bot.core.enums import InboxStatus
    from bot.core.events import Kind
    from bot.db.models import Inbox
    from bot.handlers import router
    from bot.handlers.context import Ctx
    from bot.i18n import locale_for
    from bot.services.errors import DomainError
    from bot.services.staff import user_by_telegram

    async def handle(services: Any, event: Any) -> None:
        async with services.uow() as uow:
            session = uow.session
            actor = await user_by_telegram(uow, event.telegram_id)
            locale = (actor.locale if actor else None) or locale_for(
                event.language, services.settings.default_locale
            )
            ctx = Ctx(uow=uow, event=event, actor=actor, locale=locale)
            try:
                async with session.begin_nested():
                    await router.route(ctx)
            except DomainError as refusal:
                ctx.answered = False
                if event.kind is Kind.BUTTON:
                    await ctx.answer(refusal.template, alert=True, **refusal.params)
                else:
                    await ctx.reply(refusal.template, **refusal.params)
            await ctx.answer()
            done = await session.execute(
                update(Inbox)
                .where(
                    Inbox.update_id == event.update_id,
                    Inbox.status == InboxStatus.PENDING.value,
                )
                .values(status=InboxStatus.DONE.value, done_at=uow.clock.now(), locked_until=None)
            )
            if not done.rowcount:
                return  # handled already (a redelivery): everything above rolls back
            await uow.commit()

    bot.bootstrap.handle = handle  # what make_runtime's on_event calls


def _no_selectin() -> None:
    from sqlalchemy.orm import configure_mappers

    from bot.db.models import User

    configure_mappers()
    prop = User.__mapper__.get_property("qualifications")
    prop.lazy = "select"
    prop.strategy_key = (("lazy", "select"),)
    prop.strategy = prop._get_strategy(prop.strategy_key)
    User.__mapper__._post_configure_properties()


def _raw_session(runtime: Any) -> tuple[Any, str]:
    session = runtime.bot.session
    api = session.api
    return session, api.api_url(token=runtime.bot.token, method="")


def _raw_poll() -> None:
    from bot.runtime import aiogram as mod
    from bot.runtime.base import TransientSendError

    async def get_updates(self: Any, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        session, base = _raw_session(self)
        client = await session.create_session()
        params: dict[str, Any] = {"timeout": timeout}
        if offset is not None:
            params["offset"] = offset
        try:
            async with client.post(base + "getUpdates", json=params) as resp:
                body = await resp.json(loads=json.loads)
        except Exception as exc:
            raise TransientSendError(type(exc).__name__) from None
        if not body.get("ok"):
            raise TransientSendError(str(body.get("description")))
        return list(body["result"])

    mod.AiogramRuntime.get_updates = get_updates


def _raw_send() -> None:
    from bot.runtime import aiogram as mod
    from bot.runtime.base import (
        NotModified,
        PermanentSendError,
        RetryAfter,
        TransientSendError,
    )

    async def call(self: Any, method: str, payload: dict[str, Any]) -> Any:
        session, base = _raw_session(self)
        client = await session.create_session()
        try:
            async with client.post(base + method, json=payload) as resp:
                status = resp.status
                body = await resp.json(loads=json.loads, content_type=None)
        except (TimeoutError, OSError, ValueError) as exc:
            raise TransientSendError(type(exc).__name__) from None
        except Exception as exc:
            raise TransientSendError(type(exc).__name__) from None
        if body.get("ok"):
            result = body.get("result")
            if isinstance(result, dict) and "message_id" in result:
                return {"message_id": result["message_id"]}
            return result
        description = str(body.get("description", ""))
        if status == 429:
            retry = (body.get("parameters") or {}).get("retry_after", 1)
            raise RetryAfter(float(retry))
        if status >= 500:
            raise TransientSendError(description)
        if status == 403:
            raise PermanentSendError(description, blocked=True)
        if "not modified" in description:
            raise NotModified(description)
        raise PermanentSendError(description)

    mod.AiogramRuntime.call = call


# ---- inloop_sqlite: sqlite3 called in the event loop's thread, not through aiosqlite's worker


class _Immediate:
    """Stands in for aiosqlite's queue to its worker thread: runs the function at once."""

    @staticmethod
    def put_nowait(item: tuple[Any, Any]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class InLoopCursor:
    def __init__(self, cursor: Any) -> None:
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

    async def executemany(self, sql: str, parameters: Any) -> InLoopCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Any:
        return self._cursor.fetchmany(size or self._cursor.arraysize)

    async def fetchall(self) -> Any:
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
        return int(self._cursor.rowcount)

    @property
    def lastrowid(self) -> Any:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return int(self._cursor.arraysize)

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class InLoopConnection:
    """The part of ``aiosqlite.Connection`` SQLAlchemy's aiosqlite dialect uses, run inline."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._connection = conn
        self._tx = _Immediate()

    def cursor(self) -> InLoopCursor:
        return InLoopCursor(self._conn.cursor())

    @property
    def isolation_level(self) -> Any:
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


def _inloop_sqlite() -> None:
    import sqlite3

    from sqlalchemy.engine import make_url

    from bot.db import engine as mod

    original = mod.make_engine

    def make_engine(url: str, **kwargs: Any) -> Any:
        full = mod.async_url(url)
        if full.startswith("sqlite") and ":memory:" not in full:
            path = make_url(full).database

            async def creator() -> InLoopConnection:
                return InLoopConnection(sqlite3.connect(path, timeout=30, check_same_thread=False))

            kwargs.setdefault("async_creator", creator)
        return original(url, **kwargs)

    mod.make_engine = make_engine
    import bot.bootstrap

    bot.bootstrap.make_engine = make_engine  # imported by name there


def _gc_freeze() -> None:
    import gc

    from bot.bootstrap import FieldBot

    original = FieldBot.start

    async def start(self: Any) -> None:
        await original(self)
        gc.collect()
        gc.freeze()  # start-up objects (modules, schemas, templates) leave the collector's view

    FieldBot.start = start


def _sender_paced() -> None:
    from bot.workers import sender as mod

    cls = mod.OutboxSender
    original_init = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        rate = self.services.settings.send_global_rate
        # A hair under the limit, no saved-up burst: never 31 in Telegram's sliding second.
        self.global_bucket = mod.TokenBucket(rate * 0.97, 1)
        # Claim about 0.2 s of sending at a time, so an urgent row waits at most that long.
        self.batch = max(1, min(self.batch, int(rate / 5)))

    cls.__init__ = __init__


PATCHES = (*PATCHES, "inloop_sqlite", "gc_freeze", "sender_paced")
