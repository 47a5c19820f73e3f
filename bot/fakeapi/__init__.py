"""Local fake Telegram Bot API server for end-to-end tests and offline demos.

>>> async with FakeTelegram() as tg:            # doctest: +SKIP
...     alice = tg.user(first_name="Alice")
...     await alice.send("/start")
...     msg = await tg.wait_for(alice.id, "Welcome")
"""

from .formatting import EntityParseError, parse_text
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
)
from .render import format_entry
from .server import FakeTelegram, make_token
from .users import FakeGroup, FakeUser

__all__ = [
    "AnsweredCallback",
    "ApiError",
    "EntityParseError",
    "FakeGroup",
    "FakeTelegram",
    "FakeUser",
    "FaultKind",
    "FaultPlan",
    "InjectedFault",
    "RateLimits",
    "StoredFile",
    "TranscriptEntry",
    "UploadedFile",
    "format_entry",
    "make_token",
    "parse_text",
]
