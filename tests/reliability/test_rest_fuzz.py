"""The REST API fuzzed from its own OpenAPI document (schemathesis), in-process.

Every operation in ``/openapi.json`` gets generated requests — schema-valid ones, schema-violating
ones and the document's own examples — three times: with the right bearer token, with none and
with a wrong one. ``POST /api/v1/dispatches`` also gets *nearly valid* bodies (the documented
example with a few fields made hostile), because purely generated bodies never get past the
phone and window checks, and so would never reach the database.

Whatever is sent: never a 5xx; every 4xx carries the one documented error body
``{"error": message, "code": code, "fields": [{"field", "message"}]}``; every response conforms
to the document (status code, content type, headers, body); a schema-violating request is
refused; without the right token the answer is 401 and nothing is stored.

CI runs a fixed set of examples (derandomized: the same on every run, so never flaky).
``FIELDBOT_FUZZ_EXAMPLES=500 uv run pytest tests/reliability/test_rest_fuzz.py`` explores
further with fresh random examples each run.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from bot.api.app import build_app
from bot.bootstrap import build_services
from bot.core.clock import FakeClock
from bot.db.models import Dispatch
from bot.services.context import Services
from bot.services.intake import EXAMPLE
from tests.conftest import reset_database
from tests.helpers import new_dispatch

TOKEN = "test-api-token"
LONG_RUN = int(os.environ.get("FIELDBOT_FUZZ_EXAMPLES", "0"))
EXAMPLES = LONG_RUN or 20  # per strategy and operation, with the right token
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
PROBLEM_KEYS = {"error", "code", "fields"}


@dataclass
class Api:
    runner: asyncio.Runner
    services: Services
    client: httpx.AsyncClient
    auth: str  # "valid", "missing" or "wrong"

    def send(self, kwargs: dict[str, Any]) -> httpx.Response:
        """Send schemathesis' request kwargs (made for ``requests``) with httpx."""
        kwargs = dict(kwargs)
        kwargs.pop("base_url", None)
        kwargs.pop("cookies", None)
        data = kwargs.pop("data", None)
        if data is not None:
            kwargs["content"] = data
        if "json" in kwargs:  # escaped, so lone surrogates travel as JSON allows
            kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return self.runner.run(self.client.request(**kwargs))

    def count(self) -> int:
        async def go() -> int:
            async with self.services.uow() as uow:
                stmt = select(func.count()).select_from(Dispatch)
                return int(await uow.session.scalar(stmt) or 0)

        return self.runner.run(go())


@pytest.fixture
def app_on_own_loop(make_settings: Any) -> Iterator[tuple[asyncio.Runner, Services, Any]]:
    """The app and its database on one event loop of the test's own (schemathesis and
    hypothesis are synchronous; the engine must never cross loops)."""
    runner = asyncio.Runner()
    settings_ = make_settings()
    runner.run(reset_database(settings_.database_url))
    services = build_services(settings_, clock=FakeClock())
    runner.run(new_dispatch(services))  # so that GET finds one
    try:
        yield runner, services, build_app(services)
    finally:
        runner.run(services.sessionmaker.kw["bind"].dispose())
        runner.close()


@pytest.fixture(params=["valid", "missing", "wrong"])
def api(request: pytest.FixtureRequest, app_on_own_loop: Any) -> Iterator[Api]:
    runner, services, app = app_on_own_loop
    # raise_app_exceptions=False: an unexpected error must show as the 500 a client gets
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    try:
        yield Api(runner, services, client, request.param)
    finally:
        runner.run(client.aclose())


