"""Logging set-up with a last line of defence: phone numbers and tokens are masked."""

from __future__ import annotations

import logging
import re

_PHONE = re.compile(r"(?<![\w.])\+?\d[\d \-]{7,}\d(?![\w.])")
_TOKEN = re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")


def redact(text: str) -> str:
    text = _TOKEN.sub("<bot-token>", text)
    text = _BEARER.sub(r"\1<redacted>", text)
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
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiogram.event", "httpx", "uvicorn.access", "telegram.ext"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A sweep tick skipped while the previous one still runs is expected, not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    # SQL parameters carry addresses and names: never log them, whatever LOG_LEVEL says.
    for sql in ("aiosqlite", "sqlalchemy", "asyncpg"):
        logging.getLogger(sql).setLevel(max(logging.INFO, root.level))
