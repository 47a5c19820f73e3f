"""Our own event type: what a user did, independent of any Telegram framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
