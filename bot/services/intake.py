"""Dispatch intake: one validation for the CLI, the REST API and CSV imports."""

from __future__ import annotations

import hashlib
import json
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


class DispatchIn(BaseModel):
    """A new dispatch as the back office sends it (times without a zone are site-local)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

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
        if len(set(value)) != len(value):
            raise ValueError("serial numbers repeat")
        return value

    @field_validator("engineer", "description", "ref", "latitude", "longitude", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
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


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "dispatch"


def validate_dispatch(
    raw: dict[str, Any], *, timezone: str, now: datetime, phone_region: str = "CN"
) -> CleanDispatch:
    """Validate one dispatch; FieldError lists one clear message per bad field."""
    errors: list[tuple[str, str]] = []
    try:
        data = DispatchIn.model_validate(raw)
    except ValidationError as exc:
        seen: set[str] = set()
        for err in exc.errors():
            name = _field_name(err["loc"])
            if name in seen:
                continue
            seen.add(name)
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing":
                message = "is required"
            elif err["type"] == "extra_forbidden":
                message = "is not a dispatch field"
            errors.append((name, message))
        raise FieldError(errors) from None
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
