"""The bare-framework baselines: the least work equivalent to fieldbot's, per update.

Each update (message or button press) costs one database write (one INSERT in its own
transaction, on the same engine set-up as fieldbot: SQLite WAL + BEGIN IMMEDIATE through
aiosqlite, or asyncpg) and one reply (sendMessage with a one-button inline keyboard, so the
simulated user has something to press next). Polling is each framework's own: aiogram's
``start_polling`` (updates handled as tasks) and PTB's ``Updater`` with
``concurrent_updates(True)`` (PTB's default handles one update at a time).

With ``PERF_BARE_ANSWER=1`` (``flows.py --kinds bare-answering``) the bare bot also answers each
button press (``answerCallbackQuery``, which Telegram asks of every bot and fieldbot does): a
second reference beside the issue's baseline, never instead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import make_engine

metadata = MetaData()
EVENTS = Table(
    "bench_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("update_id", BigInteger),
    Column("chat_id", BigInteger),
    Column("kind", String(20)),
    Column("at", DateTime(timezone=True)),
)
ANSWER = os.environ.get("PERF_BARE_ANSWER") == "1"  # also answer button presses (see above)
NEXT = {"inline_keyboard": [[{"text": "Next", "callback_data": "next"}]]}


async def prepare(url: str) -> AsyncEngine:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine


async def write(engine: AsyncEngine, update_id: int, chat_id: int, kind: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(EVENTS).values(
                update_id=update_id, chat_id=chat_id, kind=kind, at=datetime.now(UTC)
            )
        )


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_aiogram(token: str, api_url: str, db_url: str) -> None:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, Update

    engine = await prepare(db_url)
    bot = Bot(token=token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    markup = InlineKeyboardMarkup.model_validate(NEXT)
    dp = Dispatcher()

    @dp.message()
    async def on_message(message: Message, event_update: Update) -> None:
        await write(engine, event_update.update_id, message.chat.id, "message")
        await bot.send_message(message.chat.id, "ok", reply_markup=markup)

    @dp.callback_query()
    async def on_query(query: CallbackQuery, event_update: Update) -> None:
        chat_id = query.message.chat.id if query.message else query.from_user.id
        await write(engine, event_update.update_id, chat_id, "button")
        if ANSWER:
            await query.answer()
        await bot.send_message(chat_id, "ok", reply_markup=markup)

    await bot.delete_webhook()
    stop = _stop_event()
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=25))
    print("READY -", flush=True)
    await stop.wait()
    await dp.stop_polling()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError, RuntimeError):
        await asyncio.wait_for(polling, 10)
    await bot.session.close()
    await engine.dispose()


async def run_ptb(token: str, api_url: str, db_url: str) -> None:
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
    from telegram.ext import (
        Application,
        CallbackQueryHandler,
        ContextTypes,
        MessageHandler,
        filters,
    )

    engine = await prepare(db_url)
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Next", callback_data="next")]])

    async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        await write(engine, update.update_id, message.chat.id, "message")
        await context.bot.send_message(message.chat.id, "ok", reply_markup=markup)

    async def on_query(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        chat_id = query.message.chat.id if query.message else query.from_user.id
        await write(engine, update.update_id, chat_id, "button")
        if ANSWER:
            await query.answer()
        await context.bot.send_message(chat_id, "ok", reply_markup=markup)

    builder = (
        Application.builder()
        .token(token)
        .base_url(f"{api_url}/bot")
        .base_file_url(f"{api_url}/file/bot")
        .concurrent_updates(True)
        .job_queue(None)
    )
    if os.environ.get("PERF_BARE_TRANSPORT") == "aiohttp":  # the transport fieldbot's PTB uses
        from bot.runtime.ptb_aiohttp import AiohttpRequest

        builder = builder.request(AiohttpRequest()).get_updates_request(
            AiohttpRequest(connections=1)
        )
    app: Any = builder.build()
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, on_message))
    app.add_handler(CallbackQueryHandler(on_query))
    stop = _stop_event()
    async with app:
        await app.bot.delete_webhook()
        await app.start()
        await app.updater.start_polling(poll_interval=0.0, timeout=25)
        print("READY -", flush=True)
        await stop.wait()
        await app.updater.stop()
        await app.stop()
    await engine.dispose()
