"""Outgoing messages as data: a template key with parameters and a keyboard description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.core.enums import Priority


@dataclass(frozen=True)
class Button:
    """An inline button: a label key (templates/buttons.j2) and callback data or a URL."""

    label: str
    data: str = ""
    url: str = ""
    params: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def of(label: str, data: str = "", url: str = "", **params: Any) -> Button:
        return Button(label=label, data=data, url=url, params=tuple(sorted(params.items())))


@dataclass(frozen=True)
class KeyButton:
    """A reply-keyboard button; may ask Telegram for the user's location or contact."""

    label: str
    request_location: bool = False
    request_contact: bool = False


REMOVE_KEYBOARD: tuple[tuple[KeyButton, ...], ...] = ()


@dataclass(frozen=True)
class Msg:
    """A message to one recipient: a user of ours (``user_id``) or a raw chat."""

    template: str
    params: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None
    chat_id: int | None = None
    locale: str | None = None
    buttons: tuple[tuple[Button, ...], ...] | None = None
    keyboard: tuple[tuple[KeyButton, ...], ...] | None = None
    priority: int = Priority.NORMAL
    ref: str | None = None
    edit: str | None = None
    location: tuple[float, float] | None = None
    photos: tuple[str, ...] = ()
    callback_answer: str = ""
    urgent: bool = True


@dataclass(frozen=True)
class CallbackAnswer:
    """The answer to a button press (a toast, or nothing)."""

    callback_id: str
    template: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    alert: bool = False
