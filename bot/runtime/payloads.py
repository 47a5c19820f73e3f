"""Framework-free reading of a raw update, for the rare path where the framework failed."""

from __future__ import annotations

from typing import Any

from bot.core.events import Event, Kind


def event_of_payload(payload: dict[str, Any]) -> Event:
    """Just enough of an update to apologise to its sender."""
    update_id = int(payload.get("update_id", 0))
    query = payload.get("callback_query")
    if query:
        sender = query.get("from", {})
        chat = (query.get("message") or {}).get("chat") or {"id": sender.get("id", 0)}
        return Event(
            update_id=update_id,
            kind=Kind.BUTTON,
            telegram_id=int(sender.get("id", 0)),
            chat_id=int(chat.get("id", 0)),
            language=sender.get("language_code"),
            callback_id=str(query.get("id", "")),
        )
    message = payload.get("message") or payload.get("edited_message") or {}
    sender = message.get("from", {})
    chat = message.get("chat", {})
    return Event(
        update_id=update_id,
        kind=Kind.OTHER,
        telegram_id=int(sender.get("id", chat.get("id", 0))),
        chat_id=int(chat.get("id", 0)),
        private=chat.get("type", "private") == "private",
        language=sender.get("language_code"),
    )
