"""Framework-free helpers the runtime adapters share."""

from __future__ import annotations


def command_parts(text: str) -> tuple[str, str] | None:
    """``/start abc`` → ("start", "abc"); ``/jobs@fieldbot`` → ("jobs", ""); text → None."""
    if not text.startswith("/") or len(text) < 2:
        return None
    head, _, rest = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    if not name or not all(c.isalnum() or c == "_" for c in name):
        return None
    return name, rest.strip()
