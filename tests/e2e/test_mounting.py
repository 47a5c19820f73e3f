"""fieldbot's handlers mounted into a team's existing aiogram Dispatcher / PTB Application."""

from __future__ import annotations

import asyncio
import contextlib

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import Command
from aiogram.types import Message
from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bot.bootstrap import FieldBot
from bot.fakeapi import FakeTelegram
from bot.runtime.aiogram import build_router
from bot.runtime.ptb import build_handlers
from tests.conftest import reset_database
from tests.helpers import new_staff


async def test_mounted_into_an_existing_aiogram_dispatcher(
    tg: FakeTelegram, make_settings, db_url
) -> None:
    await reset_database(db_url)
    fieldbot = FieldBot(
        make_settings(bot_token=tg.token, telegram_api_url=tg.url, http_port=0),
        receive_updates=False,
    )
    team_router = Router()

    @team_router.message(Command("ping"))
    async def ping(message: Message) -> None:
        await message.answer("pong")

    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
    dp = Dispatcher()
    dp.include_router(team_router)  # the team's own handlers first
    dp.include_router(build_router(fieldbot.on_event))
    await fieldbot.start()
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
    try:
        new = await new_staff(fieldbot.services)
        user = tg.user(first_name="Team")
        await user.send("/ping")
        await tg.wait_for(user.id, "pong")
        await user.send(f"/start {new.code}")
        await tg.wait_for(user.id, "Welcome")
    finally:
        await dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await bot.session.close()
        await fieldbot.stop()


async def test_mounted_into_an_existing_ptb_application(
    tg: FakeTelegram, make_settings, db_url
) -> None:
    await reset_database(db_url)
    fieldbot = FieldBot(
        make_settings(bot_token=tg.token, telegram_api_url=tg.url, http_port=0, bot_runtime="ptb"),
        receive_updates=False,
    )

    async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("pong")

    app = (
        Application.builder()
        .token(tg.token)
        .base_url(f"{tg.url}/bot")
        .base_file_url(f"{tg.url}/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("ping", ping))  # the team's own handlers first,
    app.add_handlers(build_handlers(fieldbot.on_event))  # then fieldbot's, in the same group
    await fieldbot.start()
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0.05)
    try:
        new = await new_staff(fieldbot.services)
        user = tg.user(first_name="Team")
        await user.send("/ping")
        await tg.wait_for(user.id, "pong")
        await user.send(f"/start {new.code}")
        await tg.wait_for(user.id, "Welcome")
        assert not [m for m in tg.messages(user.id) if "no /ping" in (m.get("text") or "")]
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        await fieldbot.stop()
