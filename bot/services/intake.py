"""Dispatch intake: one validation for the CLI, the REST API and CSV imports."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.core.enums import ServiceType
from bot.services.errors import FieldError
from bot.services.phones import BadPhone, normalise_phone

SERVICE_TYPE_NAMES = {
    "installation": ServiceType.INSTALLATION,
    "install": ServiceType.INSTALLATION,
    "安装": ServiceType.INSTALLATION,
    "startup": ServiceType.STARTUP,
    "start-up": ServiceType.STARTUP,
    "commissioning": ServiceType.STARTUP,
    "开机": ServiceType.STARTUP,
    "repair": ServiceType.REPAIR,
    "维修": ServiceType.REPAIR,
    "maintenance": ServiceType.MAINTENANCE,
    "维护保养": ServiceType.MAINTENANCE,
    "保养": ServiceType.MAINTENANCE,
}


FIRST_YEAR, LAST_YEAR = 2000, 2099  # beyond these a time zone shift overflows the datetime type
_LINE_BREAKS = frozenset("\n\r\t")


def _printable(value: str, *, newlines: bool = False) -> str:
    """Refuse control characters (NUL, ESC, ...) and lone surrogates: the database or
    Telegram would choke on them later (PostgreSQL refuses NUL in text). Multi-line fields
    keep their line breaks and tabs."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs") and not (newlines and char in _LINE_BREAKS):
            raise ValueError(f"contains a control character (U+{ord(char):04X})")
    return value


EXAMPLE: dict[str, Any] = {
    "customer": "Acme Foods",
    "contact_name": "Li Na",
    "contact_phone": "+86 138 0013 8000",
    "address": "88 Century Avenue, Pudong",
    "latitude": 31.2304,
    "longitude": 121.4737,
    "equipment_model": "CH-200 chiller",
    "quantity": 2,
    "serials": ["SN-1001", "SN-1002"],
    "service_type": "repair",
    "window_start": "2030-06-03T09:00:00",
    "window_end": "2030-06-03T12:00:00",
    "description": "Compressor trips after ten minutes",
    "ref": "ERP-2030-0001",
}


class DispatchIn(BaseModel):
    """A new dispatch as the back office sends it (times without a zone are site-local)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [EXAMPLE]},
    )

    customer: str = Field(min_length=1, max_length=200, description="Customer unit name")
    contact_name: str = Field(min_length=1, max_length=200)
    contact_phone: str = Field(min_length=1, max_length=32)
    address: str = Field(min_length=1, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    equipment_model: str = Field(min_length=1, max_length=200)
    quantity: int = Field(default=1, ge=1, le=1000)
    serials: list[str] = Field(default_factory=list, max_length=1000)
    service_type: ServiceType
    window_start: datetime
    window_end: datetime
    engineer: str | None = Field(
        default=None, max_length=32, description="Staff number, e.g. E0001"
    )
    description: str | None = Field(default=None, max_length=2000)
    ref: str | None = Field(default=None, max_length=100, description="Your own reference")

    @field_validator("service_type", mode="before")
    @classmethod
    def _service_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            found = SERVICE_TYPE_NAMES.get(value.strip().lower())
            if found is None:
                raise ValueError(
                    f"unknown service type {value!r}; "
                    "use installation, startup, repair or maintenance"
                )
            return found
        return value

    @field_validator("serials", mode="before")
    @classmethod
    def _serials(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [s.strip() for s in value.replace(",", ";").split(";") if s.strip()]
        return value

    @field_validator("serials")
    @classmethod
    def _serial_lengths(cls, value: list[str]) -> list[str]:
        for serial in value:
            if not serial or len(serial) > 100:
                raise ValueError("each serial number must be 1 to 100 characters")
            _printable(serial)
        if len(set(value)) != len(value):
            raise ValueError("serial numbers repeat")
        return value

    @field_validator("engineer", "description", "ref", "latitude", "longitude", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "customer", "contact_name", "contact_phone", "equipment_model", "engineer", "ref"
    )
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _printable(value) if value is not None else None

    @field_validator("address", "description")
    @classmethod
    def _lines(cls, value: str | None) -> str | None:
        return _printable(value, newlines=True) if value is not None else None

    @field_validator("quantity", "latitude", "longitude", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not true or false")
        return value

    @field_validator("window_start", "window_end")
    @classmethod
    def _plausible_year(cls, value: datetime) -> datetime:
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise ValueError(f"must be between the years {FIRST_YEAR} and {LAST_YEAR}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DispatchIn:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        if len(self.serials) > self.quantity:
            raise ValueError("more serial numbers than the quantity")
        return self


@dataclass(frozen=True)
class CleanDispatch:
    """A validated dispatch: phone in E.164, window in aware UTC."""

    data: DispatchIn
    contact_phone: str
    window_start: datetime
    window_end: datetime

    def import_key(self) -> str:
        """A stable key for CSV idempotency: the caller's ref, or the row's content."""
        if self.data.ref:
            return "ref:" + self.data.ref
        body = self.data.model_dump(mode="json", exclude={"ref"})
        return "sha:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def field_errors(
    errors: Iterable[Mapping[str, Any]], *, skip: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """Pydantic's errors as one clear ``(field, message)`` per field (REST and the rest alike).

    ``skip``: leading location parts that are not field names (FastAPI's ``body``, ``path``).
    """
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for err in errors:
        loc = list(err.get("loc", ()))
        while loc and loc[0] in skip:
            loc.pop(0)
        kind = err.get("type")
        name = "body" if kind == "json_invalid" else ".".join(str(p) for p in loc) or "dispatch"
        if name in seen:
            continue
        seen.add(name)
        message = str(err.get("msg", "is not valid")).removeprefix("Value error, ")
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a dispatch field"
        elif kind == "json_invalid":
            message = "is not valid JSON"
        elif name == "dispatch" and kind in ("model_attributes_type", "model_type", "dict_type"):
            message = "must be an object with the dispatch's fields"
        out.append((name, message))
    return out


def validate_dispatch(
    raw: dict[str, Any], *, timezone: str, now: datetime, phone_region: str = "CN"
) -> CleanDispatch:
    """Validate one dispatch; FieldError lists one clear message per bad field."""
    errors: list[tuple[str, str]] = []
    try:
        data = DispatchIn.model_validate(raw)
    except ValidationError as exc:
        raise FieldError(field_errors(exc.errors())) from None
    try:
        phone = normalise_phone(data.contact_phone, phone_region)
    except BadPhone:
        errors.append(("contact_phone", f"{data.contact_phone!r} is not a phone number"))
        phone = ""
    zone = ZoneInfo(timezone)
    start = (
        data.window_start if data.window_start.tzinfo else data.window_start.replace(tzinfo=zone)
    )
    end = data.window_end if data.window_end.tzinfo else data.window_end.replace(tzinfo=zone)
    if end <= start:
        errors.append(("window_end", "must be after window_start"))
    elif end <= now:
        errors.append(("window_end", "is in the past"))
    if errors:
        raise FieldError(errors)
    return CleanDispatch(data=data, contact_phone=phone, window_start=start, window_end=end)