def check_response(api: Api, case: Any) -> httpx.Response:
    """Send ``case`` with the fixture's token (or none, or a wrong one) and judge the answer."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if api.auth == "valid":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif api.auth == "wrong":
        headers["Authorization"] = "Bearer not-the-token"
    case.headers = headers
    protected = case.path.startswith("/api/") and api.auth != "valid"
    before = api.count() if protected else 0
    response = api.send(case.as_transport_kwargs(base_url="http://testserver"))
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == PROBLEM_KEYS, f"{where}: {body}"
        assert isinstance(body["error"], str) and body["error"].strip(), f"{where}: {body}"
        assert isinstance(body["code"], str) and body["code"], f"{where}: {body}"
        assert isinstance(body["fields"], list), f"{where}: {body}"
        for item in body["fields"]:
            assert item["field"] and item["message"], f"{where}: {body}"
    if protected:
        assert response.status_code == 401, f"{where}: {response.text}"
        assert response.headers.get("www-authenticate") == "Bearer"
        assert api.count() == before
    return response


# ---- nearly valid bodies -------------------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\x1b[31m red",
            "'; DROP TABLE dispatches; --",
            "=cmd|' /C calc'!A0",
            "\u202eRTL\u202c",
            "😀" * 60,
            "x" * 10_000,
            " ",
            "\ufeff",
            "\u2028",
        ]
    ),
)
zones = st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
nasty_datetime = st.one_of(
    st.datetimes(timezones=zones).map(datetime.isoformat),
    st.datetimes(datetime(2026, 12, 1), datetime(2031, 1, 1), timezones=zones).map(
        datetime.isoformat
    ),
    st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59", "9999-12-31T23:59:59-12:00"]),
    nasty_text,
)
nasty_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e-320, 90, -90, 180, -180, True, None, "1", "", []]),
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "customer": nasty_text,
    "contact_name": nasty_text,
    "contact_phone": st.one_of(
        nasty_text, st.sampled_from(["13800138000", "+1 202 555 0143", "00861380013800", "+999"])
    ),
    "address": nasty_text,
    "latitude": nasty_number,
    "longitude": nasty_number,
    "equipment_model": nasty_text,
    "quantity": nasty_number,
    "serials": st.one_of(st.lists(nasty_text, max_size=5), nasty_text, nasty_number),
    "service_type": st.one_of(nasty_text, st.sampled_from(["安装", "STARTUP", " repair "])),
    "window_start": nasty_datetime,
    "window_end": nasty_datetime,
    "engineer": st.one_of(nasty_text, st.sampled_from(["E0001", "e0001", "S0001"])),
    "description": nasty_text,
    "ref": nasty_text,
}


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """The documented example with one to three fields replaced by hostile values or dropped."""
    body = dict(EXAMPLE)
    body.pop("ref")  # else the first success makes every later one a no-op duplicate
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=3)):
        if draw(st.booleans()) or name not in body:
            body[name] = draw(FIELD_VALUES[name])
        else:
            body.pop(name)
    if draw(st.booleans()):  # keep the window valid, so the other fields reach the database
        body["window_start"] = EXAMPLE["window_start"]
        body["window_end"] = EXAMPLE["window_end"]
    return body


# ---- the tests -----------------------------------------------------------------------------


def operations(api: Api) -> list[Any]:
    """Every operation of the app's own OpenAPI document."""
    schema = schemathesis.openapi.from_dict(api.client._transport.app.openapi())  # type: ignore[attr-defined]
    return [result.ok() for result in schema.get_all_operations()]


