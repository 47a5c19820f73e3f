"""The aiogram 3 runtime: aiogram objects in, our Events out; our Bot API calls sent by aiogram."""

from __future__ import annotations

from typing import Any

import aiogram.methods as methods
import aiohttp
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile, CallbackQuery, Message, Update

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
from bot.runtime.uploads import split_uploads


def message_event(message: Message, update_id: int, *, edited: bool = False) -> Event:
    """An aiogram Message → our Event."""
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
    if message.location is not None:
        return Event(
            kind=Kind.LOCATION,
            latitude=message.location.latitude,
            longitude=message.location.longitude,
            live=bool(message.location.live_period) or edited,
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
        best = message.photo[-1]
        return Event(
            kind=Kind.PHOTO,
            file_ids=(best.file_id,),
            file_size=best.file_size or 0,
            text=message.caption or "",
            **base,
        )
    if message.voice is not None:
        return Event(
            kind=Kind.VOICE,
            file_ids=(message.voice.file_id,),
            file_size=message.voice.file_size or 0,
            duration=message.voice.duration,
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
    """An aiogram CallbackQuery → our Event."""
    message = query.message
    chat_id = message.chat.id if message is not None else query.from_user.id
    private = message.chat.type == "private" if message is not None else True
    return Event(
        update_id=update_id,
        kind=Kind.BUTTON,
        telegram_id=query.from_user.id,
        chat_id=chat_id,
        private=private,
        language=query.from_user.language_code,
        first_name=query.from_user.first_name or "",
        data=query.data or "",
        callback_id=query.id,
        message_id=message.message_id if message is not None else None,
    )


SEND_TIMEOUT = aiohttp.ClientTimeout(total=60)


def api_error(status: int, body: dict[str, Any]) -> SendError:
    """A Bot API refusal (``ok: false``) → our SendError, as aiogram would classify it."""
    description = str(body.get("description", ""))[:300]
    parameters = body.get("parameters") or {}
    if status == 429 or "retry_after" in parameters:
        return RetryAfter(float(parameters.get("retry_after", 1)))
    if status >= 500:
        return TransientSendError(description or f"HTTP {status}")
    if status == 403:
        return PermanentSendError(description, blocked=True)
    if "not modified" in description:
        return NotModified(description)
    return PermanentSendError(description or f"HTTP {status}")


def with_uploads(payload: dict[str, Any]) -> dict[str, Any]:
    """``document_b64`` + ``document_name`` (bytes kept in the outbox row) → an upload."""
    rest, files = split_uploads(payload)
    for field, (name, data) in files.items():
        rest[field] = BufferedInputFile(data, filename=name)
    return rest


def build_router(handle: EventHandler) -> Router:
    """fieldbot as an aiogram Router: include it in any Dispatcher (``dp.include_router``)."""
    router = Router(name="fieldbot")

    @router.message()
    async def _message(message: Message, event_update: Update) -> None:
        await handle(message_event(message, event_update.update_id))

    @router.edited_message(F.location)
    async def _edited(message: Message, event_update: Update) -> None:
        await handle(message_event(message, event_update.update_id, edited=True))

    @router.callback_query()
    async def _callback(query: CallbackQuery, event_update: Update) -> None:
        await handle(callback_event(query, event_update.update_id))

    return router


class AiogramRuntime:
    """Runs fieldbot on aiogram: our inbox feeds its Dispatcher; our sender calls its Bot."""

    name = "aiogram"

    def __init__(self, *, token: str, api_url: str, handle: EventHandler) -> None:
        self.api = TelegramAPIServer.from_base(api_url)
        self.bot = Bot(token=token, session=AiohttpSession(api=self.api))
        self._http: aiohttp.ClientSession | None = None
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(build_router(handle))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self.bot.session.close()

    async def get_me(self) -> dict[str, Any]:
        me = await self.bot.get_me()
        return {"id": me.id, "username": me.username or ""}

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        """Raw getUpdates: Telegram's JSON is stored as sent, so one update aiogram cannot
        parse (a newer Bot API field) never stops polling; it fails alone in the inbox."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        params: dict[str, Any] = {"timeout": timeout}
        if offset is not None:
            params["offset"] = offset
        url = self.api.api_url(token=self.bot.token, method="getUpdates")
        try:
            async with self._http.post(
                url, json=params, timeout=aiohttp.ClientTimeout(total=timeout + 10)
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransientSendError(type(exc).__name__) from None
        if not isinstance(body, dict) or not body.get("ok"):
            description = body.get("description", "") if isinstance(body, dict) else ""
            raise TransientSendError(f"getUpdates refused: {description}"[:200])
        result = body.get("result")
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    async def feed(self, payload: dict[str, Any]) -> None:
        update = Update.model_validate(payload, context={"bot": self.bot})
        await self.dispatcher.feed_update(self.bot, update)

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        """A Bot API call. Outbox payloads are Bot API JSON already: they are posted as they
        are (validating each into an aiogram method object and parsing the answer into
        aiogram types cost more CPU than the rest of the send); uploads go through aiogram."""
        rest, files = split_uploads(payload)
        if files:
            return await self._call_aiogram(method, payload)
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = self.api.api_url(token=self.bot.token, method=method)
        try:
            async with self._http.post(url, json=rest, timeout=SEND_TIMEOUT) as response:
                status = response.status
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TransientSendError(type(exc).__name__) from None
        if not isinstance(body, dict):
            raise TransientSendError(f"HTTP {status} without a Bot API answer")
        if body.get("ok"):
            result = body.get("result")
            if isinstance(result, dict) and "message_id" in result:
                return {"message_id": result["message_id"]}
            return result
        raise api_error(status, body)

    async def _call_aiogram(self, method: str, payload: dict[str, Any]) -> Any:
        cls = getattr(methods, method[0].upper() + method[1:], None)
        if cls is None:
            raise PermanentSendError(f"unknown method {method}")
        try:
            call = cls.model_validate(with_uploads(payload), context={"bot": self.bot})
            result = await self.bot(call)
        except TelegramRetryAfter as exc:
            raise RetryAfter(float(exc.retry_after)) from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            raise TransientSendError(type(exc).__name__) from None
        except TelegramForbiddenError as exc:
            raise PermanentSendError(exc.message, blocked=True) from None
        except (TelegramBadRequest, TelegramNotFound) as exc:
            if "not modified" in exc.message:
                raise NotModified(exc.message) from None
            raise PermanentSendError(exc.message) from None
        if isinstance(result, Message):
            return {"message_id": result.message_id}
        return result

    async def set_webhook(self, url: str, secret: str) -> None:
        await self.bot.set_webhook(url, secret_token=secret or None)

    async def delete_webhook(self) -> None:
        await self.bot.delete_webhook()
