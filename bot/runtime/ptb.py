"""The python-telegram-bot 22 runtime: PTB objects in, our Events out; our Bot API calls by PTB.

The same contract as :mod:`bot.runtime.aiogram`, and the same Event for the same update (pinned by
``tests/runtime/test_events_parity.py``). Four PTB habits are worked around here:

* ``Application.process_update`` hands a handler's exception to the error handlers (or, with
  none, logs it) and returns normally; and it refuses to run before ``initialize()``, which
  calls getMe. Our inbox must see the exception to retry or record the update, so :meth:`feed`
  matches the update against our handlers itself (PTB's own ``check_update`` /
  ``handle_update``, first match wins as in one handler group) and lets exceptions propagate.
* ``Bot.get_updates`` returns parsed objects whose ``to_dict()`` adds PTB's defaults
  (``"delete_chat_photo": False`` ...) and enum members; polling stores the exact JSON Telegram
  sent instead, as the webhook does.
* Our outbox holds Bot API method names and JSON payloads. The public
  ``Bot.do_api_request("sendMessage", ...)`` sends those, but warns on every method PTB knows
  ("Please use 'Bot.sendMessage'"), and a warning filter does not survive pytest's per-test
  reset; so we call ``Bot._post`` — the one funnel every PTB method (and do_api_request) uses,
  stable since PTB 20 — and the version pin (<23) plus tests/runtime guard it.
* Time periods (``retry_after``, ``live_period``, ``duration``) are ``int`` or ``timedelta``
  depending on ``PTB_TIMEDELTA``, and reading them warns; :func:`_seconds` takes either.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from typing import Any

from telegram import CallbackQuery, InputFile, Message, Update
from telegram import error as tg_error
from telegram.ext import (
    Application,
    BaseHandler,
    CallbackContext,
    CallbackQueryHandler,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bot.core.events import Event, Kind
from bot.runtime.base import (
    EventHandler,
    NotModified,
    PermanentSendError,
    RetryAfter,
    SendError,
    TransientSendError,
)
from bot.runtime.events import command_parts
from bot.runtime.ptb_aiohttp import AiohttpRequest
from bot.runtime.uploads import split_uploads

POLL_READ_MARGIN = 10  # seconds a getUpdates read may take beyond its long-poll timeout
# PTB waits 5 s for an answer by default, aiogram 60 s. A call given up on may still have been
# delivered, and the sender then sends it again: wait as long as aiogram does.
CALL_READ_TIMEOUT = 60.0


def _seconds(read: Callable[[], object]) -> float:
    """A PTB time period (int, float or timedelta, by ``PTB_TIMEDELTA``) in seconds, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = read()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    return 0.0


def message_event(message: Message, update_id: int, *, edited: bool = False) -> Event:
    """A PTB Message → our Event (field for field what the aiogram runtime builds)."""
    user = message.from_user
    base: dict[str, Any] = {
        "update_id": update_id,
        "telegram_id": user.id if user else message.chat.id,
        "chat_id": message.chat.id,
        "private": message.chat.type == "private",
        "language": user.language_code if user else None,
        "first_name": (user.first_name if user else "") or "",
        "message_id": message.message_id,
        "edited": edited,
    }
    location = message.location
    if location is not None:
        return Event(
            kind=Kind.LOCATION,
            latitude=location.latitude,
            longitude=location.longitude,
            live=bool(_seconds(lambda: location.live_period)) or edited,
            **base,
        )
    if message.contact is not None:
        return Event(
            kind=Kind.CONTACT,
            contact_phone=message.contact.phone_number,
            contact_user_id=message.contact.user_id,
            **base,
        )
    if message.photo:
        best = message.photo[-1]  # Telegram lists the sizes smallest first
        return Event(
            kind=Kind.PHOTO,
            file_ids=(best.file_id,),
            file_size=best.file_size or 0,
            text=message.caption or "",
            **base,
        )
    voice = message.voice
    if voice is not None:
        return Event(
            kind=Kind.VOICE,
            file_ids=(voice.file_id,),
            file_size=voice.file_size or 0,
            duration=int(_seconds(lambda: voice.duration)),
            **base,
        )
    if message.document is not None:
        return Event(
            kind=Kind.DOCUMENT,
            file_ids=(message.document.file_id,),
            file_size=message.document.file_size or 0,
            mime_type=message.document.mime_type or "",
            text=message.caption or "",
            **base,
        )
    if message.text is not None:
        if edited:
            return Event(kind=Kind.OTHER, **base)
        parts = command_parts(message.text)
        if parts is not None:
            return Event(
                kind=Kind.COMMAND, text=message.text, command=parts[0], args=parts[1], **base
            )
        return Event(kind=Kind.TEXT, text=message.text, **base)
    return Event(kind=Kind.OTHER, **base)


def callback_event(query: CallbackQuery, update_id: int) -> Event:
    """A PTB CallbackQuery → our Event."""
    message = query.message  # may be an InaccessibleMessage: it still has chat and message_id
    chat_id = message.chat.id if message is not None else query.from_user.id
    private = message.chat.type == "private" if message is not None else True
    data = query.data
    return Event(
        update_id=update_id,
        kind=Kind.BUTTON,
        telegram_id=query.from_user.id,
        chat_id=chat_id,
        private=private,
        language=query.from_user.language_code,
        first_name=query.from_user.first_name or "",
        data=data if isinstance(data, str) else "",
        callback_id=query.id,
        message_id=message.message_id if message is not None else None,
    )


