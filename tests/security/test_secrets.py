"""Issue 8 item 10: the webhook secret, the REST token and the deep-link codes.

- the webhook refuses (403) a missing, wrong or partial secret, and any request at all when no
  secret is configured or the bot is not in webhook mode; a refused update is not stored;
- every ``/api/`` route answers 401 without the exact bearer token (and when none is set);
- both compare what they are given in constant time (``hmac.compare_digest``);
- invite and job-link codes carry at least 128 random bits, are stored only as a SHA-256,
  looked up by that hash (so the code itself is never compared byte by byte), work once
  (invites), expire (invites), and a replaced job link stops working.

The end-to-end webhook test (tests/e2e/test_webhook.py) checks the same over real HTTP.
"""

from __future__ import annotations

import hmac
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.routing import Route

from bot.api.app import build_app
from bot.bootstrap import build_services
from bot.db.models import Dispatch, Inbox, Invite, User
from bot.services.context import Services
from bot.services.customers import customer_link, dispatch_by_link
from bot.services.staff import INVITE_PREFIX, Redeem, hash_code, redeem_invite
from tests.helpers import dispatch_fields, new_dispatch, new_staff

TOKEN = "test-api-token"  # tests/conftest.py
SECRET = "s3cret-webhook-token-0123456789"
URLSAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def client(services: Services) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(services))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def count(services: Services, model: Any) -> int:
    async with services.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def spy_compare(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes | str, bytes | str]]:
    calls: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


# ---- REST ----------------------------------------------------------------------------------------

BAD_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"X-Api-Token": TOKEN},
]


def api_routes(services: Services) -> list[tuple[str, str]]:
    """Every (method, path) under /api/ the app serves, path parameters filled with 1."""
    found = []
    for route in build_app(services).routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            found += [(m, path) for m in sorted(route.methods or ()) if m not in ("HEAD",)]
    return found


async def test_every_api_route_needs_the_exact_bearer_token(services: Services) -> None:
    routes = api_routes(services)
    assert ("POST", "/api/v1/dispatches") in routes and ("GET", "/api/v1/dispatches/1") in routes
    body = dispatch_fields(services)
    async with client(services) as http:
        for method, path in routes:
            for headers in BAD_AUTH:
                resp = await http.request(method, path, json=body, headers=headers)
                assert resp.status_code == 401, (method, path, headers, resp.text)
                assert TOKEN not in resp.text
            for query in (f"token={TOKEN}", f"api_token={TOKEN}", f"access_token={TOKEN}"):
                resp = await http.request(method, f"{path}?{query}", json=body)
                assert resp.status_code == 401, (method, path, query)
        ok = await http.post(
            "/api/v1/dispatches", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert ok.status_code == 201, ok.text
    assert await count(services, Dispatch) == 1  # only the authorised request created one


async def test_no_configured_token_means_no_access(make_settings: Any, services: Services) -> None:
    """API_TOKEN unset: the REST API is closed, whatever is sent (an empty token never matches)."""
    closed = build_services(make_settings(api_token=""), clock=services.clock)
    try:
        async with client(closed) as http:
            for headers in [*BAD_AUTH, {"Authorization": f"Bearer {TOKEN}"}]:
                resp = await http.get("/api/v1/dispatches/1", headers=headers)
                assert resp.status_code == 401, headers
    finally:
        await closed.sessionmaker.kw["bind"].dispose()


async def test_the_token_is_compared_in_constant_time(services: Services, spy_compare) -> None:
    async with client(services) as http:
        await http.get("/api/v1/dispatches/1", headers={"Authorization": "Bearer guess"})
    assert any(b"guess" in (a if isinstance(a, bytes) else a.encode()) for a, _ in spy_compare)


# ---- the webhook ---------------------------------------------------------------------------------


def update(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 42, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "Forger"},
            "text": "/help",
        },
    }


async def webhook_services(make_settings: Any, services: Services, **overrides: Any) -> Services:
    settings = make_settings(
        **{"webhook_url": "https://bot.example.com", "webhook_secret": SECRET, **overrides}
    )
    return build_services(settings, clock=services.clock)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Telegram-Bot-Api-Secret-Token": ""},
        {"X-Telegram-Bot-Api-Secret-Token": "guess"},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET.upper()},
        {"Authorization": f"Bearer {SECRET}"},
        {"Authorization": f"Bearer {TOKEN}"},  # the REST token is not the webhook secret
    ],
)
async def test_webhook_refuses_a_missing_or_wrong_secret(
    make_settings: Any, services: Services, headers: dict[str, str]
) -> None:
    hooked = await webhook_services(make_settings, services)
    try:
        async with client(hooked) as http:
            resp = await http.post("/telegram/webhook", json=update(1), headers=headers)
            assert resp.status_code == 403
            assert SECRET not in resp.text
            good = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            assert (await http.post("/telegram/webhook", json=update(2), headers=good)).is_success
        async with hooked.uow() as uow:
            stored = list(await uow.session.scalars(select(Inbox.update_id)))
        assert stored == [2]  # the refused update was never stored
    finally:
        await hooked.sessionmaker.kw["bind"].dispose()


@pytest.mark.parametrize(
    "overrides",
    [{"webhook_secret": ""}, {"webhook_url": ""}, {"webhook_url": "", "webhook_secret": ""}],
)
async def test_webhook_is_closed_without_a_secret_or_outside_webhook_mode(
    make_settings: Any, services: Services, overrides: dict[str, str]
) -> None:
    hooked = await webhook_services(make_settings, services, **overrides)
    try:
        async with client(hooked) as http:
            for secret in ("", SECRET):
                resp = await http.post(
                    "/telegram/webhook",
                    json=update(3),
                    headers={"X-Telegram-Bot-Api-Secret-Token": secret},
                )
                assert resp.status_code == 403, (overrides, secret)
        assert await count(hooked, Inbox) == 0
    finally:
        await hooked.sessionmaker.kw["bind"].dispose()


