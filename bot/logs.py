"""Logging set-up with a last line of defence: phone numbers and tokens are masked."""

from __future__ import annotations

import logging
import re
from typing import IO

_PHONE = re.compile(r"(?<![\w.])\+?\d[\d \-]{7,}\d(?![\w.])")
# A bot token, also inside a Bot API URL (``/bot123456:ABC…/getMe``, where ``\b`` fails).
_TOKEN = re.compile(r"(?<!\d)\d{6,12}:[A-Za-z0-9_-]{30,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_SECRET_HEADER = re.compile(
    r"(?i)(x-telegram-bot-api-secret-token['\"]?\s*[:=]\s*['\"]?)[^\s\"',}]+"
)

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that are chatty at INFO; LOG_LEVEL does not open them (WARNING and above only).
NOISY = ("aiogram.event", "httpx", "uvicorn.access", "telegram.ext")
# SQL statements carry parameters (addresses, names, phone numbers): never logged, whatever
# LOG_LEVEL says. SQLAlchemy logs every statement with its parameters at INFO.
SQL = ("aiosqlite", "sqlalchemy", "asyncpg")


def redact(text: str) -> str:
    text = _TOKEN.sub("<bot-token>", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    text = _SECRET_HEADER.sub(r"\1<redacted>", text)
    return _PHONE.sub(_mask_phone, text)


_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")


def _mask_phone(match: re.Match[str]) -> str:
    found = match.group()
    if sum(c.isdigit() for c in found) < 9 or _DATE.match(found):
        return found
    return "<phone>"


class RedactingFilter(logging.Filter):
    """Renders each record once, masked; secrets and phone numbers never reach a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def make_handler(stream: IO[str] | None = None) -> logging.Handler:
    """The one handler production logs through: formatted, every record redacted first."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    return handler


def set_levels(level: str = "INFO") -> None:
    """``level`` for the root logger; the noisy and the SQL loggers are held at WARNING."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A sweep tick skipped while the previous one still runs is expected, not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    for sql in SQL:
        logging.getLogger(sql).setLevel(max(logging.WARNING, root.level))


def setup_logging(level: str = "INFO") -> None:
    logging.getLogger().handlers[:] = [make_handler()]
    set_levels(level)