def build_handlers(handle: EventHandler) -> list[BaseHandler[Update, Any, None]]:
    """fieldbot as PTB handlers: ``application.add_handlers(build_handlers(handle), group=...)``.

    Mutually exclusive, so they fit in one handler group. Inside an ordinary PTB Application an
    exception from ``handle`` goes to that application's error handlers, as PTB does.
    """

    async def on_message(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> None:
        assert update.message is not None
        await handle(message_event(update.message, update.update_id))

    async def on_edited(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> None:
        assert update.edited_message is not None
        await handle(message_event(update.edited_message, update.update_id, edited=True))

    async def on_query(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> None:
        assert update.callback_query is not None
        await handle(callback_event(update.callback_query, update.update_id))

    return [
        # aiogram's ``router.message()``: new messages only (not channel or business posts)
        MessageHandler(filters.UpdateType.MESSAGE, on_message),
        # aiogram's ``router.edited_message(F.location)``: a live location moving
        MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.LOCATION, on_edited),
        CallbackQueryHandler(on_query),
    ]


def send_error(exc: tg_error.TelegramError) -> SendError:
    """A PTB error → ours. NetworkError is the base of BadRequest and TimedOut: order matters."""
    description = exc.message
    if isinstance(exc, tg_error.RetryAfter):
        return RetryAfter(_seconds(lambda: exc.retry_after))
    if isinstance(exc, tg_error.Forbidden):
        return PermanentSendError(description, blocked=True)
    if isinstance(exc, tg_error.BadRequest):
        if "not modified" in description.lower():
            return NotModified(description)
        return PermanentSendError(description)
    if isinstance(exc, tg_error.NetworkError):  # TimedOut, 5xx, connection trouble
        return TransientSendError(f"{type(exc).__name__}: {description}")
    # InvalidToken (401/404, also an unknown method), EndPointNotFound, ChatMigrated, Conflict
    return PermanentSendError(f"{type(exc).__name__}: {description}")


def with_uploads(payload: dict[str, Any]) -> dict[str, Any]:
    """``document_b64`` + ``document_name`` (bytes kept in the outbox row) → an upload."""
    rest, files = split_uploads(payload)
    for field, (name, data) in files.items():
        rest[field] = InputFile(data, filename=name)
    return rest


class PTBRuntime:
    """Runs fieldbot on python-telegram-bot: our inbox feeds its handlers; our sender its Bot."""

    name = "ptb"

    def __init__(self, *, token: str, api_url: str, handle: EventHandler) -> None:
        self.api_url = api_url
        self.application = (
            Application.builder()
            .token(token)
            .base_url(f"{api_url}/bot")
            .base_file_url(f"{api_url}/file/bot")
            .updater(None)  # we poll ourselves: into the inbox first, then the next offset
            .job_queue(None)  # deadlines are database rows
            # aiohttp, not httpx, under PTB's request layer (a quarter of the CPU per call)
            .request(AiohttpRequest(read_timeout=CALL_READ_TIMEOUT))
            .get_updates_request(AiohttpRequest(connections=1))
            .build()
        )
        self.handlers = build_handlers(handle)
        self.application.add_handlers(self.handlers)

    @property
    def bot(self) -> ExtBot[None]:
        return self.application.bot

    async def start(self) -> None:
        """Initialise the application (its HTTP clients, and the bot user through getMe)."""
        try:
            await self.application.initialize()
        except tg_error.TelegramError as exc:
            await self.bot.shutdown()
            raise send_error(exc) from None

    async def stop(self) -> None:
        await self.application.shutdown()
        await self.bot.shutdown()  # also when initialize() stopped half-way (no-op otherwise)

    async def get_me(self) -> dict[str, Any]:
        me = await self.bot.get_me()
        return {"id": me.id, "username": me.username or ""}

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        """The updates exactly as Telegram sent them (PTB's ``to_dict()`` would add defaults)."""
        payload: dict[str, Any] = {"timeout": timeout}
        if offset is not None:
            payload["offset"] = offset
        try:
            result = await self.bot._post(
                "getUpdates", payload, read_timeout=timeout + POLL_READ_MARGIN
            )
        except tg_error.TelegramError as exc:  # the polling loop backs off and asks again
            raise TransientSendError(f"{type(exc).__name__}: {exc.message}") from None
        return list(result)

    async def feed(self, payload: dict[str, Any]) -> None:
        """Our handler for this update, run to the end; its exceptions reach the caller."""
        update = Update.de_json(payload, self.bot)
        for handler in self.handlers:
            check = handler.check_update(update)
            if check is None or check is False:
                continue
            context = self.application.context_types.context.from_update(update, self.application)
            await handler.handle_update(update, self.application, check, context)
            return

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        try:
            result = await self.bot._post(method, with_uploads(dict(payload)))
        except tg_error.TelegramError as exc:
            raise send_error(exc) from None
        if isinstance(result, dict) and "message_id" in result:
            return {"message_id": result["message_id"]}
        return result

    async def set_webhook(self, url: str, secret: str) -> None:
        await self.bot.set_webhook(url, secret_token=secret or None)

    async def delete_webhook(self) -> None:
        await self.bot.delete_webhook()
