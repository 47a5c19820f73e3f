"""Terminal rendering of :class:`TranscriptEntry` records."""

from __future__ import annotations

from typing import Any

from .models import TranscriptEntry

INDENT = "   "


def _num(value: Any) -> str:
    return f"{value:.5f}" if isinstance(value, float) else str(value)


def _body(entry: TranscriptEntry) -> str:
    e = entry.extra
    text = entry.text or ""
    caption = f" {text}" if text else ""
    kind = entry.kind
    if kind == "text":
        return text
    if kind == "callback":
        label = e.get("button") or e.get("data")
        return f"(pressed [{label}])"
    if kind == "contact":
        name = " ".join(x for x in (e.get("first_name"), e.get("last_name")) if x)
        return f"(contact: {' '.join(x for x in (e.get('phone_number'), name) if x)})"
    if kind in ("location", "live_location", "venue"):
        where = f"{_num(e.get('latitude'))}, {_num(e.get('longitude'))}"
        if kind == "venue":
            return f"(📍 venue {e.get('title')}, {e.get('address')} @ {where})"
        live = f", live {e['live_period']}s" if e.get("live_period") else ""
        label = "live location update" if kind == "live_location" else "location"
        return f"(📍 {label} {where}{live})"
    if kind == "photo":
        return f"(photo, {e.get('size', '?')} bytes){caption}"
    if kind == "voice":
        return f"(voice, {e.get('duration', '?')}s){caption}"
    if kind == "document":
        return f"(document {e.get('file_name')}, {e.get('size', '?')} bytes){caption}"
    if kind == "sticker":
        return f"(sticker {e.get('emoji') or ''})".replace(" )", ")")
    if kind == "media_group":
        return f"(album of {e.get('count')}){caption}"
    if kind == "edit":
        return f"(edited #{entry.message_id}) {text}".rstrip()
    if kind == "edit_caption":
        return f"(caption edited #{entry.message_id}) {text}".rstrip()
    if kind == "edit_markup":
        return f"(buttons changed on #{entry.message_id})"
    if kind == "delete":
        return f"(deleted #{entry.message_id})"
    if kind == "callback_answer":
        style = "alert" if e.get("show_alert") else "toast"
        return f"({style}) {text}".rstrip()
    if kind == "block":
        return "(blocked the bot)"
    if kind == "unblock":
        return "(unblocked the bot)"
    return f"({kind}){caption}"


def format_entry(entry: TranscriptEntry) -> str:
    """Render one entry as a few readable lines, e.g. ``[Alice → bot] /start abc``."""
    if entry.direction == "user":
        who = entry.user_name
        if entry.chat_title:
            who = f"{who} @ {entry.chat_title}"
        head = f"[{who} → bot]"
    else:
        head = f"[bot → {entry.chat_title or entry.user_name}]"
    body_lines = _body(entry).split("\n")
    lines = [f"{head} {body_lines[0]}".rstrip()]
    lines += [f"{INDENT} {line}".rstrip() for line in body_lines[1:]]
    for row in entry.buttons:
        lines.append(INDENT + " ".join(f"[{label}]" for label in row))
    if entry.keyboard:
        rows = " / ".join(" | ".join(row) for row in entry.keyboard)
        lines.append(f"{INDENT}(keyboard: {rows})")
    elif entry.extra.get("remove_keyboard"):
        lines.append(f"{INDENT}(keyboard removed)")
    return "\n".join(lines)
