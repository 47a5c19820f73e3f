"""Our own event type: what a user did, independent of any Telegram framework."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import StrEnum

# NUL and lone surrogates: JSON carries them ("\u0000", "\ud800") and both runtimes pass
# them on, but neither database stores them (SQLite: UnicodeEncodeError; PostgreSQL refuses
# NUL in text). A real surrogate pair arrives as one character, so any left is alone.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Kind(StrEnum):
    COMMAND = "command"
    TEXT = "text"
    BUTTON = "button"
    CONTACT = "contact"
    LOCATION = "location"
    PHOTO = "photo"
    VOICE = "voice"
    DOCUMENT = "document"
    OTHER = "other"  # stickers, polls, anything we do not take


@dataclass(frozen=True)
class Event:
    """One incoming update, reduced to what fieldbot uses."""

    update_id: int
    kind: Kind
    telegram_id: int
    chat_id: int
    private: bool = True
    language: str | None = None
    first_name: str = ""
    text: str = ""
    command: str = ""
    args: str = ""
    data: str = ""
    callback_id: str = ""
    message_id: int | None = None
    contact_phone: str = ""
    contact_user_id: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    live: bool = False
    edited: bool = False
    file_ids: tuple[str, ...] = field(default_factory=tuple)
    file_size: int = 0
    duration: int = 0
    mime_type: str = ""

    def __post_init__(self) -> None:
        """Text from outside, made storable once, here: NUL and lone surrogates become U+FFFD."""
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value and _UNSTORABLE.search(value):
                object.__setattr__(self, name, _UNSTORABLE.sub("\ufffd", value))
        if any(_UNSTORABLE.search(f) for f in self.file_ids):
            cleaned = tuple(_UNSTORABLE.sub("\ufffd", f) for f in self.file_ids)
            object.__setattr__(self, "file_ids", cleaned)


_TEXT_FIELDS = tuple(f.name for f in fields(Event) if f.type == "str")
