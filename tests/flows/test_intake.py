"""Dispatch intake: the CLI, the REST API and CSV imports validate identically."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.api.app import MAX_BODY, build_app
from bot.cli import main as cli
from bot.db.models import Dispatch, DispatchEvent
from bot.flows.intake import import_csv
from bot.services.errors import FieldError
from bot.services.intake import validate_dispatch
from tests.helpers import dispatch_fields, new_dispatch, onboard

BAD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"customer": ""}, "customer"),
    ({"customer": "x" * 201}, "customer"),
    ({"contact_phone": "call me"}, "contact_phone"),
    ({"service_type": "painting"}, "service_type"),
    ({"quantity": "many"}, "quantity"),
    ({"quantity": 0}, "quantity"),
    ({"latitude": 95}, "latitude"),
    ({"serials": ["A", "A"]}, "serials"),
    ({"unexpected": "1"}, "unexpected"),
]


def count_dispatches_sync(services) -> int:
    import asyncio

    async def go() -> int:
        async with services.uow() as uow:
            return int(await uow.session.scalar(select(func.count()).select_from(Dispatch)) or 0)

    return asyncio.run(go())


async def count_dispatches(services) -> int:
    async with services.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(Dispatch)) or 0)


@pytest.mark.parametrize(("override", "field"), BAD_CASES)
def test_each_bad_field_gets_one_clear_error(services, override, field) -> None:
    raw = dispatch_fields(services, **override)
    with pytest.raises(FieldError) as err:
        validate_dispatch(raw, timezone="Asia/Shanghai", now=services.clock.now())
    fields = [f for f, _ in err.value.errors]
    assert fields == [field]


def test_window_must_end_after_it_starts_and_not_in_the_past(services) -> None:
    now = services.clock.now()
    raw = dispatch_fields(
        services,
        window_start=(now + timedelta(hours=3)).isoformat(),
        window_end=(now + timedelta(hours=1)).isoformat(),
    )
    with pytest.raises(FieldError) as err:
        validate_dispatch(raw, timezone="Asia/Shanghai", now=now)
    assert err.value.errors == [("window_end", "must be after window_start")]
    raw = dispatch_fields(
        services,
        window_start=(now - timedelta(hours=3)).isoformat(),
        window_end=(now - timedelta(hours=1)).isoformat(),
    )
    with pytest.raises(FieldError) as err:
        validate_dispatch(raw, timezone="Asia/Shanghai", now=now)
    assert err.value.errors == [("window_end", "is in the past")]


def test_site_local_times_and_chinese_service_types(services) -> None:
    raw = dispatch_fields(
        services,
        window_start="2026-12-01 09:00",
        window_end="2026-12-01 12:00",
        service_type="维修",
    )
    clean = validate_dispatch(raw, timezone="Asia/Shanghai", now=services.clock.now())
    assert clean.window_start.utcoffset() == timedelta(hours=8)
    assert clean.data.service_type == "repair"
    assert clean.contact_phone == "+8613800138000"


async def test_a_new_dispatch_is_offered_to_a_qualified_engineer(services) -> None:
    await onboard(services, 1001, name="Installer", skills=("installation",))
    repairer = await onboard(services, 1002, name="Repairer", skills=("repair",))
    dispatch = await new_dispatch(services)
    async with services.uow() as uow:
        fresh = await uow.session.get(Dispatch, dispatch.id)
        events = list(
            await uow.session.scalars(
                select(DispatchEvent.kind).where(DispatchEvent.dispatch_id == dispatch.id)
            )
        )
    assert fresh is not None and fresh.status == "offered"
    assert events == ["created", "offered"]
    from tests.conftest import outbox_rows

    offers = [
        r
        for r in await outbox_rows(services, 1002)
        if r.method == "sendMessage" and (r.ref or "").startswith("offer:")
    ]
    assert len(offers) == 1
    assert [b["text"] for b in offers[0].payload["reply_markup"]["inline_keyboard"][0]] == [
        "✅ Accept",
        "✖️ Decline",
    ]
    assert not [r for r in await outbox_rows(services, 1001) if r.ref]
    assert repairer.user.id


async def test_the_named_engineer_is_offered_first(services) -> None:
    await onboard(services, 1001, name="First", skills=("repair",))
    named = await onboard(services, 1002, name="Named", skills=("installation",))
    await new_dispatch(services, engineer=named.user.staff_no)
    from tests.conftest import outbox_rows

    assert [r for r in await outbox_rows(services, 1002) if r.ref]
    assert not [r for r in await outbox_rows(services, 1001) if r.ref]


async def test_unknown_engineer_is_a_field_error(services) -> None:
    with pytest.raises(FieldError) as err:
        await new_dispatch(services, engineer="E9999")
    assert err.value.errors[0][0] == "engineer"
    assert await count_dispatches(services) == 0


# ---- REST --------------------------------------------------------------------------------


async def rest(services) -> httpx.AsyncClient:
    app = build_app(services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_rest_requires_the_bearer_token(services) -> None:
    async with await rest(services) as client:
        body = dispatch_fields(services)
        assert (await client.post("/api/v1/dispatches", json=body)).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            await client.post("/api/v1/dispatches", json=body, headers=wrong)
        ).status_code == 401
        assert (await client.get("/api/v1/dispatches/1", headers=wrong)).status_code == 401
    assert await count_dispatches(services) == 0


async def test_a_body_over_a_mebibyte_is_refused_before_it_is_read(services) -> None:
    auth = {"Authorization": "Bearer test-api-token", "Content-Type": "application/json"}
    fields = json.dumps(dispatch_fields(services))
    padded = fields[:-1] + ', "description": "' + "x" * 4 * MAX_BODY + '"}'
    read: list[int] = []

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(padded), 65536):
            read.append(start)
            yield padded[start : start + 65536].encode()

    async with await rest(services) as client:
        for content in (padded.encode(), streamed()):
            answer = await client.post("/api/v1/dispatches", content=content, headers=auth)
            assert answer.status_code == 413, answer.text
            assert answer.json() == {
                "error": f"the request body is over {MAX_BODY} bytes",
                "code": "too_large",
                "fields": [],
            }
        assert len(read) < len(padded) // 65536  # the stream was not read to its end
        created = await client.post("/api/v1/dispatches", content=fields, headers=auth)
        assert created.status_code == 201
    assert await count_dispatches(services) == 1


async def test_rest_creates_reads_and_validates(services) -> None:
    auth = {"Authorization": "Bearer test-api-token"}
    async with await rest(services) as client:
        created = await client.post(
            "/api/v1/dispatches", json=dispatch_fields(services), headers=auth
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["number"].startswith("FB") and body["status"] == "unassigned"
        assert body["customer_link"].startswith("https://t.me/fieldbot_test_bot?start=job_")
        got = await client.get(f"/api/v1/dispatches/{body['id']}", headers=auth)
        assert got.json()["number"] == body["number"]
        assert (await client.get("/api/v1/dispatches/999", headers=auth)).status_code == 404
        bad = await client.post(
            "/api/v1/dispatches",
            headers=auth,
            json=dispatch_fields(services, service_type="painting", contact_phone="x"),
        )
        assert bad.status_code == 422
        fields = {f["field"] for f in bad.json()["fields"]}
        assert "service_type" in fields
        bad_phone = await client.post(
            "/api/v1/dispatches",
            headers=auth,
            json=dispatch_fields(services, contact_phone="call me"),
        )
        assert bad_phone.json()["fields"] == [
            {"field": "contact_phone", "message": "'call me' is not a phone number"}
        ]
        assert (await client.get("/openapi.json")).json()["paths"]["/api/v1/dispatches"]
        assert (await client.get("/health")).json() == {"status": "ok", "database": "ok"}
    assert await count_dispatches(services) == 1


# ---- CSV ---------------------------------------------------------------------------------


def csv_text(services, rows: list[dict[str, Any]]) -> bytes:
    columns = [
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
    ]
    lines = [",".join(columns)]
    for row in rows:
        base = dispatch_fields(services, **row)
        base["serials"] = (
            ";".join(base["serials"]) if isinstance(base["serials"], list) else base["serials"]
        )
        lines.append(",".join(f'"{base[c]}"' for c in columns))
    return ("\n".join(lines) + "\n").encode()


async def test_csv_imports_good_rows_reports_bad_ones_and_never_twice(services) -> None:
    data = csv_text(
        services,
        [{}, {"contact_phone": "nope"}, {"customer": "Second Co"}, {"service_type": "painting"}],
    )
    report = await import_csv(services, data)
    assert len(report.created) == 2
    assert [line for line, _ in report.errors] == [3, 5]
    assert "contact_phone" in report.errors[0][1]
    again = await import_csv(services, data)
    assert again.created == [] and [line for line, _ in again.skipped] == [2, 4]
    assert await count_dispatches(services) == 2


async def test_csv_in_the_wrong_encoding_or_shape_is_refused_whole(services) -> None:
    gbk = "customer,contact_name\n广州公司,李\n".encode("gbk")
    assert "UTF-8" in (await import_csv(services, gbk)).fatal
    missing = b"customer,contact_name\nA,B\n"
    report = await import_csv(services, missing)
    assert "missing columns" in report.fatal and "contact_phone" in report.fatal
    assert await count_dispatches(services) == 0


async def test_csv_with_bom_and_formula_cells(services) -> None:
    data = csv_text(services, [{"customer": "=HYPERLINK(1)"}])
    report = await import_csv(services, b"\xef\xbb\xbf" + data)
    assert len(report.created) == 1
    async with services.uow() as uow:
        from bot.db.models import Customer

        names = list(await uow.session.scalars(select(Customer.name)))
    assert names == ["HYPERLINK(1)"]


# ---- CLI ---------------------------------------------------------------------------------


def test_cli_staff_add_and_dispatch_create(services, monkeypatch, db_url) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("BOT_USERNAME", "fieldbot_test_bot")
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "staff",
            "add",
            "--role",
            "engineer",
            "--name",
            "Zhang San",
            "--skills",
            "repair,installation",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    staff = json.loads(out.output)
    assert staff["link"] == f"https://t.me/fieldbot_test_bot?start={staff['code']}"
    assert staff["skills"] == ["installation", "repair"]
    bad = runner.invoke(
        cli, ["staff", "add", "--role", "engineer", "--name", "X", "--skills", "juggling", "--json"]
    )
    assert bad.exit_code == 1 and json.loads(bad.output)["errors"][0]["field"] == "skills"
    args = [
        "dispatch",
        "create",
        "--customer",
        "Acme",
        "--contact-name",
        "Li",
        "--contact-phone",
        "13800138000",
        "--address",
        "1 Road",
        "--equipment-model",
        "X1",
        "--service-type",
        "repair",
        "--window-start",
        "2030-01-01T09:00",
        "--window-end",
        "2030-01-01T12:00",
        "--serials",
        "A1;A2",
        "--quantity",
        "2",
        "--json",
    ]
    created = runner.invoke(cli, args)
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["number"].startswith("FB")
    wrong = runner.invoke(cli, [*args[:-1], "--window-end", "2029-01-01T09:00", "--json"])
    assert wrong.exit_code == 1
    assert json.loads(wrong.output)["errors"] == [
        {"field": "window_end", "message": "must be after window_start"}
    ]
    assert count_dispatches_sync(services) == 1


def test_cli_import_reports_line_numbers(services, monkeypatch, db_url, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    path = tmp_path / "jobs.csv"
    path.write_bytes(csv_text(services, [{}, {"quantity": "0"}]))
    out = CliRunner().invoke(cli, ["dispatch", "import", str(path)])
    assert out.exit_code == 1
    assert "error: line 3: quantity" in out.output
    assert "1 imported, 0 already there, 1 rejected" in out.output
