"""A local fake Telegram Bot API server (HTTP + JSON) for tests and offline demos.

Start it with ``async with FakeTelegram() as tg:`` and point a bot at ``tg.url`` with token
``tg.token``. Simulated users (``tg.user(...)``) produce updates that are delivered by long
polling (``getUpdates``) or by webhook; everything the bot sends is recorded per chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import mimetypes
import secrets
import string
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from .formatting import EntityParseError, UnsupportedParseModeError, parse_text
from .models import (
    AnsweredCallback,
    ApiError,
    FaultKind,
    FaultPlan,
    InjectedFault,
    RateLimits,
    StoredFile,
    TranscriptEntry,
    UploadedFile,
    bad_request,
    too_many_requests,
)
from .params import Params, decode_json_fields, read_request
from .render import format_entry
from .state import ChatState, JsonDict, MessageRecord
from .users import FakeGroup, FakeUser

log = logging.getLogger(__name__)

Predicate = Callable[[JsonDict], bool] | str | None
Observer = Callable[[TranscriptEntry], None]
Handler = Callable[[Params], Awaitable[Any]]

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
# Calls that produce or change messages: subject to flood control.
LIMITED_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendVoice",
        "sendSticker",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "editMessageLiveLocation",
        "stopMessageLiveLocation",
        "copyMessage",
        "forwardMessage",
    }
)
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"


def make_token(bot_id: int = 123456789) -> str:
    """A random, validly formatted bot token (``<id>:AA<33 chars>``)."""
    tail = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(33))
    return f"{bot_id}:AA{tail}"


def _now() -> int:
    return int(time.time())


def _button_labels(rows: Iterable[Iterable[Any]]) -> list[list[str]]:
    return [[b.get("text", "") if isinstance(b, dict) else str(b) for b in row] for row in rows]


@dataclass
class _Pending:
    update: JsonDict
    delivered: bool = False

    @property
    def update_id(self) -> int:
        return int(self.update["update_id"])


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


class FakeTelegram:
    """In-process fake of ``api.telegram.org`` speaking the Bot API over real HTTP."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        bot_username: str = "fieldbot_test_bot",
        bot_first_name: str = "FieldBot",
        webhook_retry_delay: float = 0.2,
        webhook_timeout: float = 10.0,
        first_update_id: int = 100_000,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token or make_token()
        self.bot_id = int(self.token.split(":", 1)[0])
        self.bot_user: JsonDict = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout

        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.updates: list[JsonDict] = []
        self.transcript: list[TranscriptEntry] = []
        self.answered_callbacks: list[AnsweredCallback] = []
        self._answered: dict[str, AnsweredCallback] = {}  # by query id: each answered once
        self.chat_actions: list[tuple[int, str]] = []
        self.uploads: list[UploadedFile] = []
        self.webhook_deliveries: list[tuple[int, int | str]] = []
        self.internal_errors: list[Exception] = []

        self.faults: FaultPlan | None = None
        self.injected_faults: list[InjectedFault] = []
        self.limits: RateLimits | None = None
        self.rate_limited: list[tuple[int | None, float]] = []
        self.retry_after_violations = 0
        # Every call to a chat made while a 429's retry_after for that chat was still running,
        # whatever the method and whether or not a fault was then injected into it:
        # (method, chat_id, seconds too early).
        self.early_calls: list[tuple[str, int, float]] = []

        self._users: dict[int, FakeUser] = {}
        self._groups: dict[int, FakeGroup] = {}
        self._chats: dict[int, ChatState] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._photo_sets: dict[str, list[JsonDict]] = {}
        self._callback_queries: dict[str, JsonDict] = {}
        self._commands: dict[tuple[str, str], list[JsonDict]] = {}
        self._menu_buttons: dict[int | None, JsonDict] = {}
        self._bot_texts: dict[tuple[str, str], str] = {}
        self._observers: list[Observer] = []

        self._pending: list[_Pending] = []
        self._last_update_id = first_update_id - 1
        self._poll_generation = 0
        self._webhook: _Webhook | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._counter = 0
        self._next_user_id = 100_000_001
        self._next_group_id = 1

        self._retry_until: dict[int | None, float] = {}
        self._global_window: deque[float] = deque()
        self._chat_windows: dict[int, deque[float]] = {}
        self._group_windows: dict[int, deque[float]] = {}

        self._inflight = 0
        self._last_activity = time.monotonic()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.url = ""

        self._methods: dict[str, Handler] = {}
        for name in dir(self):
            if name.startswith("_api_"):
                self._methods[name.removeprefix("_api_")] = getattr(self, name)
        self._method_names = {name.lower(): name for name in self._methods}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the HTTP server; sets :attr:`url` (and :attr:`port` if it was 0)."""
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        self.url = f"http://{self.host}:{self.port}"
        self._client = aiohttp.ClientSession()
        if self._webhook is not None:
            self._start_webhook_worker()

    async def stop(self) -> None:
        """Stop webhook delivery and the HTTP server (pending long polls return)."""
        self._closing.set()
        self._notify()
        await self._stop_webhook_worker()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """``{url}/bot{token}`` — prefix of every method URL."""
        return f"{self.url}/bot{self.token}"

    # ------------------------------------------------------------------ users and chats

    def user(
        self,
        user_id: int | None = None,
        first_name: str = "Alice",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        *,
        phone_number: str | None = None,
    ) -> FakeUser:
        """Get or create a simulated user (its private chat id equals its user id)."""
        if user_id is None:
            while self._next_user_id in self._users:
                self._next_user_id += 1
            user_id = self._next_user_id
            self._next_user_id += 1
        existing = self._users.get(user_id)
        if existing is not None:
            return existing
        user = FakeUser(
            self,
            user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            phone_number=phone_number,
        )
        self._users[user_id] = user
        return user

    def group(
        self, chat_id: int | None = None, title: str = "Test group", *, supergroup: bool = False
    ) -> FakeGroup:
        """Get or create a group chat the bot is a member of."""
        if chat_id is None:
            base = -1_001_000_000_000 if supergroup else -4_000_000_000
            chat_id = base - self._next_group_id
            self._next_group_id += 1
        existing = self._groups.get(chat_id)
        if existing is not None:
            return existing
        group = FakeGroup(self, chat_id, title, "supergroup" if supergroup else "group")
        self._groups[chat_id] = group
        self._chats[chat_id] = ChatState(
            chat={"id": chat_id, "type": group.type, "title": title},
            title=title,
            is_private=False,
        )
        return group

    def users(self) -> list[FakeUser]:
        """All simulated users, in creation order."""
        return list(self._users.values())

    def chat_state(self, chat_id: int) -> ChatState:
        """Internal chat state (raises AssertionError for unknown chats)."""
        state = self._chats.get(chat_id)
        if state is None:
            raise AssertionError(f"chat {chat_id} has no messages yet")
        return state

    def _private_state(self, user: FakeUser) -> ChatState:
        state = self._chats.get(user.id)
        if state is None:
            chat: JsonDict = {"id": user.id, "type": "private", "first_name": user.first_name}
            if user.last_name:
                chat["last_name"] = user.last_name
            if user.username:
                chat["username"] = user.username
            state = ChatState(chat=chat, title=user.first_name, is_private=True)
            self._chats[user.id] = state
        return state

    def has_chat(self, chat_id: int) -> bool:
        """Whether the chat exists (a user chat exists once the user wrote to the bot)."""
        return chat_id in self._chats

    def state_for(self, user: FakeUser, chat: FakeGroup | None) -> ChatState:
        """The chat a user action goes to (their private chat unless ``chat`` is given)."""
        return self._private_state(user) if chat is None else self._chats[chat.id]

    def next_id(self) -> int:
        """A process-unique counter (for file and callback ids)."""
        self._counter += 1
        return self._counter

    def chat_instance(self, chat_id: int) -> str:
        """Stable ``chat_instance`` value for callback queries from a chat."""
        return str(zlib.crc32(f"{self.bot_id}:{chat_id}".encode()) * 7919 + 1_000_000_007)

    # ------------------------------------------------------------------ updates

    def enqueue(self, update_type: str, payload: JsonDict) -> JsonDict:
        """Queue an update (monotonic update_id) for polling/webhook delivery."""
        self._last_update_id += 1
        update = {"update_id": self._last_update_id, update_type: copy.deepcopy(payload)}
        self.updates.append(update)
        self._pending.append(_Pending(update))
        self._notify()
        return copy.deepcopy(update)

    def user_message(
        self,
        user: FakeUser,
        chat: FakeGroup | None,
        content: JsonDict,
        *,
        kind: str,
        text: str | None = None,
        extra: JsonDict | None = None,
    ) -> JsonDict:
        """Create a message from ``user``, record it and queue a ``message`` update."""
        state = self.state_for(user, chat)
        msg: JsonDict = {
            "message_id": state.new_message_id(),
            "from": user.as_dict(),
            "chat": dict(state.chat),
            "date": _now(),
        }
        msg.update(content)
        state.add(MessageRecord(msg, from_bot=False, sender_id=user.id))
        self.emit_user(user, state, kind, text, msg["message_id"], extra or {})
        return self.enqueue("message", msg)

    def emit_user(
        self,
        user: FakeUser,
        state: ChatState,
        kind: str,
        text: str | None,
        message_id: int | None,
        extra: JsonDict,
    ) -> None:
        """Record a user-side transcript entry."""
        self._emit(
            TranscriptEntry(
                direction="user",
                chat_id=state.chat_id,
                user_name=user.first_name,
                kind=kind,
                text=text,
                message_id=message_id,
                chat_title=None if state.is_private else state.title,
                extra=extra,
            )
        )

    def register_callback(self, query: JsonDict) -> None:
        """Remember a callback query so answerCallbackQuery can validate its id."""
        self._callback_queries[str(query["id"])] = query

    # ------------------------------------------------------------------ files

    def store_file(
        self,
        kind: str,
        data: bytes,
        *,
        ext: str,
        file_name: str | None = None,
        mime_type: str | None = None,
        uploaded_by_bot: bool = False,
    ) -> StoredFile:
        """Keep bytes downloadable through getFile + ``/file/bot<token>/<path>``."""
        n = self.next_id()
        prefix = {"photo": "AgAC", "voice": "AwAC", "sticker": "CAAC"}.get(kind, "BQAC")
        folder = {"photo": "photos", "voice": "voice", "sticker": "stickers"}.get(kind, "documents")
        stored = StoredFile(
            file_id=f"{prefix}AgAD{n:06d}{secrets.token_urlsafe(12)}",
            file_unique_id=f"AQAD{n:06d}{secrets.token_hex(3)}",
            kind=kind,
            data=data,
            file_path=f"{folder}/file_{n}.{ext}",
            file_name=file_name,
            mime_type=mime_type,
            uploaded_by_bot=uploaded_by_bot,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def photo_sizes(self, data: bytes, *, uploaded_by_bot: bool = False) -> list[JsonDict]:
        """Store a photo and return its PhotoSize array (thumbnail + full size)."""
        sizes: list[JsonDict] = []
        for width, height in ((90, 67), (1280, 960)):
            stored = self.store_file(
                "photo", data, ext="jpg", mime_type="image/jpeg", uploaded_by_bot=uploaded_by_bot
            )
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": stored.file_size,
                    "width": width,
                    "height": height,
                }
            )
        for size in sizes:
            self._photo_sets[size["file_id"]] = sizes
        return copy.deepcopy(sizes)

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes behind a file_id (raises KeyError if unknown)."""
        return self._files[file_id].data

    # ------------------------------------------------------------------ observers / waits

    def on_event(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(entry)`` for every user action and bot output; returns an
        unsubscribe function. Observer exceptions are logged and swallowed."""
        self._observers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(callback)

        return unsubscribe

    def _emit(self, entry: TranscriptEntry) -> None:
        self.transcript.append(entry)
        for observer in list(self._observers):
            try:
                observer(entry)
            except Exception:
                log.exception("fake telegram observer failed")
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def messages(self, chat_id: int) -> list[JsonDict]:
        """Every bot message in the chat, in send order, in its current (edited) state,
        plus bookkeeping keys ``edits``, ``deleted`` and ``reply_keyboard``."""
        state = self._chats.get(chat_id)
        return [rec.snapshot() for rec in state.bot_log] if state else []

    def all_bot_messages(self) -> list[JsonDict]:
        """Bot messages of all chats (chat by chat, each in send order)."""
        return [rec.snapshot() for state in self._chats.values() for rec in state.bot_log]

    def last_message(self, chat_id: int) -> JsonDict | None:
        """The latest non-deleted bot message in the chat."""
        live = [m for m in self.messages(chat_id) if not m["deleted"]]
        return live[-1] if live else None

    def reply_keyboard(self, chat_id: int) -> JsonDict | None:
        """The reply keyboard currently shown in the chat (None if none/removed)."""
        state = self._chats.get(chat_id)
        return copy.deepcopy(state.reply_keyboard) if state else None

    def mark(self, chat_id: int) -> int:
        """Current number of bot messages in the chat: pass as ``after=`` to wait_for."""
        state = self._chats.get(chat_id)
        return len(state.bot_log) if state else 0

    @staticmethod
    def buttons(message: JsonDict) -> list[list[str]]:
        """Inline keyboard of a message as rows of button texts."""
        markup = message.get("reply_markup") or {}
        return _button_labels(markup.get("inline_keyboard") or [])

    def transcript_text(self, chat_id: int | None = None) -> str:
        """The rendered conversation (one chat or all)."""
        entries = [e for e in self.transcript if chat_id is None or e.chat_id == chat_id]
        return "\n".join(format_entry(e) for e in entries) or "(no messages)"

    @staticmethod
    def _matches(message: JsonDict, predicate: Predicate) -> bool:
        if predicate is None:
            return True
        if isinstance(predicate, str):
            body = message.get("text") or message.get("caption") or ""
            return predicate in body
        return bool(predicate(message))

    async def wait_for(
        self,
        chat_id: int,
        predicate: Predicate = None,
        timeout: float = 5.0,
        *,
        after: int | None = None,
    ) -> JsonDict:
        """Wait for a bot message in ``chat_id`` matching ``predicate``.

        ``predicate`` is a callable on the message snapshot (see :meth:`messages`), a
        substring of its text/caption, or None (any message). Candidates are the chat's bot
        messages with index >= ``after`` in :meth:`messages`; with ``after=None`` the chat's
        cursor is used: it starts at 0 and every successful ``wait_for`` (either mode) moves
        it past the message it returned (never backwards), so consecutive calls read the
        conversation forward like a stream; use ``after=tg.mark(chat_id)`` to only accept
        messages sent from now on. Raises AssertionError with the transcript on timeout.
        """
        state_start = after
        deadline = time.monotonic() + timeout
        while True:
            state = self._chats.get(chat_id)
            if state is not None:
                start = state.cursor if state_start is None else state_start
                for index in range(start, len(state.bot_log)):
                    snap = state.bot_log[index].snapshot()
                    if self._matches(snap, predicate):
                        state.cursor = max(state.cursor, index + 1)
                        return snap
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no bot message matching {self._describe(predicate)} in chat {chat_id} "
                    f"after index {state_start if state_start is not None else 'cursor'} "
                    f"within {timeout}s; transcript:\n{self.transcript_text(chat_id)}"
                )
            await self._wait_change(remaining)

    async def wait_for_edit(
        self,
        chat_id: int,
        predicate: Predicate = None,
        timeout: float = 5.0,
        *,
        message_id: int | None = None,
        after: int | None = None,
    ) -> JsonDict:
        """Wait for an edit (text, caption or markup) of a bot message in ``chat_id``.

        Works like :meth:`wait_for` over the chat's edit log (``after`` indexes edits;
        None uses a separate edit cursor). Returns the message as it was right after the
        matching edit, with ``edits`` history.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self._chats.get(chat_id)
            if state is not None:
                start = state.edit_cursor if after is None else after
                for index in range(start, len(state.edit_log)):
                    rec, snap = state.edit_log[index]
                    if message_id is not None and rec.message_id != message_id:
                        continue
                    if self._matches(snap, predicate):
                        state.edit_cursor = max(state.edit_cursor, index + 1)
                        return copy.deepcopy(snap)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no edit matching {self._describe(predicate)} in chat {chat_id} "
                    f"within {timeout}s; transcript:\n{self.transcript_text(chat_id)}"
                )
            await self._wait_change(remaining)

    async def wait_for_callback_answer(
        self,
        callback_query_id: str,
        timeout: float = 5.0,
    ) -> AnsweredCallback:
        """Wait until the bot answered the given callback query."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self._answered.get(callback_query_id)
            if answer is not None:
                return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"callback query {callback_query_id} not answered within {timeout}s; "
                    f"transcript:\n{self.transcript_text()}"
                )
            await self._wait_change(remaining)

    async def wait_idle(
        self,
        quiet: float = 0.3,
        timeout: float = 10.0,
    ) -> None:
        """Wait until every update was handed to the bot, no call is in flight and none
        arrived for ``quiet`` seconds (long polls don't count as activity)."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            undelivered = sum(1 for p in self._pending if not p.delivered)
            idle_for = now - self._last_activity
            if undelivered == 0 and self._inflight == 0 and idle_for >= quiet:
                return
            if now >= deadline:
                raise AssertionError(
                    f"not idle after {timeout}s: {undelivered} undelivered update(s), "
                    f"{self._inflight} call(s) in flight, last activity {idle_for:.2f}s ago"
                )
            step = quiet - idle_for if undelivered == 0 and self._inflight == 0 else quiet
            await self._wait_change(max(0.01, min(step, deadline - now)))

    @staticmethod
    def _describe(predicate: Predicate) -> str:
        if predicate is None:
            return "(any)"
        if isinstance(predicate, str):
            return repr(predicate)
        return getattr(predicate, "__name__", repr(predicate))

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        """Params of every recorded call to ``method``."""
        return [params for name, params in self.calls if name == method]

    def commands(self, scope: JsonDict | None = None, language_code: str = "") -> list[JsonDict]:
        """Commands set via setMyCommands for a scope/language."""
        return copy.deepcopy(self._commands.get((self._scope_key(scope), language_code), []))

    # ------------------------------------------------------------------ HTTP layer

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        stored = self._files_by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        raw_method = request.match_info["method"]
        method = self._method_names.get(raw_method.lower(), raw_method)
        try:
            data, files = await read_request(request)
        except ApiError as exc:
            return web.json_response(exc.payload(), status=exc.code)
        except Exception as exc:
            err = bad_request(f"can't parse request: {type(exc).__name__}")
            return web.json_response(err.payload(), status=err.code)
        params = Params(data, files, request)
        self.calls.append((method, params.data))
        self.uploads.extend(files.values())
        tracked = method != "getUpdates"
        if tracked:
            self._inflight += 1
            self._touch()
        try:
            self._note_early(method, params)
            fault = self._pick_fault(method, params)
            if fault in ("timeout", "drop"):
                if fault == "timeout" and self.faults is not None:
                    await self._stall(params, self.faults.timeout_delay)
                return self._drop(request)
            if fault in ("500", "502"):
                text = "Internal Server Error" if fault == "500" else "Bad Gateway"
                err = ApiError(int(fault), text)
                return web.json_response(err.payload(), status=err.code)
            if fault == "429" and self.faults is not None:
                retry = self.faults.retry_after
                self._retry_until[self._chat_key(params)] = time.monotonic() + retry
                err = too_many_requests(retry)
                return web.json_response(err.payload(), status=429)
            status, body = await self.execute(method, params, rate_limit=True)
            if fault == "lost_response":
                return self._drop(request)
            return web.json_response(body, status=status)
        finally:
            if tracked:
                self._inflight -= 1
                self._touch()
                self._notify()

    async def _stall(self, params: Params, delay: float) -> None:
        """Hold a request for ``delay`` s (or until the client gives up / server stops)."""
        deadline = time.monotonic() + delay
        while not self._closing.is_set() and not params.client_gone:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), min(remaining, 0.05))

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)

    def _note_early(self, method: str, params: Params) -> None:
        """Record a call to a chat still inside a retry_after the fake gave for that chat."""
        key = self._chat_key(params)
        until = self._retry_until.get(key) if key is not None else None
        if until is not None and key is not None:
            early = until - time.monotonic()
            if early > 0:
                self.early_calls.append((method, key, early))

    def _pick_fault(self, method: str, params: Params) -> FaultKind | None:
        if self.faults is None:
            return None
        kind = self.faults.pick(method)
        if kind is not None:
            self.injected_faults.append(
                InjectedFault(method, kind, self._chat_key(params), time.monotonic())
            )
        return kind

    @staticmethod
    def _chat_key(params: Params) -> int | None:
        try:
            return params.get_int("chat_id")
        except ApiError:
            return None

    async def execute(
        self, method: str, params: Params, *, rate_limit: bool = False
    ) -> tuple[int, JsonDict]:
        """Run one API method; returns (HTTP status, JSON body)."""
        handler = self._methods.get(method)
        if handler is None:
            err = ApiError(404, "Not Found: method not found")
            return err.code, err.payload()
        try:
            if rate_limit and method in LIMITED_METHODS:
                self._check_rate_limits(params)
            result = await handler(params)
        except ApiError as exc:
            return exc.code, exc.payload()
        except Exception as exc:
            log.exception("fake telegram: %s failed", method)
            self.internal_errors.append(exc)
            err = ApiError(500, f"Internal Server Error: {type(exc).__name__}: {exc}")
            return err.code, err.payload()
        body: JsonDict = {"ok": True, "result": result}
        if method == "setWebhook":
            body["description"] = "Webhook was set"
        elif method == "deleteWebhook":
            body["description"] = "Webhook was deleted"
        return 200, body

    def _check_rate_limits(self, params: Params) -> None:
        now = time.monotonic()
        key = self._chat_key(params)
        until = self._retry_until.get(key)
        if until is not None and now < until:
            self.retry_after_violations += 1
            raise too_many_requests(max(1, math.ceil(until - now)))
        limits = self.limits
        if limits is None:
            return
        state = self._chats.get(key) if key is not None else None
        checks: list[tuple[deque[float], float | None, float]] = [
            (self._global_window, limits.global_per_second, 1.0)
        ]
        if key is not None:
            checks.append(
                (self._chat_windows.setdefault(key, deque()), limits.per_chat_per_second, 1.0)
            )
            if state is not None and not state.is_private:
                checks.append(
                    (
                        self._group_windows.setdefault(key, deque()),
                        limits.per_group_per_minute,
                        60.0,
                    )
                )
        for window, limit, span in checks:
            while window and window[0] <= now - span:
                window.popleft()
            if limit is not None and len(window) >= limit:
                retry = max(1, math.ceil(window[0] + span - now))
                self.rate_limited.append((key, now))
                self._retry_until[key] = now + retry
                raise too_many_requests(retry)
        for window, _, _ in checks:
            window.append(now)

    # ------------------------------------------------------------------ webhook delivery

    def _start_webhook_worker(self) -> None:
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._webhook_loop())

    async def _stop_webhook_worker(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _webhook_loop(self) -> None:
        while not self._closing.is_set():
            hook = self._webhook
            if hook is None:
                return
            if not self._pending:
                await self._wait_change(1.0)
                continue
            pending = self._pending[0]
            try:
                ok = await self._post_update(hook, pending)
            except Exception:
                log.exception("fake telegram webhook delivery failed")
                ok = False
            if ok:
                if self._pending and self._pending[0] is pending:
                    self._pending.pop(0)
                self._touch()
                self._notify()
            else:
                await asyncio.sleep(self.webhook_retry_delay)

    async def _post_update(self, hook: _Webhook, pending: _Pending) -> bool:
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        try:
            async with self._client.post(
                hook.url,
                data=json.dumps(pending.update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as resp:
                reply = await self._read_webhook_reply(resp)
                status = resp.status
                reason = resp.reason or ""
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.webhook_deliveries.append((pending.update_id, type(exc).__name__))
            hook.last_error_date = _now()
            hook.last_error_message = f"Connection failed: {type(exc).__name__}"
            return False
        self.webhook_deliveries.append((pending.update_id, status))
        if not 200 <= status < 300:
            hook.last_error_date = _now()
            hook.last_error_message = f"Wrong response from the webhook: {status} {reason}"
            return False
        pending.delivered = True
        if reply is not None:
            # Telegram executes a method returned in the webhook response body.
            method_name, params = reply
            method = self._method_names.get(method_name.lower(), method_name)
            self.calls.append((method, params.data))
            await self.execute(method, params, rate_limit=True)
        return True

    @staticmethod
    async def _read_webhook_reply(resp: aiohttp.ClientResponse) -> tuple[str, Params] | None:
        data: dict[str, Any] = {}
        files: dict[str, UploadedFile] = {}
        if resp.content_type == "multipart/form-data":
            reader = aiohttp.MultipartReader.from_response(resp)
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = UploadedFile(
                        part.name,
                        part.filename,
                        part.headers.get("Content-Type"),
                        bytes(await part.read()),
                    )
                else:
                    data[part.name] = await part.text()
        else:
            raw = await resp.read()
            if not raw.strip():
                return None
            try:
                body = json.loads(raw)
            except ValueError:
                return None
            if not isinstance(body, dict):
                return None
            data = body
        method = data.pop("method", None)
        if not isinstance(method, str) or not method:
            return None
        try:
            return method, Params(decode_json_fields(data), files)
        except ApiError:
            return None

    # ------------------------------------------------------------------ API helpers

    def _target_chat(self, p: Params) -> ChatState:
        raw = p.get("chat_id")
        if raw is None:
            raise bad_request("chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        state = self._chats.get(chat_id)
        if state is None:
            raise bad_request("chat not found")
        if state.is_private:
            user = self._users.get(chat_id)
            if user is not None and user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
        return state

    @staticmethod
    def _formatted(
        p: Params, key: str, entities_key: str, *, limit: int, caption: bool
    ) -> tuple[str, list[JsonDict]]:
        raw = p.get_str(key) or ""
        ents = p.get_json(entities_key)
        try:
            text, entities = parse_text(raw, p.get_str("parse_mode"), ents or None)
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        except UnsupportedParseModeError:
            raise bad_request("unsupported parse_mode") from None
        if len(text) > limit:
            raise bad_request("message caption is too long" if caption else "message is too long")
        return text, entities

    def _text(self, p: Params) -> tuple[str, list[JsonDict]]:
        text, entities = self._formatted(p, "text", "entities", limit=TEXT_LIMIT, caption=False)
        if not text:
            raise bad_request("message text is empty")
        return text, entities

    def _caption(self, p: Params, content: JsonDict) -> None:
        caption, entities = self._formatted(
            p, "caption", "caption_entities", limit=CAPTION_LIMIT, caption=True
        )
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities

    @staticmethod
    def _validate_inline(markup: JsonDict) -> JsonDict:
        rows = markup.get("inline_keyboard")
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise bad_request(
                        "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
                    )
                if not button["text"]:
                    raise bad_request("can't parse inline keyboard button: Text must be non-empty")
                actions = [a for a in INLINE_ACTIONS if button.get(a) is not None]
                if not actions:
                    raise bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in actions:
                    data = str(button["callback_data"]).encode()
                    if not 1 <= len(data) <= CALLBACK_DATA_LIMIT:
                        raise bad_request("BUTTON_DATA_INVALID")
                if "url" in actions:
                    url = str(button["url"])
                    if not url.startswith(("http://", "https://", "tg://")):
                        raise bad_request("BUTTON_URL_INVALID")
        return {"inline_keyboard": copy.deepcopy(rows)}

    def _markup(
        self, p: Params, *, inline_only: bool = False
    ) -> tuple[JsonDict | None, JsonDict | None]:
        """Return (inline markup, other markup) from ``reply_markup``."""
        markup = p.get_json("reply_markup")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            return self._validate_inline(markup), None
        if inline_only:
            raise bad_request("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise bad_request('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
            norm = copy.deepcopy(markup)
            norm["keyboard"] = [
                [b if isinstance(b, dict) else {"text": str(b)} for b in row] for row in rows
            ]
            for row in norm["keyboard"]:
                for button in row:
                    if not button.get("text"):
                        raise bad_request("can't parse keyboard button: Text must be non-empty")
            return None, norm
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return None, copy.deepcopy(markup)
        raise bad_request("can't parse reply keyboard markup JSON object")

    def _bot_message(
        self,
        state: ChatState,
        content: JsonDict,
        p: Params,
        *,
        kind: str,
        text: str | None = None,
        extra: JsonDict | None = None,
        markup: tuple[JsonDict | None, JsonDict | None] | None = None,
        emit: bool = True,
    ) -> MessageRecord:
        inline, other = markup if markup is not None else self._markup(p)
        msg: JsonDict = {
            "message_id": 0,
            "from": dict(self.bot_user),
            "chat": dict(state.chat),
            "date": _now(),
        }
        reply_params = p.get_json("reply_parameters")
        reply_to = p.get_int("reply_to_message_id")
        allow_missing = p.get_bool("allow_sending_without_reply")
        if isinstance(reply_params, dict):
            reply_to = int(reply_params.get("message_id") or 0) or reply_to
            allow_missing = bool(reply_params.get("allow_sending_without_reply", allow_missing))
        if reply_to:
            target = state.messages.get(reply_to)
            if target is not None and not target.deleted:
                replied = target.api()
                replied.pop("reply_to_message", None)
                msg["reply_to_message"] = replied
            elif not allow_missing:
                raise bad_request("message to be replied not found")
        msg["message_id"] = state.new_message_id()
        msg.update(content)
        if inline is not None:
            msg["reply_markup"] = inline
        if p.get_bool("protect_content"):
            msg["has_protected_content"] = True
        record = state.add(MessageRecord(msg, from_bot=True, reply_keyboard=other))
        if other is not None:
            if "keyboard" in other:
                state.reply_keyboard = other
            elif other.get("remove_keyboard"):
                state.reply_keyboard = None
        if emit:
            self._emit_bot(state, record, kind, text, extra or {})
        return record

    def _emit_bot(
        self,
        state: ChatState,
        record: MessageRecord,
        kind: str,
        text: str | None,
        extra: JsonDict,
        *,
        with_keyboard: bool = True,
    ) -> None:
        keyboard = None
        other = record.reply_keyboard if with_keyboard else None
        if other is not None and "keyboard" in other:
            keyboard = _button_labels(other["keyboard"])
        elif other is not None and other.get("remove_keyboard"):
            extra = {**extra, "remove_keyboard": True}
        self._emit(
            TranscriptEntry(
                direction="bot",
                chat_id=state.chat_id,
                user_name=state.title,
                kind=kind,
                text=text,
                buttons=_button_labels(record.inline_keyboard),
                keyboard=keyboard,
                message_id=record.message_id,
                chat_title=None if state.is_private else state.title,
                extra=extra,
            )
        )

    def _input_file(
        self, value: UploadedFile | str | None, kind: str, field_name: str
    ) -> tuple[StoredFile | None, list[JsonDict] | None]:
        """Resolve an upload / file_id / URL into a stored file (or photo sizes)."""
        if value is None:
            raise bad_request(f"there is no {field_name} in the request")
        if isinstance(value, UploadedFile):
            if kind == "photo":
                return None, self.photo_sizes(value.data, uploaded_by_bot=True)
            name = value.filename or field_name
            mime = value.content_type
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            ext = name.rsplit(".", 1)[-1] if "." in name else "bin"
            stored = self.store_file(
                kind, value.data, ext=ext, file_name=name, mime_type=mime, uploaded_by_bot=True
            )
            return stored, None
        if value.startswith(("http://", "https://")):
            if kind == "photo":
                return None, self.photo_sizes(b"", uploaded_by_bot=True)
            name = value.rstrip("/").rsplit("/", 1)[-1] or "file"
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self.store_file(kind, b"", ext="bin", file_name=name, mime_type=mime), None
        known = self._files.get(value)
        if known is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if kind == "photo":
            if value not in self._photo_sets:
                raise bad_request(f"can't use file of type {known.kind.title()} as Photo")
            return None, copy.deepcopy(self._photo_sets[value])
        if known.kind == "photo":
            raise bad_request(f"can't use file of type Photo as {kind.title()}")
        return known, None

    @staticmethod
    def _document(stored: StoredFile) -> JsonDict:
        doc: JsonDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
        }
        if stored.file_name:
            doc["file_name"] = stored.file_name
        if stored.mime_type:
            doc["mime_type"] = stored.mime_type
        return doc

    def _find_bot_message(self, p: Params, *, not_found: str) -> tuple[ChatState, MessageRecord]:
        if p.has("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        state = self._target_chat(p)
        message_id = p.get_int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        record = state.messages.get(message_id)
        if record is None or record.deleted:
            raise bad_request(not_found)
        if not record.from_bot:
            raise bad_request("message can't be edited")
        return state, record

    def _apply_edit(
        self,
        state: ChatState,
        record: MessageRecord,
        changes: JsonDict,
        *,
        kind: str,
        text: str | None,
    ) -> JsonDict:
        new = copy.deepcopy(record.current)
        for key, value in changes.items():
            if value in (None, [], ""):
                new.pop(key, None)
            else:
                new[key] = value
        compare = {k: v for k, v in new.items() if k != "edit_date"}
        before = {k: v for k, v in record.current.items() if k != "edit_date"}
        if compare == before:
            raise bad_request(NOT_MODIFIED)
        new["edit_date"] = _now()
        record.edits.append(record.current)
        record.current = new
        state.edit_log.append((record, record.snapshot()))
        self._emit_bot(state, record, kind, text, {}, with_keyboard=False)
        return record.api()

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if not isinstance(scope, dict):
            scope = {"type": "default"}
        return json.dumps(scope, sort_keys=True)

    # ------------------------------------------------------------------ API: bot & updates

    async def _api_getMe(self, p: Params) -> JsonDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_logOut(self, p: Params) -> bool:
        return True

    async def _api_close(self, p: Params) -> bool:
        return True

    async def _api_getUpdates(self, p: Params) -> list[JsonDict]:
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = p.get_int("offset", 0) or 0
        limit = min(max(p.get_int("limit", 100) or 100, 1), 100)
        timeout = max(p.get_float("timeout", 0.0) or 0.0, 0.0)
        if offset > 0:
            self._pending = [u for u in self._pending if u.update_id >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        deadline = time.monotonic() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if self._webhook is not None:
                return []
            ready = self._pending[:limit]
            if ready and p.client_gone:
                return []
            if ready:
                for pending in ready:
                    pending.delivered = True
                self._touch()
                self._notify()
                return [copy.deepcopy(u.update) for u in ready]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing.is_set():
                return []
            await self._wait_change(remaining)

    async def _api_setWebhook(self, p: Params) -> bool:
        url = p.get_str("url") or ""
        if not url:
            return await self._api_deleteWebhook(p)
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get_str("secret_token")
        if secret is not None and (
            not 1 <= len(secret) <= 256 or any(c not in _TOKEN_ALPHABET for c in secret)
        ):
            raise bad_request("secret token contains unallowed characters")
        allowed = p.get_json("allowed_updates")
        if p.get_bool("drop_pending_updates"):
            self._pending.clear()
        self._webhook = _Webhook(
            url=url,
            secret_token=secret,
            max_connections=p.get_int("max_connections", 40) or 40,
            allowed_updates=allowed if isinstance(allowed, list) else None,
        )
        self._poll_generation += 1
        self._notify()
        if self._client is not None:
            self._start_webhook_worker()
        return True

    async def _api_deleteWebhook(self, p: Params) -> bool:
        if p.get_bool("drop_pending_updates"):
            self._pending.clear()
        self._webhook = None
        await self._stop_webhook_worker()
        self._notify()
        return True

    async def _api_getWebhookInfo(self, p: Params) -> JsonDict:
        hook = self._webhook
        info: JsonDict = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            info["ip_address"] = "127.0.0.1"
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    # ------------------------------------------------------------------ API: sending

    async def _api_sendMessage(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        text, entities = self._text(p)
        content: JsonDict = {"text": text}
        if entities:
            content["entities"] = entities
        preview = p.get_json("link_preview_options")
        if isinstance(preview, dict) and preview:
            content["link_preview_options"] = preview
        return self._bot_message(state, content, p, kind="text", text=text).api()

    async def _api_sendPhoto(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        markup = self._markup(p)
        content: JsonDict = {}
        self._caption(p, content)
        _, sizes = self._input_file(p.file("photo"), "photo", "photo")
        content["photo"] = sizes
        size = (sizes or [{}])[-1].get("file_size", 0)
        return self._bot_message(
            state,
            content,
            p,
            kind="photo",
            text=content.get("caption"),
            extra={"size": size},
            markup=markup,
        ).api()

    async def _send_file(self, p: Params, kind: str, field_name: str) -> JsonDict:
        state = self._target_chat(p)
        markup = self._markup(p)
        content: JsonDict = {}
        self._caption(p, content)
        stored, _ = self._input_file(p.file(field_name), kind, field_name)
        assert stored is not None
        obj = self._document(stored)
        if kind == "voice":
            obj.pop("file_name", None)
            obj["duration"] = p.get_int("duration", 1) or 1
        content[field_name] = obj
        extra = {"size": stored.file_size, "file_name": stored.file_name}
        if kind == "voice":
            extra["duration"] = obj["duration"]
        return self._bot_message(
            state, content, p, kind=kind, text=content.get("caption"), extra=extra, markup=markup
        ).api()

    async def _api_sendDocument(self, p: Params) -> JsonDict:
        return await self._send_file(p, "document", "document")

    async def _api_sendVoice(self, p: Params) -> JsonDict:
        return await self._send_file(p, "voice", "voice")

    async def _api_sendMediaGroup(self, p: Params) -> list[JsonDict]:
        state = self._target_chat(p)
        media = p.get_json("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad_request("wrong number of media in the group: must be 2-10")
        group_id = str(10**17 + self.next_id())
        contents: list[JsonDict] = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document"):
                raise bad_request("unsupported media type in the group")
            sub = Params(item, p.files)
            content: JsonDict = {"media_group_id": group_id}
            self._caption(sub, content)
            kind = str(item["type"])
            stored, sizes = self._input_file(sub.resolve_file(sub.get_str("media")), kind, "media")
            if kind == "photo":
                content["photo"] = sizes
            else:
                assert stored is not None
                content["document"] = self._document(stored)
            contents.append(content)
        results = []
        for index, content in enumerate(contents):
            record = self._bot_message(
                state,
                content,
                p,
                kind="media_group",
                text=content.get("caption"),
                extra={"count": len(contents)},
                markup=(None, None),
                emit=index == 0,
            )
            results.append(record.api())
        return results

    @staticmethod
    def _location(p: Params) -> JsonDict:
        lat = p.get_float("latitude")
        lon = p.get_float("longitude")
        if lat is None or not -90 <= lat <= 90:
            raise bad_request("wrong latitude")
        if lon is None or not -180 <= lon <= 180:
            raise bad_request("wrong longitude")
        loc: JsonDict = {"latitude": lat, "longitude": lon}
        for key in ("horizontal_accuracy", "heading", "proximity_alert_radius"):
            if p.has(key):
                loc[key] = p.get_float(key)
        if p.has("live_period"):
            loc["live_period"] = p.get_int("live_period")
        return loc

    async def _api_sendLocation(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        loc = self._location(p)
        return self._bot_message(state, {"location": loc}, p, kind="location", extra=loc).api()

    async def _api_sendVenue(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        loc = self._location(p)
        title, address = p.get_str("title"), p.get_str("address")
        if not title or not address:
            raise bad_request("venue title and address must be non-empty")
        venue: JsonDict = {"location": loc, "title": title, "address": address}
        for key in ("foursquare_id", "foursquare_type", "google_place_id", "google_place_type"):
            if p.has(key):
                venue[key] = p.get_str(key)
        return self._bot_message(
            state,
            {"venue": venue, "location": loc},
            p,
            kind="venue",
            extra={**loc, "title": title, "address": address},
        ).api()

    async def _api_sendContact(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        phone, first = p.get_str("phone_number"), p.get_str("first_name")
        if not phone or not first:
            raise bad_request("phone number and first name must be non-empty")
        contact: JsonDict = {"phone_number": phone, "first_name": first}
        for key in ("last_name", "vcard"):
            if p.has(key):
                contact[key] = p.get_str(key)
        return self._bot_message(
            state, {"contact": contact}, p, kind="contact", extra=contact
        ).api()

    async def _api_sendChatAction(self, p: Params) -> bool:
        state = self._target_chat(p)
        action = p.get_str("action")
        if not action:
            raise bad_request("wrong parameter action in request")
        self.chat_actions.append((state.chat_id, action))
        return True

    # ------------------------------------------------------------------ API: edits

    async def _api_editMessageText(self, p: Params) -> JsonDict:
        state, record = self._find_bot_message(p, not_found="message to edit not found")
        if "text" not in record.current:
            raise bad_request("there is no text in the message to edit")
        text, entities = self._text(p)
        inline, _ = self._markup(p, inline_only=True)
        changes: JsonDict = {"text": text, "entities": entities, "reply_markup": inline}
        return self._apply_edit(state, record, changes, kind="edit", text=text)

    async def _api_editMessageCaption(self, p: Params) -> JsonDict:
        state, record = self._find_bot_message(p, not_found="message to edit not found")
        if not any(k in record.current for k in ("photo", "document", "voice", "video")):
            raise bad_request("there is no caption in the message to edit")
        content: JsonDict = {}
        self._caption(p, content)
        inline, _ = self._markup(p, inline_only=True)
        changes: JsonDict = {
            "caption": content.get("caption"),
            "caption_entities": content.get("caption_entities"),
            "reply_markup": inline,
        }
        return self._apply_edit(
            state, record, changes, kind="edit_caption", text=content.get("caption")
        )

    async def _api_editMessageReplyMarkup(self, p: Params) -> JsonDict:
        state, record = self._find_bot_message(p, not_found="message to edit not found")
        inline, _ = self._markup(p, inline_only=True)
        return self._apply_edit(
            state, record, {"reply_markup": inline}, kind="edit_markup", text=None
        )

    async def _api_editMessageLiveLocation(self, p: Params) -> JsonDict:
        state, record = self._find_bot_message(p, not_found="message to edit not found")
        old = record.current.get("location")
        if not old or not old.get("live_period"):
            raise bad_request("message can't be edited")
        loc = {**old, **self._location(p)}
        inline, _ = self._markup(p, inline_only=True)
        return self._apply_edit(
            state,
            record,
            {"location": loc, "reply_markup": inline},
            kind="live_location",
            text=None,
        )

    async def _api_stopMessageLiveLocation(self, p: Params) -> JsonDict:
        state, record = self._find_bot_message(p, not_found="message to edit not found")
        old = record.current.get("location")
        if not old or not old.get("live_period"):
            raise bad_request("message can't be edited")
        loc = {k: v for k, v in old.items() if k != "live_period"}
        inline, _ = self._markup(p, inline_only=True)
        return self._apply_edit(
            state, record, {"location": loc, "reply_markup": inline}, kind="location", text=None
        )

    async def _api_deleteMessage(self, p: Params) -> bool:
        state = self._target_chat(p)
        message_id = p.get_int("message_id")
        record = state.messages.get(message_id) if message_id is not None else None
        if record is None or record.deleted:
            raise bad_request("message to delete not found")
        if not state.is_private and not record.from_bot:
            raise bad_request("message can't be deleted")
        record.deleted = True
        self._emit(
            TranscriptEntry(
                direction="bot",
                chat_id=state.chat_id,
                user_name=state.title,
                kind="delete",
                message_id=record.message_id,
                chat_title=None if state.is_private else state.title,
            )
        )
        return True

    async def _api_deleteMessages(self, p: Params) -> bool:
        ids = p.get_json("message_ids")
        if not isinstance(ids, list) or not ids:
            raise bad_request("message identifiers are not specified")
        state = self._target_chat(p)
        for message_id in ids:
            record = state.messages.get(int(message_id))
            if record is not None and not record.deleted:
                await self._api_deleteMessage(
                    Params({"chat_id": state.chat_id, "message_id": int(message_id)})
                )
        return True

    async def _api_answerCallbackQuery(self, p: Params) -> bool:
        query_id = p.get_str("callback_query_id") or ""
        query = self._callback_queries.get(query_id)
        if query is None or query_id in self._answered:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        answer = AnsweredCallback(
            callback_query_id=query_id,
            text=p.get_str("text"),
            show_alert=p.get_bool("show_alert"),
            url=p.get_str("url"),
            cache_time=p.get_int("cache_time"),
        )
        self.answered_callbacks.append(answer)
        self._answered[query_id] = answer
        chat_id = int(query.get("message", {}).get("chat", {}).get("id", query["from"]["id"]))
        state = self._chats.get(chat_id)
        if answer.text and state is not None:
            self._emit(
                TranscriptEntry(
                    direction="bot",
                    chat_id=chat_id,
                    user_name=state.title,
                    kind="callback_answer",
                    text=answer.text,
                    chat_title=None if state.is_private else state.title,
                    extra={"show_alert": answer.show_alert, "callback_query_id": query_id},
                )
            )
        else:
            self._notify()
        return True

    # ------------------------------------------------------------------ API: settings & misc

    async def _api_setMyCommands(self, p: Params) -> bool:
        commands = p.get_json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be an array of at most 100 BotCommand")
        clean: list[JsonDict] = []
        for item in commands:
            if not isinstance(item, dict):
                raise bad_request("can't parse BotCommand")
            command = str(item.get("command", "")).lstrip("/")
            description = str(item.get("description", ""))
            if not 1 <= len(command) <= 32 or not all(
                c in string.ascii_lowercase + string.digits + "_" for c in command
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": command, "description": description})
        key = (self._scope_key(p.get_json("scope")), p.get_str("language_code") or "")
        self._commands[key] = clean
        return True

    async def _api_getMyCommands(self, p: Params) -> list[JsonDict]:
        return self.commands(p.get_json("scope"), p.get_str("language_code") or "")

    async def _api_deleteMyCommands(self, p: Params) -> bool:
        key = (self._scope_key(p.get_json("scope")), p.get_str("language_code") or "")
        self._commands.pop(key, None)
        return True

    async def _api_setChatMenuButton(self, p: Params) -> bool:
        chat_id = p.get_int("chat_id")
        button = p.get_json("menu_button")
        self._menu_buttons[chat_id] = button if isinstance(button, dict) else {"type": "default"}
        return True

    async def _api_getChatMenuButton(self, p: Params) -> JsonDict:
        chat_id = p.get_int("chat_id")
        button = self._menu_buttons.get(chat_id) or self._menu_buttons.get(None)
        return copy.deepcopy(button) if button else {"type": "commands"}

    async def _set_bot_text(self, p: Params, kind: str, field_name: str) -> bool:
        self._bot_texts[(kind, p.get_str("language_code") or "")] = p.get_str(field_name) or ""
        return True

    async def _api_setMyDescription(self, p: Params) -> bool:
        return await self._set_bot_text(p, "description", "description")

    async def _api_getMyDescription(self, p: Params) -> JsonDict:
        return {
            "description": self._bot_texts.get(
                ("description", p.get_str("language_code") or ""), ""
            )
        }

    async def _api_setMyShortDescription(self, p: Params) -> bool:
        return await self._set_bot_text(p, "short_description", "short_description")

    async def _api_getMyShortDescription(self, p: Params) -> JsonDict:
        key = ("short_description", p.get_str("language_code") or "")
        return {"short_description": self._bot_texts.get(key, "")}

    async def _api_setMyName(self, p: Params) -> bool:
        return await self._set_bot_text(p, "name", "name")

    async def _api_getMyName(self, p: Params) -> JsonDict:
        name = self._bot_texts.get(("name", p.get_str("language_code") or ""))
        return {"name": name or self.bot_user["first_name"]}

    async def _api_getFile(self, p: Params) -> JsonDict:
        stored = self._files.get(p.get_str("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _api_getChat(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        return {**state.chat, "accent_color_id": 0, "max_reaction_count": 11}

    async def _api_getChatMember(self, p: Params) -> JsonDict:
        state = self._target_chat(p)
        user_id = p.get_int("user_id")
        if user_id == self.bot_id:
            return {"status": "member", "user": dict(self.bot_user)}
        user = self._users.get(user_id or 0)
        if user is None:
            raise bad_request("PARTICIPANT_ID_INVALID")
        if state.is_private and state.chat_id != user.id:
            raise bad_request("user not found")
        return {"status": "member", "user": user.as_dict()}

    async def _api_pinChatMessage(self, p: Params) -> bool:
        state = self._target_chat(p)
        if p.get_int("message_id") not in state.messages:
            raise bad_request("message to pin not found")
        return True

    async def _api_unpinChatMessage(self, p: Params) -> bool:
        self._target_chat(p)
        return True

    async def _api_unpinAllChatMessages(self, p: Params) -> bool:
        self._target_chat(p)
        return True
