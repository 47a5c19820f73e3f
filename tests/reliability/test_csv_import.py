"""Malformed CSV imports: refused row by row (or whole, when the file itself is wrong), never
half-imported, never imported twice.

Line numbers are the file's own (the header is line 1; a record with quoted line breaks is
reported at the line it starts on).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.cli import main as cli
from bot.db.models import Customer, Dispatch, DispatchEvent, Equipment, Site
from bot.flows import intake
from bot.flows.intake import import_csv
from bot.services import dispatches as dispatch_service
from bot.services.errors import FieldError
from bot.services.report_files import csv_bytes

COLUMNS = [
    "customer",
    "contact_name",
    "contact_phone",
    "address",
    "equipment_model",
    "quantity",
    "serials",
    "service_type",
    "window_start",
    "window_end",
    "description",
    "ref",
]


def row(n: int, **overrides: Any) -> dict[str, Any]:
    values = {
        "customer": f"Customer {n % 7}",
        "contact_name": "Li Na",
        "contact_phone": "13800138000",
        "address": f"{n} Century Avenue",
        "equipment_model": "CH-200",
        "quantity": "1",
        "serials": f"SN-{n}",
        "service_type": "repair",
        "window_start": "2030-06-03T09:00",
        "window_end": "2030-06-03T12:00",
        "description": "",
        "ref": "",
    }
    values.update(overrides)
    return values


def make_csv(rows: list[dict[str, Any]], *, columns: list[str] = COLUMNS, sep: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\r\n")
    writer.writerow(columns)
    for values in rows:
        writer.writerow([values.get(c, "") for c in columns])
    return buffer.getvalue().encode()


async def count(services, model: Any = Dispatch) -> int:
    async with services.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model)) or 0)


async def customers(services) -> list[str]:
    async with services.uow() as uow:
        return sorted(await uow.session.scalars(select(Customer.name)))


async def created_events(services) -> int:
    """How many dispatches have their "created" history line (one each, never orphaned)."""
    async with services.uow() as uow:
        stmt = (
            select(func.count()).select_from(DispatchEvent).where(DispatchEvent.kind == "created")
        )
        return int(await uow.session.scalar(stmt) or 0)


async def description_of(services, number: str) -> str | None:
    async with services.uow() as uow:
        return await uow.session.scalar(
            select(Dispatch.description).where(Dispatch.number == number)
        )


# ---- the file as a whole --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "the file is empty"),
        (b"\r\n \r\n", "no header row"),
        (make_csv([]), "a header but no rows"),
        (
            make_csv([row(1, customer="Café Lyon")]).decode().encode("latin-1"),
            "line 2 is not UTF-8",
        ),
        (
            make_csv([row(1), row(2, customer="广州公司")]).decode().encode("gbk"),
            "line 3 is not UTF-8",
        ),
        ("customer,联系人\n".encode("gbk"), "line 1 is not UTF-8"),
        (b"\xef\xbb\xbf" + make_csv([row(1)])[3:] + b"\x93\x94", "not UTF-8"),
        ("customer\n".encode("utf-16"), "UTF-16"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), "spreadsheet (.xlsx)"),
        (bytes((i * 151 + 7) % 256 for i in range(4096)), "not a text CSV file"),  # garbage
        (make_csv([row(1)]) + b"x\x00y\r\n", "line 3 contains a NUL byte"),
        (b"customer,contact_name\r\nA,B\r\n", "missing columns: contact_phone"),
        (make_csv([row(1)], columns=[*COLUMNS, "colour"]), "unknown columns: colour"),
        (make_csv([row(1)], columns=[*COLUMNS, "customer"]), "columns named twice: customer"),
        (make_csv([row(1)], columns=[*COLUMNS, ""]), "columns without a name: 13"),
        (b'"customer,contact_name\r\nA,B\r\n', "header"),
    ],
)
async def test_a_wrong_file_is_refused_whole_and_imports_nothing(services, data, says) -> None:
    report = await import_csv(services, data)
    assert says in report.fatal, report.fatal
    assert report.created == [] and await count(services) == 0
    assert await count(services, Customer) == 0


async def test_a_bom_and_upper_case_or_padded_headers_are_fine(services) -> None:
    body = make_csv([row(1)]).split(b"\r\n", 1)[1]
    data = ",".join(f" {c.upper()} " for c in COLUMNS).encode() + b"\r\n" + body
    report = await import_csv(services, b"\xef\xbb\xbf" + data)
    assert report.fatal == "" and report.errors == [] and len(report.created) == 1


async def test_semicolon_separated_files_from_european_spreadsheets(services) -> None:
    report = await import_csv(services, make_csv([row(1), row(2)], sep=";"))
    assert report.fatal == "" and len(report.created) == 2


# ---- row by row -----------------------------------------------------------------------------


async def test_quoted_line_breaks_commas_and_quotes_survive_and_lines_stay_right(services) -> None:
    description = 'Line one, with a comma\nLine "two"\n\nLine four'
    data = make_csv(
        [
            row(1, description=description, address="Unit 5, 88 Century Avenue"),
            row(2, contact_phone="not a phone"),  # starts on line 6 (record 1 spans 2-5)
            row(3),
        ]
    )
    report = await import_csv(services, data)
    assert [line for line, _ in report.errors] == [6]
    assert "contact_phone" in report.errors[0][1]
    assert len(report.created) == 2
    assert await description_of(services, report.created[0]) == description
    async with services.uow() as uow:
        addresses = set(await uow.session.scalars(select(Site.address)))
    assert "Unit 5, 88 Century Avenue" in addresses


async def test_blank_lines_are_skipped_without_shifting_line_numbers(services) -> None:
    lines = make_csv([row(1), row(2, quantity="zero")]).split(b"\r\n")
    data = b"\r\n".join([lines[0], b"", lines[1], b"", b"", lines[2], b""])
    report = await import_csv(services, data)
    assert [line for line, _ in report.errors] == [6]
    assert report.rows == 2 and len(report.created) == 1


async def test_rows_with_extra_or_missing_values_are_refused_alone(services) -> None:
    good = make_csv([row(1), row(2), row(3)]).decode().split("\r\n")
    good[2] = good[2] + ",surplus"  # line 3
    good[3] = good[3].rsplit(",", 2)[0]  # line 4: two values short
    report = await import_csv(services, "\r\n".join(good).encode())
    assert [line for line, _ in report.errors] == [3, 4]
    assert "13 values for 12 columns (more" in report.errors[0][1]
    assert "10 values for 12 columns (fewer" in report.errors[1][1]
    assert len(report.created) == 1 and await count(services) == 1


async def test_unbalanced_quotes(services) -> None:
    lines = make_csv([row(1), row(2), row(3), row(4)]).decode().split("\r\n")
    lines[2] = lines[2].replace("Li Na", '"Li" Na', 1)  # line 3: text after a closing quote
    lines[4] = lines[4].replace("Li Na", '"Li Na', 1)  # line 5: a quote never closed
    report = await import_csv(services, "\r\n".join(lines).encode())
    assert [line for line, _ in report.errors] == [3, 5]
    assert "text after a closing quote" in report.errors[0][1]
    assert "never closed" in report.errors[1][1]
    assert len(report.created) == 2  # lines 2 and 4; nothing after the open quote is guessed


async def test_a_quote_left_open_mid_file_is_pointed_at(services) -> None:
    rows = [row(1), row(2), row(3, description="a, b"), row(4)]
    lines = make_csv(rows).decode().split("\r\n")
    lines[2] = lines[2].replace("Li Na", '"Li Na', 1)  # runs on to the quote on line 4
    report = await import_csv(services, "\r\n".join(lines).encode())
    assert [line for line, _ in report.errors] == [3]
    assert "runs to line 4: is a quote left open?" in report.errors[0][1]
    assert len(report.created) == 2  # lines 2 and 5


async def test_formulas_are_neutralised_on_the_way_in_and_on_the_way_out(services) -> None:
    data = make_csv(
        [
            row(1, customer="=cmd|' /C calc'!A0", ref="r1"),
            row(2, customer="==1+1", ref="r2"),
            row(3, customer="@SUM(A1:A9)", ref="r3"),
            row(4, customer="+cmd|' /C calc'!A0", ref="r4"),
            row(5, customer="-2+3+cmd|' /C calc'!A0", ref="r5"),
            row(6, customer="= =HYPERLINK(1)", ref="r6"),
            row(7, contact_phone="+86 138 0013 8000", description="- check the fan", ref="r7"),
        ]
    )
    report = await import_csv(services, data)
    assert report.errors == [] and len(report.created) == 7
    assert [line for line, _ in report.notices] == [2, 3, 4, 5, 7]
    names = await customers(services)
    assert set(names) == {  # rows 1 and 4 name the same customer once the sign is gone
        "cmd|' /C calc'!A0",
        "1+1",
        "SUM(A1:A9)",
        "-2+3+cmd|' /C calc'!A0",  # kept as typed: "-" starts data too; quoted on export
        "HYPERLINK(1)",
        "Customer 0",
    }
    assert await description_of(services, report.created[6]) == "- check the fan"
    # and any text a spreadsheet would run, whoever typed it, is quoted in every CSV we write
    out = csv_bytes([[n] for n in [*names, "- check the fan"]]).decode("utf-8-sig")
    for cell in csv.reader(io.StringIO(out)):
        assert cell[0][:1] not in ("=", "+", "-", "@"), cell


async def test_a_row_is_stored_whole_or_not_at_all(services, monkeypatch) -> None:
    """A row that fails half-way (after its customer and site were written) leaves nothing;
    the rows around it, in the same batch, are imported."""
    real = dispatch_service.create_dispatch

    async def fail_for_row_2(uow, clean, **kwargs):
        dispatch = await real(uow, clean, **kwargs)  # customer, site, dispatch, event written
        if clean.data.customer == "Half Row Co":
            raise FieldError([("customer", "refused after writing")])
        return dispatch

    monkeypatch.setattr(dispatch_service, "create_dispatch", fail_for_row_2)
    report = await import_csv(services, make_csv([row(1), row(2, customer="Half Row Co"), row(3)]))
    assert report.errors == [(3, "customer: refused after writing")]
    assert len(report.created) == 2
    assert "Half Row Co" not in await customers(services)
    assert await count(services) == 2 and await created_events(services) == 2
    assert await count(services, Equipment) == 2 and await count(services, Site) == 2


async def test_a_crash_mid_import_leaves_no_half_row_and_a_rerun_imports_each_row_once(
    services, monkeypatch
) -> None:
    monkeypatch.setattr(intake, "BATCH_ROWS", 4)
    data = make_csv([row(n) for n in range(1, 11)])
    real = intake.start_offering
    calls = 0

    async def crash_on_the_seventh(uow, dispatch):
        nonlocal calls
        calls += 1
        if calls == 7:  # inside the second batch, after the row's dispatch was written
            raise RuntimeError("power cut")
        return await real(uow, dispatch)

    monkeypatch.setattr(intake, "start_offering", crash_on_the_seventh)
    with pytest.raises(RuntimeError):
        await import_csv(services, data)
    assert await count(services) == 4  # the first batch only; none of the second
    assert await count(services, Site) == 4 and await created_events(services) == 4
    monkeypatch.setattr(intake, "start_offering", real)
    again = await import_csv(services, data)
    assert len(again.created) == 6 and [line for line, _ in again.skipped] == [2, 3, 4, 5]
    third = await import_csv(services, data)
    assert third.created == [] and len(third.skipped) == 10
    assert await count(services) == 10 and await created_events(services) == 10


async def test_two_imports_of_the_same_file_at_once_store_each_row_once(services) -> None:
    data = make_csv([row(n, ref=f"ERP-{n}") for n in range(1, 31)])
    first, second = await asyncio.gather(import_csv(services, data), import_csv(services, data))
    assert first.errors == [] and second.errors == []
    assert len(first.created) + len(second.created) == 30
    assert not set(first.created) & set(second.created)
    assert await count(services) == 30


async def test_many_rows_in_batches_with_bad_ones_among_them(services, monkeypatch) -> None:
    monkeypatch.setattr(intake, "BATCH_ROWS", 25)
    rows = [row(n) for n in range(1, 121)]
    for n in (17, 50, 119):
        rows[n - 1]["window_end"] = "2020-01-01T00:00"  # in the past
    report = await import_csv(services, make_csv(rows))
    assert [line for line, _ in report.errors] == [18, 51, 120]
    assert len(report.created) == 117 and report.rows == 120
    assert await count(services) == 117


def test_cli_reports_line_numbers_notices_and_exit_codes(
    services, monkeypatch, db_url, tmp_path
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    path = tmp_path / "jobs.csv"
    path.write_bytes(make_csv([row(1, customer="=Acme"), row(2, quantity="lots"), row(3)]))
    out = CliRunner().invoke(cli, ["dispatch", "import", str(path), "--json"])
    assert out.exit_code == 1
    body = json.loads(out.output)
    assert body["rows"] == 3 and len(body["created"]) == 2
    assert body["errors"] == [{"line": 3, "reason": body["errors"][0]["reason"]}]
    assert body["errors"][0]["reason"].startswith("quantity:")
    assert body["notices"][0]["line"] == 2
    again = CliRunner().invoke(cli, ["dispatch", "import", str(path)])
    assert "0 imported, 2 already there, 1 rejected" in again.output
    path.write_bytes("customer\n广州".encode("gbk"))
    wrong = CliRunner().invoke(cli, ["dispatch", "import", str(path)])
    assert wrong.exit_code == 1 and "save it as CSV UTF-8" in wrong.output


async def test_a_row_the_database_refuses_does_not_sink_its_batch(services, monkeypatch) -> None:
    """A unique-key clash (another run stored the same row a moment ago, unseen by the check
    before the insert): the batch is retried row by row; only that row is refused."""
    await import_csv(services, make_csv([row(2, ref="ERP-2")]))

    async def sees_nothing(uow, key):
        return None  # the race: the other run's row is not visible yet

    monkeypatch.setattr(dispatch_service, "existing_import", sees_nothing)
    report = await import_csv(services, make_csv([row(1), row(2, ref="ERP-2"), row(3)]))
    assert [line for line, _ in report.errors] == [3]
    assert report.errors[0][1].startswith("the database refused this row")
    assert len(report.created) == 2 and await count(services) == 3
    assert await created_events(services) == 3