def test_rest_api_fuzzed(api: Api) -> None:
    ops = operations(api)
    labels = {op.label for op in ops}
    assert {"POST /api/v1/dispatches", "GET /api/v1/dispatches/{dispatch_id}"} <= labels
    examples = EXAMPLES if api.auth == "valid" else max(EXAMPLES // 4, 5)
    statuses: dict[str, set[int]] = {label: set() for label in labels}
    for op in ops:
        plans = [(op.as_strategy(generation_mode=GenerationMode.POSITIVE), examples)]
        if op.path_parameters or op.query or op.headers or op.body:
            plans.append((op.as_strategy(generation_mode=GenerationMode.NEGATIVE), examples))
        plans += [(s, 5) for s in op.schema.get_strategies_from_examples(op)]
        if op.label == "POST /api/v1/dispatches" and api.auth == "valid":
            nearly = near_valid_bodies().map(
                lambda body, op=op: op.Case(body=body, media_type="application/json")
            )
            plans.append((nearly, 2 * examples))
        for strategy, count in plans:

            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                derandomize=not LONG_RUN,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                statuses[case.operation.label].add(check_response(api, case).status_code)

            run()
    if api.auth == "valid":  # the fuzzing reached past validation, not only refusals
        assert {201, 422} <= statuses["POST /api/v1/dispatches"], statuses
        assert {200, 404, 422} <= statuses["GET /api/v1/dispatches/{dispatch_id}"], statuses


# ---- what the fuzzing found, pinned --------------------------------------------------------
# Each of these was a 500 (or, on SQLite, a control character stored and later sent on) before
# the fix; they run on every database, whatever the random examples above happen to draw.

FOUND: list[tuple[dict[str, Any], str]] = [
    ({"window_start": "0001-01-01T00:00:00+14:00"}, "window_start"),  # OverflowError
    ({"window_end": "9999-12-31T23:59:59-12:00"}, "window_end"),  # OverflowError
    ({"customer": "a\x00b"}, "customer"),  # PostgreSQL refuses NUL in text
    ({"contact_name": "\x1b[31mLi"}, "contact_name"),
    ({"description": "ok\nthen \x00"}, "description"),
    ({"ref": "r\x00"}, "ref"),
    ({"engineer": "E\x00"}, "engineer"),
    ({"serials": ["SN\x00"]}, "serials"),
    ({"quantity": True}, "quantity"),  # was taken as 1
]


@pytest.mark.parametrize(("override", "field"), FOUND)
async def test_hostile_fields_are_refused_field_by_field(services, override, field) -> None:
    app = build_app(services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/api/v1/dispatches",
            content=json.dumps({**EXAMPLE, **override}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_dispatch"
    assert [f["field"] for f in body["fields"]] == [field], body


async def test_error_bodies_outside_the_schema(services) -> None:
    """Unreadable bodies, wrong types, unknown paths and methods: the same error shape, and a
    caller without the token learns nothing about the body (401 before any 4xx)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_type = {"Content-Type": "application/json"}
    app = build_app(services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        not_json = await client.post("/api/v1/dispatches", content=b"{", headers=auth | json_type)
        a_list = await client.post("/api/v1/dispatches", json=[], headers=auth)
        blind = await client.post("/api/v1/dispatches", content=b"{", headers=json_type)
        blind_get = await client.get("/api/v1/dispatches/not-a-number")
        too_big = await client.get(f"/api/v1/dispatches/{2**63}", headers=auth)
        zero = await client.get("/api/v1/dispatches/0", headers=auth)
        lowercase = await client.get(
            "/api/v1/dispatches/1", headers={"Authorization": f"bearer {TOKEN}"}
        )
        basic = await client.get("/api/v1/dispatches/1", headers={"Authorization": "Basic eDp5"})
        nowhere = await client.get("/api/v1/nothing", headers=auth)
        method = await client.delete("/api/v1/dispatches/1", headers=auth)
    assert not_json.status_code == 422 and not_json.json()["fields"] == [
        {"field": "body", "message": "is not valid JSON"}
    ]
    assert a_list.status_code == 422 and a_list.json()["fields"][0]["field"] == "dispatch"
    assert blind.status_code == blind_get.status_code == basic.status_code == 401
    assert blind.json() == {
        "error": "missing or wrong API token",
        "code": "unauthorized",
        "fields": [],
    }
    assert too_big.status_code == zero.status_code == 422
    assert too_big.json()["fields"][0]["field"] == "dispatch_id"
    assert lowercase.status_code == 404  # the scheme is case-insensitive (RFC 7235)
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"
    assert method.status_code == 405 and method.json()["code"] == "method_not_allowed"
    assert "GET" in method.headers["allow"]
