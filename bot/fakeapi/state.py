"""In-memory chat state of the fake Telegram server."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


@dataclass
class MessageRecord:
    """A message in a chat: its current API shape plus bookkeeping."""

    current: JsonDict
    from_bot: bool
    sender_id: int | None = None
    edits: list[JsonDict] = field(default_factory=list)
    deleted: bool = False
    reply_keyboard: JsonDict | None = None

    @property
    def message_id(self) -> int:
        return int(self.current["message_id"])

    @property
    def inline_keyboard(self) -> list[list[JsonDict]]:
        markup = self.current.get("reply_markup") or {}
        rows: list[list[JsonDict]] = markup.get("inline_keyboard") or []
        return rows

    def api(self) -> JsonDict:
        """A deep copy of the message exactly as the Bot API returns it."""
        return copy.deepcopy(self.current)

    def snapshot(self) -> JsonDict:
        """API shape plus ``edits`` (superseded versions, oldest first), ``deleted`` and
        ``reply_keyboard`` (the non-inline markup sent with it, if any)."""
        data = self.api()
        data["edits"] = copy.deepcopy(self.edits)
        data["deleted"] = self.deleted
        data["reply_keyboard"] = copy.deepcopy(self.reply_keyboard)
        return data


@dataclass
class ChatState:
    """One chat (private or group) as the fake sees it."""

    chat: JsonDict
    title: str
    is_private: bool
    next_message_id: int = 1
    messages: dict[int, MessageRecord] = field(default_factory=dict)
    bot_log: list[MessageRecord] = field(default_factory=list)
    edit_log: list[tuple[MessageRecord, JsonDict]] = field(default_factory=list)
    reply_keyboard: JsonDict | None = None
    cursor: int = 0
    edit_cursor: int = 0

    @property
    def chat_id(self) -> int:
        return int(self.chat["id"])

    def new_message_id(self) -> int:
        mid = self.next_message_id
        self.next_message_id += 1
        return mid

    def add(self, record: MessageRecord) -> MessageRecord:
        self.messages[record.message_id] = record
        if record.from_bot:
            self.bot_log.append(record)
        return record
