"""Request parameter decoding for the fake Bot API."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from .models import UploadedFile, bad_request

# Parameters that clients send as JSON-serialized strings in form / multipart bodies.
JSON_KEYS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "media",
        "commands",
        "scope",
        "menu_button",
        "allowed_updates",
        "link_preview_options",
        "reply_parameters",
        "results",
        "permissions",
        "message_ids",
        "options",
        "explanation_entities",
        "reaction",
        "prices",
        "input_message_content",
    }
)

_TRUE = {"true", "1", "yes", "True"}


async def read_request(request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    """Merge query string and body (JSON, urlencoded or multipart) into params + files."""
    data: dict[str, Any] = dict(request.query)
    files: dict[str, UploadedFile] = {}
    if request.method == "POST" and request.body_exists:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise bad_request("can't parse JSON encoded request") from exc
            if not isinstance(body, dict):
                raise bad_request("JSON object expected")
            data.update(body)
        elif ctype == "multipart/form-data":
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = UploadedFile(
                        field=part.name,
                        filename=part.filename,
                        content_type=part.headers.get(hdrs.CONTENT_TYPE),
                        data=bytes(await part.read()),
                    )
                else:
                    data[part.name] = await part.text()
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    data[key] = value
                elif isinstance(value, web.FileField):
                    files[key] = UploadedFile(
                        field=key,
                        filename=value.filename,
                        content_type=value.content_type,
                        data=value.file.read(),
                    )
    return decode_json_fields(data), files


def decode_json_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Decode the JSON-string encoded nested objects (reply_markup, entities...)."""
    for key in JSON_KEYS & data.keys():
        value = data[key]
        if isinstance(value, str) and value.strip():
            try:
                data[key] = json.loads(value)
            except ValueError as exc:
                raise bad_request(f"can't parse {key} JSON object") from exc
    return data


class Params:
    """Typed access to one call's parameters, raising Bot-API style errors."""

    def __init__(
        self,
        data: dict[str, Any],
        files: dict[str, UploadedFile] | None = None,
        request: web.Request | None = None,
    ) -> None:
        self.data = data
        self.files = files or {}
        self.request = request

    @property
    def client_gone(self) -> bool:
        """True when the HTTP client already closed the connection."""
        if self.request is None:
            return False
        transport = self.request.transport
        return transport is None or transport.is_closing()

    def get(self, key: str) -> Any:
        value = self.data.get(key)
        return None if value == "" else value

    def has(self, key: str) -> bool:
        return self.get(key) is not None or key in self.files

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def get_int(self, key: str, default: int | None = None) -> int | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            try:
                as_float = float(value)
            except (TypeError, ValueError):
                raise bad_request(f'field "{key}" must be of type Integer') from None
            if as_float.is_integer():
                return int(as_float)
            raise bad_request(f'field "{key}" must be of type Integer') from None

    def get_float(self, key: str, default: float | None = None) -> float | None:
        value = self.get(key)
        if value is None:
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{key}" must be of type Float') from None

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        return str(value) in _TRUE

    def get_json(self, key: str) -> Any:
        value = self.get(key)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {key} JSON object") from None
        return value

    def file(self, key: str) -> UploadedFile | str | None:
        """An uploaded part (directly or via ``attach://name``) or a file_id / URL string."""
        if key in self.files:
            return self.files[key]
        value = self.get_str(key)
        return self.resolve_file(value)

    def resolve_file(self, value: str | None) -> UploadedFile | str | None:
        if value is not None and value.startswith("attach://"):
            name = value.removeprefix("attach://")
            if name not in self.files:
                raise bad_request(f"file attach://{name} not found in the request")
            return self.files[name]
        return value

    def require_int(self, key: str, empty: str) -> int:
        value = self.get_int(key)
        if value is None:
            raise bad_request(empty)
        return value
