"""Files to upload, as the outbox keeps them (framework-free; each runtime wraps the bytes).

An outbox payload is JSON, so a file travels as ``<field>_b64`` (base64 of the bytes) and
``<field>_name`` (the file name the recipient sees), e.g. ``document_b64`` + ``document_name``
for ``sendDocument``. :func:`split_uploads` takes them out; the runtime puts its framework's
upload object (aiogram ``BufferedInputFile``, PTB ``InputFile``) under ``<field>``.
"""

from __future__ import annotations

import base64
from typing import Any

UPLOAD_FIELDS = ("document", "photo")


def split_uploads(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """``payload`` without the upload keys, and ``{field: (file name, bytes)}``."""
    if not any(f"{field}_b64" in payload for field in UPLOAD_FIELDS):
        return payload, {}
    rest = dict(payload)
    files: dict[str, tuple[str, bytes]] = {}
    for field in UPLOAD_FIELDS:
        encoded = rest.pop(f"{field}_b64", None)
        name = rest.pop(f"{field}_name", None)
        if encoded is not None:
            files[field] = (str(name or field), base64.b64decode(encoded))
    return rest, files
