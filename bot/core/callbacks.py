"""Callback data: ``<prefix>:<id>:<action>[:<arg>]``, at most 64 bytes, checked on pack."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 64
_SAFE = re.compile(r"^[A-Za-z0-9_.\-]*$")


class CallbackTooLong(ValueError):
    pass


@dataclass(frozen=True)
class Callback:
    prefix: str
    id: int
    action: str
    arg: str = ""

    def pack(self) -> str:
        for part in (self.prefix, self.action, self.arg):
            if not _SAFE.match(part):
                raise ValueError(f"callback part {part!r} has characters outside [A-Za-z0-9_.-]")
        data = f"{self.prefix}:{self.id}:{self.action}"
        if self.arg:
            data += f":{self.arg}"
        if len(data.encode()) > MAX_BYTES:
            raise CallbackTooLong(data)
        return data


def cb(prefix: str, id: int, action: str, arg: str | int = "") -> str:
    """Pack callback data for a button."""
    return Callback(prefix, id, action, str(arg)).pack()


def unpack(data: str) -> Callback | None:
    """Decode callback data; anything malformed (forged, old format) gives None."""
    if not data:
        return None
    try:
        size = len(data.encode())
    except UnicodeEncodeError:  # a lone surrogate: no button of ours carries one
        return None
    if size > MAX_BYTES:
        return None
    parts = data.split(":")
    if len(parts) not in (3, 4):
        return None
    prefix, raw_id, action = parts[0], parts[1], parts[2]
    arg = parts[3] if len(parts) == 4 else ""
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:  # not "²" or "１"
        return None
    if not all(_SAFE.match(p) for p in (prefix, action, arg)) or not prefix or not action:
        return None
    return Callback(prefix, int(raw_id), action, arg)
