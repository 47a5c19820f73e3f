"""``fieldbot demo``: a fake Telegram, the real bot over HTTP, a whole job, printed as it goes."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.bootstrap import FieldBot
from bot.config import load_settings
from bot.fakeapi import FakeTelegram, FakeUser, TranscriptEntry, format_entry
from bot.services.staff import add_staff

SITE = (31.2304, 121.4737)


def _printer(out: Callable[[str], None]) -> Callable[[TranscriptEntry], None]:
    def show(entry: TranscriptEntry) -> None:
        if entry.kind == "callback_answer" and not entry.text:
            return
        out(format_entry(entry))

    return show


def _say(out: Callable[[str], None], text: str) -> None:
    out("")
    out(f"── {text} " + "─" * max(0, 70 - len(text)))


async def _invite(bot: FieldBot, role: str, name: str, skills: list[str]) -> str:
    async with bot.services.uow() as uow:
        new = await add_staff(uow, role=role, name=name, skills=skills)
        await uow.commit()
        return new.code


async def _join(
    tg: FakeTelegram, bot: FieldBot, user: FakeUser, role: str, name: str, skills: list[str]
) -> None:
    code = await _invite(bot, role, name, skills)
    await user.send(f"/start {code}")
    await tg.wait_for(user.id, "/help")


async def run_demo(*, out: Callable[[str], None] = print) -> int:
    """Walk one job from dispatch to sign-off and feedback; returns a process exit code."""
    folder = Path(tempfile.mkdtemp(prefix="fieldbot-demo-"))
    async with FakeTelegram(bot_username="fieldbot_demo_bot") as tg:
        settings = load_settings(
            bot_token=tg.token,
            telegram_api_url=tg.url,
            database_url=f"sqlite+aiosqlite:///{folder}/demo.db",
            api_token="demo-api-token",
            http_port=0,
            quiet_hours="off",
            scheduler_interval="500ms",
            send_chat_burst=20,
            bot_username="fieldbot_demo_bot",
        )
        bot = FieldBot(settings)
        await bot.start()
        out(f"fieldbot demo — fake Telegram at {tg.url}, database {folder}/demo.db")
        out(f"REST API at {bot.http_url}/docs (token: demo-api-token)")
        unsubscribe = tg.on_event(_printer(out))
        try:
            await _walk(tg, bot, out)
        except AssertionError as exc:
            out(f"demo failed: {exc}")
            return 1
        finally:
            unsubscribe()
            await bot.stop()
    out("")
    out("Demo finished: the job went from dispatch to the customer's sign-off and rating.")
    out("Run it against real Telegram with: BOT_TOKEN=... uv run fieldbot run")
    return 0


async def _walk(tg: FakeTelegram, bot: FieldBot, out: Callable[[str], None]) -> None:
    zhou = tg.user(first_name="Zhou", language_code="en")
    lina = tg.user(first_name="Li Na", language_code="en", phone_number="8613800138000")
    wang = tg.user(first_name="Wang", language_code="zh-hans")
    chen = tg.user(first_name="Chen", language_code="en")

    _say(out, "Staff join with their single-use invite links")
    await _join(tg, bot, zhou, "supervisor", "Zhou Min", [])
    await _join(tg, bot, wang, "engineer", "王伟", ["repair"])
    await _join(tg, bot, chen, "engineer", "Chen Jie", ["repair"])

    _say(out, "The back office creates a dispatch through the REST API")
    start = datetime.now(UTC) - timedelta(minutes=10)
    body: dict[str, Any] = {
        "customer": "Acme Foods",
        "contact_name": "Li Na",
        "contact_phone": "+86 138 0013 8000",
        "address": "88 Century Avenue, Pudong",
        "latitude": SITE[0],
        "longitude": SITE[1],
        "equipment_model": "CH-200 chiller",
        "quantity": 1,
        "serials": ["SN-1001"],
        "service_type": "repair",
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=3)).isoformat(),
    }
    async with httpx.AsyncClient(
        base_url=bot.http_url, headers={"Authorization": "Bearer demo-api-token"}
    ) as api:
        created = (await api.post("/api/v1/dispatches", json=body)).json()
    out(f"   POST /api/v1/dispatches → {created['number']} ({created['status']})")
    number = created["number"]

    _say(out, "The customer shares her phone number and follows her job")
    await lina.send("/start")
    await tg.wait_for(lina.id, "share your phone number")
    await lina.tap("📱 Share my phone number")
    await tg.wait_for(lina.id, "You now follow")

    _say(out, "The first engineer declines (too far away); the job moves on")
    await tg.wait_for(wang.id, number)
    await wang.press("✖️ 拒绝")
    await tg.wait_for(wang.id, "原因")
    await wang.press("距离太远")
    await tg.wait_for(chen.id, number)

    _say(out, "The second engineer accepts and calls the customer")
    await chen.press("✅ Accept")
    await tg.wait_for(chen.id, "call the customer")
    await chen.press("📞 I reached the customer")
    eta_prompt = await tg.wait_for(chen.id, "What ETA")
    await chen.press(tg.buttons(eta_prompt)[0][0], eta_prompt)
    await tg.wait_for(chen.id, "On my way")

    _say(out, "On the way, then on site: the location checks him in")
    await chen.press("🚗 On my way")
    eta_prompt = await tg.wait_for(chen.id, "What ETA")
    await chen.press(tg.buttons(eta_prompt)[-1][0], eta_prompt)
    await tg.wait_for(chen.id, "share your location")
    await chen.share_location(SITE[0] + 0.0005, SITE[1])
    await tg.wait_for(chen.id, "Checked in")

    _say(out, "The work report")
    await tg.wait_for(chen.id, "what is the outcome")
    await chen.press("✅ Fixed")
    await tg.wait_for(chen.id, "Describe the work")
    await chen.send("Replaced the compressor relay and tested the cooling cycle.")
    await tg.wait_for(chen.id, "Which parts")
    await chen.send("Compressor relay x 1")
    await tg.wait_for(chen.id, "Send photos")
    await chen.send_photo(caption="Relay replaced")
    await tg.wait_for(chen.id, "Photo 1 saved")
    await chen.press("Done with photos")
    await tg.wait_for(chen.id, "extra work")
    await chen.press("No extra work found")
    await tg.wait_for(chen.id, "check the report")
    await chen.press("📨 Submit the report")
    await tg.wait_for(chen.id, "submitted")

    _say(out, "The customer signs the work order in her chat, gets the PDF and rates the job")
    order = await tg.wait_for(lina.id, "Please check the work order", timeout=15)
    await lina.press("✅ Confirm", order)
    await tg.wait_for(lina.id, lambda m: "document" in m, timeout=60)
    rating = await tg.wait_for(lina.id, "How was the service", timeout=15)
    await lina.press("5 ⭐", rating)
    await tg.wait_for(lina.id, "add a comment")
    await lina.send("Quick and tidy, thank you!")
    await tg.wait_for(lina.id, "Thank you for your feedback")

    _say(out, "The job is signed off: the customer's phone and address leave Chen's chat")
    await tg.wait_for(chen.id, "signed off job FB000001", timeout=15)
    for _ in range(4):  # the job card, the call prompt, the two arrival prompts
        await tg.wait_for_edit(chen.id, "removed from this chat", timeout=15)
    await tg.wait_idle(quiet=0.3)


def main() -> None:  # pragma: no cover - convenience for `python -m bot.demo`
    sys.exit(asyncio.run(run_demo()))


if __name__ == "__main__":  # pragma: no cover
    main()
