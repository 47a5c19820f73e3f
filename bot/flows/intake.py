"""Dispatch intake use cases: create one (CLI, REST) or import a CSV file, then offer the job."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from bot.db.models import Dispatch
from bot.flows.offers import start_offering
from bot.services import dispatches as svc
from bot.services.context import Services
from bot.services.errors import FieldError
from bot.services.intake import DispatchIn, validate_dispatch
from bot.services.uow import UnitOfWork

CSV_COLUMNS = tuple(DispatchIn.model_fields)
REQUIRED_COLUMNS = tuple(
    name for name, info in DispatchIn.model_fields.items() if info.is_required()
)
MAX_IMPORT_BYTES = 20 * 1024 * 1024


async def create_dispatch(
    uow: UnitOfWork, raw: dict[str, Any], *, source: str, import_key: str | None = None
) -> Dispatch:
    """Validate, store and offer one dispatch (FieldError lists every bad field)."""
    clean = validate_dispatch(
        raw,
        timezone=uow.settings.timezone,
        now=uow.clock.now(),
        phone_region=uow.settings.phone_region,
    )
    key = import_key if import_key is not None else (clean.import_key() if clean.data.ref else None)
    if key is not None:
        existing = await svc.existing_import(uow, key)
        if existing is not None:
            return existing
    dispatch = await svc.create_dispatch(uow, clean, source=source, import_key=key)
    await start_offering(uow, dispatch)
    return dispatch


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, number already there)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    fatal: str = ""


def _decode(data: bytes) -> str:
    if len(data) > MAX_IMPORT_BYTES:
        raise ValueError(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    for encoding in ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    raise ValueError("the file is not UTF-8 text; save it as CSV UTF-8 and try again")


def _unformula(value: str) -> str:
    """Spreadsheet formulas are data here, never code: keep the text, drop the leading '='."""
    return value[1:] if value[:1] in {"=", "+", "@"} and not value[1:2].isdigit() else value


async def import_csv(services: Services, data: bytes) -> ImportReport:
    """Import good rows (each in its own transaction); report bad ones with their line numbers."""
    report = ImportReport()
    try:
        text = _decode(data)
    except ValueError as exc:
        report.fatal = str(exc)
        return report
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if unknown:
            parts.append("unknown columns: " + ", ".join(unknown))
        report.fatal = "; ".join(parts)
        return report
    for row in reader:
        line = reader.line_num
        if None in row:
            report.errors.append((line, "more values than columns"))
            continue
        raw = {
            k: _unformula(v.strip()) for k, v in row.items() if v is not None and v.strip() != ""
        }
        async with services.uow() as uow:
            try:
                clean = validate_dispatch(
                    raw,
                    timezone=services.settings.timezone,
                    now=uow.clock.now(),
                    phone_region=services.settings.phone_region,
                )
            except FieldError as exc:
                report.errors.append((line, "; ".join(f"{f}: {m}" for f, m in exc.errors)))
                continue
            key = clean.import_key()
            existing = await svc.existing_import(uow, key)
            if existing is not None:
                report.skipped.append((line, existing.number))
                continue
            try:
                dispatch = await create_dispatch(uow, raw, source="csv", import_key=key)
            except FieldError as exc:
                report.errors.append((line, "; ".join(f"{f}: {m}" for f, m in exc.errors)))
                continue
            await uow.commit()
            report.created.append(dispatch.number)
    return report
