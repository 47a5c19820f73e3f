"""Webhook mode: Telegram pushes updates to our HTTP app, which stores them before its 200."""

from __future__ import annotations

import asyncio
import socket

import httpx

from tests.e2e.conftest import Harness
from tests.helpers import new_staff


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def help_update(update_id: int, user_id: int, first_name: str) -> dict[str, object]:
    """A /help message as Telegram would post it to the webhook."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": "/help",
        },
    }


async def test_updates_arrive_by_webhook_and_need_the_secret(harness: Harness) -> None:
    tg = harness.tg
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with harness.running(
        http_port=port, webhook_url=base, webhook_secret="s3cret-token"
    ) as bot:
        info = [p for m, p in tg.calls if m == "setWebhook"]
        assert info and info[-1]["url"] == f"{base}/telegram/webhook"
        assert not [m for m, _ in tg.calls if m == "getUpdates"]
        new = await new_staff(bot.services)
        user = tg.user(first_name="Web")
        await user.send(f"/start {new.code}")
        await tg.wait_for(user.id, "Welcome")
        await tg.wait_for(user.id, "What you can do")
        update = help_update(999_999, user.id, "Forger")
        async with httpx.AsyncClient(base_url=base) as client:
            no_secret = await client.post("/telegram/webhook", json=update)
            wrong = await client.post(
                "/telegram/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": "guess"},
            )
            garbage = await client.post(
                "/telegram/webhook",
                content=b"not json",
                headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"},
            )
        assert no_secret.status_code == 403 and wrong.status_code == 403
        assert garbage.status_code == 400
        await tg.wait_idle()
        helps = [m for m in tg.messages(user.id) if "What you can do" in (m.get("text") or "")]
        assert len(helps) == 1  # only the one from the real /start, none from the forgeries


async def test_an_update_delivered_twice_by_webhook_acts_once(harness: Harness) -> None:
    """Telegram retries a delivery it thinks failed: the copy is stored once and handled once."""
    tg = harness.tg
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with harness.running(
        http_port=port, webhook_url=base, webhook_secret="s3cret-token"
    ) as bot:
        new = await new_staff(bot.services)
        user = tg.user(first_name="Twice")
        await user.send(f"/start {new.code}")
        await tg.wait_for(user.id, "What you can do")
        update = help_update(777_777, user.id, "Twice")
        secret = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
        async with httpx.AsyncClient(base_url=base) as client:
            first, second = await asyncio.gather(
                client.post("/telegram/webhook", json=update, headers=secret),
                client.post("/telegram/webhook", json=update, headers=secret),
            )
            assert first.status_code == 200 and second.status_code == 200
            await tg.wait_idle()
            third = await client.post("/telegram/webhook", json=update, headers=secret)
            assert third.status_code == 200
        await tg.wait_idle()
        helps = [m for m in tg.messages(user.id) if "What you can do" in (m.get("text") or "")]
        assert len(helps) == 2  # the /start's and one for the update, however often it came
