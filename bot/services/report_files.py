"""Report attachments: CSV bytes queued as ``sendDocument``.

The bytes travel in the outbox row itself (``document_b64`` + ``document_name``, see
bot/runtime/uploads.py), so whichever worker process sends the row can upload the file.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Sequence

from bot.core.enums import Priority
from bot.db.models import User
from bot.services.quiet import next_allowed
from bot.services.uow import UnitOfWork

MAX_CAPTION = 1024


def csv_bytes(rows: Sequence[Sequence[object]]) -> bytes:
    """``rows`` as UTF-8 CSV with a BOM (spreadsheets then read Chinese correctly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if cell is None else _safe_cell(cell) for cell in row])
    return buffer.getvalue().encode("utf-8-sig")


# What makes a spreadsheet read a cell as a formula (OWASP "CSV injection"): = + - @, and a
# leading tab or carriage return; the full-width forms too (CJK input methods type them).
_FORMULA_START = frozenset("=+-@\t\r＝＋－＠")


def _safe_cell(cell: object) -> object:
    """Text starting like a formula is quoted, so a spreadsheet never runs it (CSV injection)."""
    if isinstance(cell, str) and cell[:1] in _FORMULA_START:
        return "'" + cell
    return cell


async def queue_document(
    uow: UnitOfWork,
    user: User,
    *,
    name: str,
    data: bytes,
    caption: str = "",
    urgent: bool = True,
    priority: int = Priority.NORMAL,
) -> bool:
    """Queue ``data`` as the document ``name`` to ``user`` (after their quiet hours unless
    urgent); False when they cannot receive it."""
    if user.chat_id is None or not user.active:
        return False
    now = uow.clock.now()
    not_before = now
    if not urgent:
        tz = user.timezone or uow.settings.timezone
        not_before = next_allowed(now, tz, uow.settings.quiet_hours)
    payload: dict[str, object] = {
        "chat_id": user.chat_id,
        "document_b64": base64.b64encode(data).decode("ascii"),
        "document_name": name,
    }
    if caption:
        payload["caption"] = caption[:MAX_CAPTION]
    uow.out.queue(user.chat_id, "sendDocument", payload, priority=priority, not_before=not_before)
    return True
