"""Issue 8 item 11, the unit side: what production's log handler lets through (bot/logs.py).

The end-to-end side is the autouse fixture ``no_secrets_in_logs`` in tests/e2e/conftest.py:
every e2e test fails if a log line holds a phone number, address, token or secret.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.logs import NOISY, SQL, make_handler, redact, set_levels


@pytest.fixture
def production_log() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("", *NOISY, *SQL, "apscheduler")}
    stream = io.StringIO()
    handler = make_handler(stream)
    root.addHandler(handler)
    try:
        yield stream, handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
async def test_sql_and_its_parameters_are_never_logged(
    production_log: tuple[io.StringIO, logging.Handler], level: str, tmp_path
) -> None:
    """SQLAlchemy logs each statement with its parameters at INFO: held at WARNING always."""
    stream, _ = production_log
    set_levels(level)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT :address"), {"address": "88 Century Avenue"})
    finally:
        await engine.dispose()
    assert "Century Avenue" not in stream.getvalue()
    assert "SELECT" not in stream.getvalue()


def test_the_handler_masks_phones_tokens_and_secrets_in_messages_args_and_tracebacks(
    production_log: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, _ = production_log
    set_levels("DEBUG")
    log = logging.getLogger("bot.test_logs")
    token = "123456789:AAEhBOweik9ai0Qa-test-token-xxxxxxxx"
    log.info("calling %s for %s", "+86 138 0013 8000", "8613800138000")
    log.debug("GET https://api.telegram.org/bot%s/getMe", token)
    log.info("headers {'X-Telegram-Bot-Api-Secret-Token': 's3cret-token'} Bearer test-api-token")
    try:
        raise RuntimeError(f"contact 13800138000 with {token}")
    except RuntimeError:
        log.exception("failed")
    log.info("stack", stack_info=True, extra={})
    out = stream.getvalue()
    for secret in ("138 0013", "13800138000", "AAEh", "s3cret-token", "test-api-token"):
        assert secret not in out, secret
    assert "<phone>" in out and "<bot-token>" in out and "Traceback" in out


@pytest.mark.parametrize(
    "kept",
    [
        "job FB000012 at 2026-12-01 09:00",
        "update 1234567 done",  # update ids and Telegram ids are not phone numbers
        "error id 3fa9c2d1",
    ],
)
def test_ids_and_dates_are_kept(kept: str) -> None:
    assert redact(kept) == kept
