"""Plain data types shared by the fake Telegram server."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["user", "bot"]
FaultKind = Literal["429", "500", "502", "timeout", "drop", "lost_response"]

DEFAULT_FAULT_KINDS: tuple[FaultKind, ...] = ("429", "500", "502", "timeout", "drop")


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": code, "description": ...}``."""

    def __init__(
        self, code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code} {description}")
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        """The JSON body Telegram would send."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(text: str) -> ApiError:
    """400 with the usual ``Bad Request: `` prefix."""
    return ApiError(400, f"Bad Request: {text}")


def too_many_requests(retry_after: int) -> ApiError:
    """429 with ``parameters.retry_after`` like Telegram's flood control."""
    return ApiError(
        429,
        f"Too Many Requests: retry after {retry_after}",
        {"retry_after": retry_after},
    )


@dataclass
class UploadedFile:
    """A file part received in a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class StoredFile:
    """A file the fake knows (sent by a fake user or uploaded by the bot)."""

    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None
    uploaded_by_bot: bool = False

    @property
    def file_size(self) -> int:
        return len(self.data)


@dataclass
class AnsweredCallback:
    """An ``answerCallbackQuery`` call made by the bot."""

    callback_query_id: str
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    cache_time: int | None = None


@dataclass
class InjectedFault:
    """A fault the :class:`FaultPlan` injected into one API call."""

    method: str
    kind: FaultKind
    chat_id: int | None
    at: float


@dataclass
class FaultPlan:
    """Seeded random fault injection.

    ``rate`` is the probability that an eligible call (``methods`` is None = every method)
    fails with one of ``kinds``. ``timeout`` waits ``timeout_delay`` seconds then drops
    the connection; ``drop`` closes it at once; ``lost_response`` (opt-in) executes the
    call and then drops the connection. ``max_faults`` stops injecting after that many.
    """

    rate: float = 0.1
    kinds: tuple[FaultKind, ...] = DEFAULT_FAULT_KINDS
    retry_after: int = 1
    seed: int | None = 1
    methods: set[str] | frozenset[str] | None = None
    timeout_delay: float = 65.0
    max_faults: int | None = None
    injected: int = field(default=0, init=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self, method: str) -> FaultKind | None:
        """Decide (deterministically for a given seed) whether to fault this call."""
        if self.methods is not None and method not in self.methods:
            return None
        if self.max_faults is not None and self.injected >= self.max_faults:
            return None
        if not self.kinds or self._rng.random() >= self.rate:
            return None
        self.injected += 1
        return self._rng.choice(self.kinds)


@dataclass
class RateLimits:
    """Flood-control limits; None disables a limit."""

    global_per_second: float | None = 30
    per_chat_per_second: float | None = 1
    per_group_per_minute: float | None = 20


@dataclass
class TranscriptEntry:
    """One line of the conversation, for observers and failure messages.

    ``kind`` is e.g. ``text``, ``callback``, ``contact``, ``location``, ``live_location``,
    ``photo``, ``voice``, ``document``, ``sticker``, ``media_group``, ``venue``, ``edit``,
    ``edit_markup``, ``edit_caption``, ``delete``, ``callback_answer``. ``user_name`` is
    the user acting (user direction) or the recipient chat's name (bot direction).
    """

    direction: Direction
    chat_id: int
    user_name: str
    kind: str
    text: str | None = None
    buttons: list[list[str]] = field(default_factory=list)
    keyboard: list[list[str]] | None = None
    message_id: int | None = None
    chat_title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
