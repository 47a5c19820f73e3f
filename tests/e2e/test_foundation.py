"""Issue 2 end to end: onboarding through a real /start deep link, and a dispatch offer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.db.models import Inbox
from tests.e2e.conftest import Harness
from tests.helpers import new_staff


def window(hours_from_now: float = 2, length: float = 3) -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(hours=hours_from_now)
    return {
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=length)).isoformat(),
    }


DISPATCH = {
    "customer": "Acme Foods",
    "contact_name": "Li Na",
    "contact_phone": "+86 138 0013 8000",
    "address": "88 Century Avenue",
    "latitude": 31.2304,
    "longitude": 121.4737,
    "equipment_model": "CH-200 chiller",
    "quantity": 1,
    "serials": ["SN-1"],
    "service_type": "repair",
}


async def test_engineer_onboards_by_deep_link_and_receives_an_offer(harness: Harness) -> None:
    tg = harness.tg
    async with harness.running() as bot:
        new = await new_staff(bot.services, "engineer", "Wang Wei", ("repair",))
        assert new.link == f"https://t.me/fieldbot_test_bot?start={new.code}"
        wang = tg.user(first_name="Wei", language_code="zh-hans")
        await wang.send(f"/start {new.code}")
        welcome = await tg.wait_for(wang.id, "欢迎")
        assert "工号 E0001" in welcome["text"]
        await tg.wait_for(wang.id, "/jobs")
        async with harness.api() as api:
            created = await api.post("/api/v1/dispatches", json={**DISPATCH, **window()})
            assert created.status_code == 201, created.text
        offer = await tg.wait_for(wang.id, "新的派单")
        assert "+8613800138000" in offer["text"] and "88 Century Avenue" in offer["text"]
        assert tg.buttons(offer) == [["✅ 接单", "✖️ 拒绝"]]
        location = await tg.wait_for(wang.id, lambda m: "location" in m)
        assert location["location"]["latitude"] == DISPATCH["latitude"]


async def test_a_used_invite_is_refused_over_the_wire(harness: Harness) -> None:
    tg = harness.tg
    async with harness.running() as bot:
        new = await new_staff(bot.services)
        first, second = tg.user(first_name="A"), tg.user(first_name="B")
        await first.send(f"/start {new.code}")
        await tg.wait_for(first.id, "Welcome")
        await second.send(f"/start {new.code}")
        refusal = await tg.wait_for(second.id, "already been used")
        assert tg.buttons(refusal) == []


async def test_dispatch_created_by_the_cli_in_another_process_reaches_the_engineer(
    harness: Harness,
) -> None:
    tg = harness.tg
    async with harness.running() as bot:
        new = await new_staff(bot.services, skills=("maintenance",))
        eng = tg.user(first_name="Eng")
        await eng.send(f"/start {new.code}")
        await tg.wait_for(eng.id, "Welcome")
        start = datetime.now(UTC) + timedelta(days=1)
        env = {**os.environ, "DATABASE_URL": harness.db_url}
        args = [
            sys.executable,
            "-m",
            "bot",
            "dispatch",
            "create",
            "--customer",
            "Beta Ltd",
            "--contact-name",
            "Zhao",
            "--contact-phone",
            "13900139000",
            "--address",
            "1 Nanjing Road",
            "--equipment-model",
            "AC-9",
            "--service-type",
            "maintenance",
            "--window-start",
            start.strftime("%Y-%m-%dT%H:%M"),
            "--window-end",
            (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "--json",
        ]
        proc = await asyncio.to_thread(
            subprocess.run, args, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        number = json.loads(proc.stdout)["number"]
        offer = await tg.wait_for(eng.id, number, timeout=10)
        assert "Beta Ltd" in offer["text"]


async def test_an_update_is_stored_before_it_is_acknowledged_and_acts_once(
    harness: Harness,
) -> None:
    """A crash after getUpdates but before handling loses nothing; redelivery acts once."""
    tg = harness.tg
    bot = await harness.start()
    new = await new_staff(bot.services)
    await harness.stop()
    user = tg.user(first_name="Late")
    await user.send(f"/start {new.code}")  # arrives while the bot is down
    async with harness.running() as bot:
        await tg.wait_for(user.id, "Welcome")
        await tg.wait_idle()
        async with bot.services.uow() as uow:
            rows = list(await uow.session.scalars(select(Inbox)))
        assert [r.status for r in rows] == ["done"]
        update = dict(tg.updates[-1])
        from bot.services import inbox

        async with bot.services.uow() as uow:  # the same update delivered a second time
            assert await inbox.store(uow.session, [update], uow.clock.now()) == 0
            await uow.commit()
        await tg.wait_idle()
    welcomes = [m for m in tg.messages(user.id) if "Welcome" in (m.get("text") or "")]
    assert len(welcomes) == 1


async def test_updates_no_handler_takes_do_not_block_the_chat(harness: Harness) -> None:
    """A member update (block, unblock) is closed in the inbox; the next message is answered."""
    tg = harness.tg
    async with harness.running():
        user = tg.user(first_name="Moody")
        await user.send("/help")
        await tg.wait_for(user.id, "service desk bot")
        await user.block()
        await user.unblock()
        await user.send("/help")
        await tg.wait_for(user.id, "service desk bot")
        assert not tg.internal_errors
