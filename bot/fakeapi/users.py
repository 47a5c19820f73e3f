"""Simulated Telegram users and groups that talk to the bot through :class:`FakeTelegram`."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from .state import ChatState, JsonDict, MessageRecord

if TYPE_CHECKING:
    from .server import FakeTelegram, Predicate

DEFAULT_JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + (b"fake-jpeg-data" * 16)
    + b"\xff\xd9"
)
DEFAULT_OGG = b"OggS\x00\x02" + b"\x00" * 20 + b"OpusHead" + b"fake-voice" * 16
DEFAULT_WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"fake-sticker" * 4


class FakeGroup:
    """Handle on a group chat created with :meth:`FakeTelegram.group`."""

    def __init__(self, tg: FakeTelegram, chat_id: int, title: str, type_: str) -> None:
        self.tg = tg
        self.id = chat_id
        self.title = title
        self.type = type_

    def messages(self) -> list[JsonDict]:
        """Bot messages sent to this group."""
        return self.tg.messages(self.id)

    def __repr__(self) -> str:
        return f"FakeGroup({self.id}, {self.title!r})"


class FakeUser:
    """A simulated user. Every action creates, queues and returns an Update dict."""

    def __init__(
        self,
        tg: FakeTelegram,
        user_id: int,
        *,
        first_name: str = "Alice",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        phone_number: str | None = None,
    ) -> None:
        self.tg = tg
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.phone_number = phone_number or f"+1555{user_id % 10_000_000:07d}"
        self.location: tuple[float, float] = (52.520008, 13.404954)
        self.blocked = False

    def __repr__(self) -> str:
        return f"FakeUser({self.id}, {self.first_name!r})"

    @property
    def chat_id(self) -> int:
        """Id of the private chat with the bot (== user id)."""
        return self.id

    @property
    def started(self) -> bool:
        """Whether the user ever wrote to the bot (only then may the bot message them)."""
        return self.tg.has_chat(self.id)

    def as_dict(self) -> JsonDict:
        """The Telegram ``User`` object."""
        data: JsonDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data

    # ------------------------------------------------------------------ helpers

    def _state(self, chat: FakeGroup | None) -> ChatState:
        return self.tg.state_for(self, chat)

    def messages(self) -> list[JsonDict]:
        """Bot messages in this user's private chat."""
        return self.tg.messages(self.id)

    async def wait_for(
        self,
        predicate: Predicate = None,
        timeout: float = 5.0,
        *,
        after: int | None = None,
    ) -> JsonDict:
        """Shortcut for ``tg.wait_for(user.id, ...)``."""
        return await self.tg.wait_for(self.id, predicate, timeout, after=after)

    # ------------------------------------------------------------------ actions

    async def send(
        self, text: str, *, chat: FakeGroup | None = None, reply_to: int | None = None
    ) -> JsonDict:
        """Send a text message; a leading ``/command`` gets a ``bot_command`` entity."""
        content: JsonDict = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0] if text.strip() else text
            content["entities"] = [
                {
                    "type": "bot_command",
                    "offset": 0,
                    "length": len(command.encode("utf-16-le")) // 2,
                }
            ]
        if reply_to is not None:
            target = self._state(chat).messages.get(reply_to)
            if target is None:
                raise AssertionError(f"no message {reply_to} to reply to")
            replied = target.api()
            replied.pop("reply_to_message", None)
            content["reply_to_message"] = replied
        return self.tg.user_message(self, chat, content, kind="text", text=text)

    def _find_button(
        self, state: ChatState, button: str, message: JsonDict | int | None
    ) -> tuple[MessageRecord, JsonDict]:
        if message is not None:
            mid = message if isinstance(message, int) else int(message["message_id"])
            record = state.messages.get(mid)
            if record is None or not record.from_bot:
                raise AssertionError(f"no bot message {mid} in chat {state.chat_id}")
            if record.deleted:
                raise AssertionError(f"message {mid} was deleted; its buttons can't be pressed")
            candidates = [record]
        else:
            candidates = [r for r in reversed(state.bot_log) if not r.deleted and r.inline_keyboard]
        for field in ("text", "callback_data"):
            for record in candidates:
                for row in record.inline_keyboard:
                    for btn in row:
                        if btn.get(field) == button:
                            return record, btn
        available = [
            f"#{r.message_id}: "
            + " ".join(
                f"[{b.get('text')}]({b.get('callback_data')})"
                for row in r.inline_keyboard
                for b in row
            )
            for r in candidates[:5]
        ]
        listing = "\n  ".join(available) if available else "(no inline keyboards)"
        raise AssertionError(
            f"no inline button {button!r} in chat {state.chat_id}; available:\n  {listing}"
        )

    async def press(
        self,
        button: str,
        message: JsonDict | int | None = None,
        *,
        chat: FakeGroup | None = None,
    ) -> JsonDict:
        """Press an inline button (matched by exact text, else by callback_data) on
        ``message`` or on the latest bot message whose keyboard contains it."""
        state = self._state(chat)
        record, btn = self._find_button(state, button, message)
        if btn.get("callback_data") is None:
            kinds = [k for k in btn if k != "text"]
            raise AssertionError(
                f"button {btn.get('text')!r} is not a callback button ({', '.join(kinds)})"
            )
        return self._callback(state, record, str(btn["callback_data"]), str(btn.get("text")))

    async def press_data(
        self, data: str, message_id: int | None = None, *, chat: FakeGroup | None = None
    ) -> JsonDict:
        """Send a (possibly forged) callback query with arbitrary ``data`` for a bot message
        (default: the latest one in the chat)."""
        state = self._state(chat)
        if message_id is None:
            live = [r for r in state.bot_log if not r.deleted]
            if not live:
                raise AssertionError(f"no bot message in chat {state.chat_id} to press on")
            record = live[-1]
        else:
            found = state.messages.get(message_id)
            if found is None:
                raise AssertionError(f"no message {message_id} in chat {state.chat_id}")
            record = found
        return self._callback(state, record, data, None)

    def _callback(
        self, state: ChatState, record: MessageRecord, data: str, label: str | None
    ) -> JsonDict:
        tg = self.tg
        query: JsonDict = {
            "id": str(4_000_000_000_000_000 + tg.next_id()),
            "from": self.as_dict(),
            "message": record.api(),
            "chat_instance": tg.chat_instance(state.chat_id),
            "data": data,
        }
        tg.register_callback(query)
        tg.emit_user(
            self,
            state,
            "callback",
            label or data,
            record.message_id,
            {"button": label, "data": data, "callback_query_id": query["id"]},
        )
        return tg.enqueue("callback_query", query)

    async def tap(self, text: str, *, chat: FakeGroup | None = None) -> JsonDict:
        """Tap a button of the chat's current reply keyboard (contact/location buttons
        share :attr:`phone_number` / :attr:`location`)."""
        state = self._state(chat)
        keyboard = state.reply_keyboard
        rows: list[list[JsonDict]] = keyboard.get("keyboard", []) if keyboard else []
        for row in rows:
            for btn in row:
                if btn.get("text") != text:
                    continue
                if keyboard and keyboard.get("one_time_keyboard"):
                    state.reply_keyboard = None
                if btn.get("request_contact"):
                    return await self.share_contact(self.phone_number, chat=chat)
                if btn.get("request_location"):
                    return await self.share_location(*self.location, chat=chat)
                return await self.send(text, chat=chat)
        labels = [[b.get("text") for b in row] for row in rows]
        raise AssertionError(f"no reply-keyboard button {text!r}; current keyboard: {labels}")

    async def share_contact(
        self,
        phone: str | None = None,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        *,
        own: bool = True,
        chat: FakeGroup | None = None,
    ) -> JsonDict:
        """Share a contact; by default the user's own (``user_id`` = own id). Pass
        ``own=False`` to share someone else's contact without a user_id."""
        contact: JsonDict = {
            "phone_number": phone or self.phone_number,
            "first_name": first_name or self.first_name,
        }
        last = last_name if last_name is not None else (self.last_name if own else None)
        if last:
            contact["last_name"] = last
        if user_id is not None:
            contact["user_id"] = user_id
        elif own:
            contact["user_id"] = self.id
        return self.tg.user_message(
            self, chat, {"contact": contact}, kind="contact", extra=dict(contact)
        )

    async def share_location(
        self,
        lat: float,
        lon: float,
        live_period: int | None = None,
        *,
        chat: FakeGroup | None = None,
    ) -> JsonDict:
        """Send a (live, if ``live_period``) location."""
        location: JsonDict = {"latitude": lat, "longitude": lon}
        if live_period:
            location["live_period"] = live_period
        return self.tg.user_message(
            self, chat, {"location": location}, kind="location", extra=dict(location)
        )

    def _own_message(
        self, message_id: int, chat: FakeGroup | None
    ) -> tuple[ChatState, MessageRecord]:
        state = self._state(chat)
        record = state.messages.get(message_id)
        if record is None or record.from_bot or record.sender_id != self.id:
            raise AssertionError(f"message {message_id} is not a message of {self!r}")
        return state, record

    def _edited(self, state: ChatState, record: MessageRecord, changes: JsonDict) -> JsonDict:
        record.edits.append(copy.deepcopy(record.current))
        record.current.update(changes)
        record.current["edit_date"] = int(time.time())
        return self.tg.enqueue("edited_message", record.current)

    async def update_live_location(
        self, message_id: int, lat: float, lon: float, *, chat: FakeGroup | None = None
    ) -> JsonDict:
        """Move a live location: an ``edited_message`` update, as Telegram sends."""
        state, record = self._own_message(message_id, chat)
        old = record.current.get("location")
        if not old or not old.get("live_period"):
            raise AssertionError(f"message {message_id} is not a live location")
        location = {**old, "latitude": lat, "longitude": lon}
        self.tg.emit_user(self, state, "live_location", None, message_id, dict(location))
        return self._edited(state, record, {"location": location})

    async def edit_text(
        self, message_id: int, new_text: str, *, chat: FakeGroup | None = None
    ) -> JsonDict:
        """Edit one of the user's own text messages (``edited_message`` update)."""
        state, record = self._own_message(message_id, chat)
        if "text" not in record.current:
            raise AssertionError(f"message {message_id} has no text")
        self.tg.emit_user(self, state, "edit", new_text, message_id, {})
        return self._edited(state, record, {"text": new_text})

    async def send_photo(
        self,
        data: bytes = DEFAULT_JPEG,
        caption: str | None = None,
        *,
        chat: FakeGroup | None = None,
    ) -> JsonDict:
        """Send a photo (2 sizes); its bytes are downloadable through getFile."""
        content: JsonDict = {"photo": self.tg.photo_sizes(data)}
        if caption:
            content["caption"] = caption
        return self.tg.user_message(
            self, chat, content, kind="photo", text=caption, extra={"size": len(data)}
        )

    async def send_voice(
        self, data: bytes = DEFAULT_OGG, duration: int = 3, *, chat: FakeGroup | None = None
    ) -> JsonDict:
        """Send a voice note (audio/ogg)."""
        stored = self.tg.store_file("voice", data, ext="oga", mime_type="audio/ogg")
        voice: JsonDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": stored.file_size,
        }
        return self.tg.user_message(
            self, chat, {"voice": voice}, kind="voice", extra={"duration": duration}
        )

    async def send_document(
        self,
        data: bytes,
        file_name: str = "document.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        *,
        chat: FakeGroup | None = None,
    ) -> JsonDict:
        """Send a file as a document."""
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self.tg.store_file(
            "document", data, ext=ext, file_name=file_name, mime_type=mime_type
        )
        document: JsonDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.file_size,
        }
        content: JsonDict = {"document": document}
        if caption:
            content["caption"] = caption
        extra: dict[str, Any] = {"file_name": file_name, "size": len(data)}
        return self.tg.user_message(self, chat, content, kind="document", text=caption, extra=extra)

    async def send_sticker(self, emoji: str = "👍", *, chat: FakeGroup | None = None) -> JsonDict:
        """Send a (static) sticker."""
        stored = self.tg.store_file("sticker", DEFAULT_WEBP, ext="webp", mime_type="image/webp")
        sticker: JsonDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.file_size,
        }
        return self.tg.user_message(
            self, chat, {"sticker": sticker}, kind="sticker", extra={"emoji": emoji}
        )

    async def block(self) -> JsonDict:
        """Block the bot: later sends fail with 403; emits a ``my_chat_member`` update."""
        self.blocked = True
        return self._member_update("member", "kicked", "block")

    async def unblock(self) -> JsonDict:
        """Unblock the bot (``my_chat_member`` update back to member)."""
        self.blocked = False
        return self._member_update("kicked", "member", "unblock")

    def _member_update(self, old: str, new: str, kind: str) -> JsonDict:
        state = self._state(None)
        bot = dict(self.tg.bot_user)
        payload: JsonDict = {
            "chat": dict(state.chat),
            "from": self.as_dict(),
            "date": int(time.time()),
            "old_chat_member": {
                "status": old,
                "user": bot,
                **({"until_date": 0} if old == "kicked" else {}),
            },
            "new_chat_member": {
                "status": new,
                "user": bot,
                **({"until_date": 0} if new == "kicked" else {}),
            },
        }
        self.tg.emit_user(self, state, kind, None, None, {})
        return self.tg.enqueue("my_chat_member", payload)
