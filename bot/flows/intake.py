"""Dispatch intake use cases: create one (CLI, REST) or import a CSV file, then offer the job."""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from sqlalchemy.exc import DataError, IntegrityError

from bot.db.models import Dispatch
from bot.flows.offers import start_offering
from bot.services import dispatches as svc
from bot.services.context import Services
from bot.services.errors import FieldError
from bot.services.intake import CleanDispatch, DispatchIn, validate_dispatch
from bot.services.uow import UnitOfWork

CSV_COLUMNS = tuple(DispatchIn.model_fields)
REQUIRED_COLUMNS = tuple(
    name for name, info in DispatchIn.model_fields.items() if info.is_required()
)
MAX_IMPORT_BYTES = 200 * 1024 * 1024
# Rows per transaction: a crash loses at most one uncommitted batch, and while a batch is
# written a bot on the same SQLite file waits for the write lock (4–10 ms a row).
BATCH_ROWS = 50
_CHUNK = 1024 * 1024
# Spreadsheet formula starters. A cell beginning with "=" or "@" is never data here; "+" is,
# before a digit (a phone number). "-" and the others are left alone: every CSV the bot writes
# neutralises them on the way out (bot/services/report_files.py, csv_bytes).
_FORMULA_ALWAYS = frozenset("=@＝＠")
_FORMULA_UNLESS_DIGIT = frozenset("+＋")


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
    return await _store(uow, clean, source=source, import_key=key)


async def _store(
    uow: UnitOfWork, clean: CleanDispatch, *, source: str, import_key: str | None
) -> Dispatch:
    dispatch = await svc.create_dispatch(uow, clean, source=source, import_key=import_key)
    await start_offering(uow, dispatch)
    return dispatch


@dataclass
class ImportReport:
    """What an import did, line by line (line numbers are the file's, header = line 1)."""

    created: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, number already there)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    notices: list[tuple[int, str]] = field(default_factory=list)  # (line, what was changed)
    fatal: str = ""
    rows: int = 0  # data rows read


class FileRefused(ValueError):
    """The file as a whole cannot be imported (nothing is)."""


def _open(source: bytes | str | os.PathLike[str] | BinaryIO) -> BinaryIO:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb")
    return source


def _check_bytes(stream: BinaryIO) -> None:
    """Refuse a file that is not UTF-8 CSV text, before a single row is imported.

    Read in chunks (a 100 MB file is never in memory at once); a bad byte is reported with
    its line, so the user can find it.
    """
    head = stream.read(4)
    if not head:
        raise FileRefused("the file is empty")
    if head.startswith(b"PK\x03\x04"):
        raise FileRefused(
            "this is a spreadsheet (.xlsx), not a CSV file; save it as CSV UTF-8 and try again"
        )
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRefused("the file is UTF-16 text; save it as CSV UTF-8 and try again")
    stream.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, size = 1, 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > MAX_IMPORT_BYTES:
            raise FileRefused(
                f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it"
            )
        if b"\x00" in chunk:
            where = line + chunk[: chunk.index(b"\x00")].count(b"\n")
            raise FileRefused(
                f"line {where} contains a NUL byte: this is not a text CSV file "
                "(save it as CSV UTF-8 and try again)"
            )
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            where = line + chunk[: exc.start].count(b"\n")
            raise FileRefused(
                f"line {where} is not UTF-8 text (byte 0x{chunk[exc.start]:02X}); the file is "
                "probably in GBK or another local encoding: save it as CSV UTF-8 and try again"
            ) from None
        line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise FileRefused(
            f"line {line} ends in the middle of a character: the file is not UTF-8 text; "
            "save it as CSV UTF-8 and try again"
        ) from None
    stream.seek(0)


def _header(first: list[str]) -> list[str]:
    header = [h.strip().lower() for h in first]
    problems = []
    blank = [str(i + 1) for i, h in enumerate(header) if not h]
    if blank:
        problems.append("columns without a name: " + ", ".join(blank))
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        problems.append("columns named twice: " + ", ".join(twice))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    unknown = [h for h in header if h and h not in CSV_COLUMNS]
    if unknown:
        problems.append("unknown columns: " + ", ".join(unknown))
    if problems:
        raise FileRefused("; ".join(problems))
    return header


def _unformula(value: str) -> str:
    """Spreadsheet formulas are data here, never code: drop what would start one."""
    while value and (
        value[0] in _FORMULA_ALWAYS
        or (value[0] in _FORMULA_UNLESS_DIGIT and not value[1:2].isdigit())
    ):
        value = value[1:].lstrip()
    return value


def _delimiter(first_line: str) -> str:
    """A comma, unless the header has none and is split by semicolons or tabs (some
    spreadsheets' "CSV" in European locales, or a tab-separated export)."""
    if "," in first_line:
        return ","
    for candidate in (";", "\t"):
        if candidate in first_line:
            return candidate
    return ","


@dataclass
class _Row:
    line: int  # where the record starts
    last: int  # where it ends (a quoted field may hold line breaks)
    raw: dict[str, str]