async def test_webhook_secret_is_compared_in_constant_time(
    make_settings: Any, services: Services, spy_compare
) -> None:
    hooked = await webhook_services(make_settings, services)
    try:
        async with client(hooked) as http:
            await http.post(
                "/telegram/webhook",
                json=update(4),
                headers={"X-Telegram-Bot-Api-Secret-Token": "guess-1234"},
            )
    finally:
        await hooked.sessionmaker.kw["bind"].dispose()
    given = [a if isinstance(a, bytes) else a.encode() for a, _ in spy_compare]
    assert any(b"guess-1234" in g for g in given)


# ---- invite codes and job links ------------------------------------------------------------------


def random_bits(code: str, prefix: str) -> int:
    body = code.removeprefix(prefix)
    assert code.startswith(prefix) and URLSAFE.match(body), code
    return len(body) * 6  # URL-safe base64: 6 bits a character


async def test_invite_and_link_codes_carry_at_least_128_random_bits(services: Services) -> None:
    invites = [(await new_staff(services, name=f"E{n}")).code for n in range(30)]
    dispatch = await new_dispatch(services)
    links = []
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, dispatch.id)
        assert row is not None
        for _ in range(30):
            links.append((await customer_link(uow, row)).split("start=", 1)[1])
        await uow.commit()
    assert len(set(invites)) == 30 and len(set(links)) == 30
    assert min(random_bits(c, INVITE_PREFIX) for c in invites) >= 128
    assert min(random_bits(c, "job_") for c in links) >= 128
    assert all(len(c) <= 64 for c in invites + links)  # Telegram's start payload limit
    # No structure to guess from: the characters after the prefix vary across codes.
    for position in range(10):
        assert len({c[len(INVITE_PREFIX) + position] for c in invites}) > 5


async def dispatch_with_link(services: Services) -> tuple[Dispatch, str]:
    """A new dispatch and the code of its customer deep link."""
    dispatch = await new_dispatch(services)
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, dispatch.id)
        assert row is not None
        code = (await customer_link(uow, row)).split("start=", 1)[1]
        await uow.commit()
    return dispatch, code


async def test_codes_are_stored_only_as_hashes(services: Services) -> None:
    new = await new_staff(services)
    dispatch, code = await dispatch_with_link(services)
    async with services.uow() as uow:
        invite_hashes = list(await uow.session.scalars(select(Invite.code_hash)))
        link_hash = await uow.session.scalar(
            select(Dispatch.customer_link_hash).where(Dispatch.id == dispatch.id)
        )
    assert invite_hashes == [hash_code(new.code)] and link_hash == hash_code(code)
    assert new.code not in str(invite_hashes) and code != link_hash


async def test_invites_are_single_use_and_expire_to_the_second(services: Services) -> None:
    ttl = services.settings.invite_ttl
    first, second = await new_staff(services, name="A"), await new_staff(services, name="B")
    services.clock.advance(ttl - timedelta(seconds=1))  # type: ignore[attr-defined]
    async with services.uow() as uow:
        outcome, _ = await redeem_invite(
            uow, code=first.code, telegram_id=501, chat_id=501, language="en"
        )
        assert outcome is Redeem.OK
        await uow.commit()
    async with services.uow() as uow:  # used: by anyone, the same account included
        for telegram_id in (501, 502):
            outcome, _ = await redeem_invite(
                uow, code=first.code, telegram_id=telegram_id, chat_id=telegram_id, language="en"
            )
            assert outcome is Redeem.USED
    services.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    async with services.uow() as uow:  # exactly at its expiry: refused
        outcome, user = await redeem_invite(
            uow, code=second.code, telegram_id=503, chat_id=503, language="en"
        )
        assert (outcome, user) == (Redeem.EXPIRED, None)
        await uow.commit()
    async with services.uow() as uow:
        bound = await uow.session.scalar(select(User).where(User.telegram_id == 503))
    assert bound is None


async def test_codes_are_found_by_hash_and_compared_in_constant_time(
    services: Services, spy_compare
) -> None:
    new = await new_staff(services)
    _, code = await dispatch_with_link(services)
    async with services.uow() as uow:
        assert (await dispatch_by_link(uow, code)) is not None
        outcome, _ = await redeem_invite(
            uow, code=new.code, telegram_id=601, chat_id=601, language="en"
        )
        assert outcome is Redeem.OK
    compared = {b if isinstance(b, str) else b.decode() for a, b in spy_compare} | {
        a if isinstance(a, str) else a.decode() for a, b in spy_compare
    }
    assert hash_code(code) in compared and hash_code(new.code) in compared
    assert code not in compared and new.code not in compared  # never the code itself


async def test_a_replaced_job_link_stops_working(services: Services) -> None:
    dispatch = await new_dispatch(services)
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, dispatch.id)
        assert row is not None
        old = (await customer_link(uow, row)).split("start=", 1)[1]
        new = (await customer_link(uow, row)).split("start=", 1)[1]
        await uow.commit()
    async with services.uow() as uow:
        assert await dispatch_by_link(uow, old) is None
        found = await dispatch_by_link(uow, new)
        assert found is not None and found.id == dispatch.id
        for guess in (new[:-1], new + "A", new.upper(), "job_" + "A" * 24, "job_", new[4:]):
            assert await dispatch_by_link(uow, guess) is None, guess