def _rows(text: TextIO, report: ImportReport) -> Iterator[_Row]:
    """Records of a CSV text as dicts, with their line numbers; bad ones go to the report."""
    first_line = text.readline()
    text.seek(0)
    reader = csv.reader(text, delimiter=_delimiter(first_line), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise FileRefused(f"line 1 (the header) cannot be read: {exc}") from None
    if first is None or not any(h.strip() for h in first):
        raise FileRefused("the file has no header row")
    header = _header(first)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            report.rows += 1
            report.errors.append((start, _csv_problem(str(exc), start, end)))
            continue
        end = reader.line_num
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # a blank line
        report.rows += 1
        if len(values) != len(header):
            more = "more" if len(values) > len(header) else "fewer"
            reason = (
                f"{len(values)} values for {len(header)} columns ({more} than the header): "
                "a comma or a quote is probably missing or extra"
            )
            report.errors.append((start, _spans(reason, start, end)))
            continue
        yield _Row(start, end, dict(zip(header, values, strict=True)))


def _spans(reason: str, start: int, end: int) -> str:
    if end > start:
        return f"{reason} (this record runs to line {end}: is a quote left open?)"
    return reason


def _csv_problem(message: str, start: int, end: int) -> str:
    if "unexpected end of data" in message:
        return (
            f"a quote opened here is never closed (the rest of the file, to line {end}, "
            "was read into it)"
        )
    if "expected after" in message:
        return _spans(
            "text after a closing quote: put quotes around the whole value, "
            "and double any quote inside it",
            start,
            end,
        )
    if "field larger than field limit" in message:
        return f"a value longer than {csv.field_size_limit()} characters (is a quote left open?)"
    return _spans(f"unreadable CSV: {message}", start, end)


def _prepare(row: _Row, report: ImportReport) -> dict[str, str]:
    raw = {}
    for name, value in row.raw.items():
        value = value.strip()
        if not value:
            continue
        safe = _unformula(value)
        if safe != value:
            report.notices.append(
                (row.line, f"{name}: the leading formula sign was removed ({value[:20]!r})")
            )
        if safe:
            raw[name] = safe
    return raw


def _reason(exc: FieldError) -> str:
    return "; ".join(f"{f}: {m}" for f, m in exc.errors)


async def import_csv(
    services: Services, source: bytes | str | os.PathLike[str] | BinaryIO
) -> ImportReport:
    """Import a CSV file of dispatches: every good row, each exactly once; every bad row is
    reported with its line number and nothing of it is stored.

    The file is streamed (checked as UTF-8 first, so a wrongly encoded file imports nothing)
    and rows are committed in batches of ``BATCH_ROWS``, each row inside its own savepoint:
    a row is stored whole or not at all. A crash loses at most the batch in progress, and a
    run on the same file again skips every row already there (``import_key``: the row's
    ``ref``, or a hash of its content).
    """
    report = ImportReport()
    owned = isinstance(source, (bytes, str, os.PathLike))
    stream = _open(source)
    try:
        _check_bytes(stream)
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        try:
            batch: list[_Row] = []
            for row in _rows(text, report):
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    await _import_batch(services, batch, report)
                    batch = []
            if batch:
                await _import_batch(services, batch, report)
        finally:
            text.detach()
        if report.rows == 0:
            raise FileRefused("the file has a header but no rows")
    except FileRefused as exc:
        report.fatal = str(exc)
    finally:
        if owned:
            stream.close()
    return report


async def _import_batch(services: Services, batch: list[_Row], report: ImportReport) -> None:
    """One transaction for the batch; if the database refuses it (a constraint: say the same
    row imported at the same moment by another run), row by row, so that one row cannot sink
    the others. Losing the database itself is not a row's fault: that aborts the import (run
    it again to finish)."""
    notices = len(report.notices)
    try:
        async with services.uow() as uow:
            outcome = [await _import_row(uow, row, report) for row in batch]
            await uow.commit()
    except (IntegrityError, DataError) as exc:
        del report.notices[notices:]
        if len(batch) == 1:
            reason = str(exc.orig).splitlines()[0][:200] if exc.orig else type(exc).__name__
            report.errors.append((batch[0].line, f"the database refused this row: {reason}"))
            return
        for row in batch:
            await _import_batch(services, [row], report)
        return
    for kind, line, value in outcome:
        if kind == "created":
            report.created.append(value)
        elif kind == "skipped":
            report.skipped.append((line, value))
        else:
            report.errors.append((line, value))


async def _import_row(uow: UnitOfWork, row: _Row, report: ImportReport) -> tuple[str, int, str]:
    """Store one row inside a savepoint; the outcome is reported only once the batch commits."""
    notices_before = len(report.notices)
    raw = _prepare(row, report)
    try:
        clean = validate_dispatch(
            raw,
            timezone=uow.settings.timezone,
            now=uow.clock.now(),
            phone_region=uow.settings.phone_region,
        )
    except FieldError as exc:
        del report.notices[notices_before:]  # the row is refused anyway
        return ("error", row.line, _spans(_reason(exc), row.line, row.last))
    key = clean.import_key()
    existing = await svc.existing_import(uow, key)
    if existing is not None:
        return ("skipped", row.line, existing.number)
    try:
        async with uow.savepoint():
            dispatch = await _store(uow, clean, source="csv", import_key=key)
    except FieldError as exc:
        return ("error", row.line, _reason(exc))
    return ("created", row.line, dispatch.number)
