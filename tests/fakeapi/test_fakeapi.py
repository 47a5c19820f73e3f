"""Tests for the fake Telegram Bot API server (real HTTP, real aiogram / PTB clients)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.fakeapi import (
    FakeTelegram,
    FaultPlan,
    RateLimits,
    TranscriptEntry,
    format_entry,
    parse_text,
)

KEYBOARD = {
    "inline_keyboard": [
        [
            {"text": "Accept", "callback_data": "job:1:accept"},
            {"text": "Decline", "callback_data": "job:1:decline"},
        ]
    ]
}


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, tg: FakeTelegram, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    """POST a Bot API call as JSON; returns (status, body)."""
    async with http.post(f"{tg.api_url}/{method}", json=params) as resp:
        return resp.status, await resp.json()


async def ok(http: aiohttp.ClientSession, tg: FakeTelegram, method: str, **params: Any) -> Any:
    status, body = await call(http, tg, method, **params)
    assert status == 200 and body["ok"], body
    return body["result"]


# ---------------------------------------------------------------- basics


async def test_get_me_token_and_auth(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    left, right = tg.token.split(":")
    assert left.isdigit() and len(right) == 35 and right.startswith("AA")
    me = await ok(http, tg, "getMe")
    assert me["is_bot"] is True and me["id"] == tg.bot_id and me["username"]

    async with http.get(f"{tg.url}/bot123:wrong/getMe") as resp:
        assert resp.status == 401
        assert await resp.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}

    status, body = await call(http, tg, "frobnicate")
    assert status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    # Method names are case-insensitive, like Telegram's.
    assert (await call(http, tg, "getme"))[0] == 200
    assert [m for m, _ in tg.calls] == ["getMe", "frobnicate", "getMe"]


async def test_chat_access_rules(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(first_name="Alice")
    status, body = await call(http, tg, "sendMessage", chat_id=alice.id, text="hi")
    assert (status, body["description"]) == (400, "Bad Request: chat not found")

    await alice.send("/start")
    msg = await ok(http, tg, "sendMessage", chat_id=alice.id, text="Welcome!")
    assert msg["chat"] == {"id": alice.id, "type": "private", "first_name": "Alice"}
    assert msg["from"]["id"] == tg.bot_id and msg["message_id"] == 2

    alice.blocked = True
    status, body = await call(http, tg, "sendMessage", chat_id=alice.id, text="hi")
    assert (status, body["description"]) == (403, "Forbidden: bot was blocked by the user")


async def test_validation_errors(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user()
    await alice.send("hello")

    async def error(**params: Any) -> str:
        status, body = await call(http, tg, "sendMessage", chat_id=alice.id, **params)
        assert status == 400, body
        return str(body["description"])

    assert await error(text="  ") == "Bad Request: message text is empty"
    assert await error(text="x" * 4097) == "Bad Request: message is too long"
    long_data = {"inline_keyboard": [[{"text": "A", "callback_data": "x" * 65}]]}
    assert await error(text="t", reply_markup=long_data) == "Bad Request: BUTTON_DATA_INVALID"
    assert "can't parse entities" in await error(text="<b>x", parse_mode="HTML")
    assert "reserved" in await error(text="Done.", parse_mode="MarkdownV2")
    assert len(tg.messages(alice.id)) == 0


def test_parse_text_modes() -> None:
    assert parse_text("<b>Job</b> &amp; <i>more</i>", "HTML") == (
        "Job & more",
        [
            {"type": "bold", "offset": 0, "length": 3},
            {"type": "italic", "offset": 6, "length": 4},
        ],
    )
    text, ents = parse_text(r"*Done* \- see [site](https://x.io)\.", "MarkdownV2")
    assert text == "Done - see site."
    assert [e["type"] for e in ents] == ["bold", "text_link"]
    assert parse_text("  padded  ") == ("padded", [])


async def test_form_and_multipart_bodies_decode_nested_json(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    alice = tg.user()
    await alice.send("hi")
    form = {"chat_id": str(alice.id), "text": "[not json]", "reply_markup": json.dumps(KEYBOARD)}
    async with http.post(f"{tg.api_url}/sendMessage", data=form) as resp:
        body = await resp.json()
    assert body["result"]["text"] == "[not json]"
    assert body["result"]["reply_markup"] == KEYBOARD

    multipart = aiohttp.FormData()
    multipart.add_field("chat_id", str(alice.id))
    multipart.add_field("text", "via multipart")
    multipart.add_field("reply_markup", json.dumps(KEYBOARD))
    async with http.post(f"{tg.api_url}/sendMessage", data=multipart()) as resp:
        assert (await resp.json())["result"]["reply_markup"] == KEYBOARD

    async with http.get(f"{tg.api_url}/getUpdates", params={"offset": "-1"}) as resp:
        assert [u["update_id"] for u in (await resp.json())["result"]] == [
            tg.updates[-1]["update_id"]
        ]
    assert tg.calls[0] == ("sendMessage", {**form, "reply_markup": KEYBOARD})


# ---------------------------------------------------------------- polling


async def test_long_poll_returns_when_update_arrives(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    alice = tg.user(first_name="Alice")
    started = time.monotonic()
    poll = asyncio.create_task(call(http, tg, "getUpdates", offset=0, timeout=5))
    await asyncio.sleep(0.05)
    assert not poll.done()
    update = await alice.send("/start abc")
    status, body = await poll
    assert status == 200 and time.monotonic() - started < 1
    assert body["result"] == [update]
    message = update["message"]
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["from"]["first_name"] == "Alice" and message["chat"]["type"] == "private"


async def test_offset_confirms_and_timeout_returns_empty(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    alice = tg.user()
    first = await alice.send("one")
    second = await alice.send("two")
    ids = [first["update_id"], second["update_id"]]
    assert second["update_id"] == first["update_id"] + 1

    assert [u["update_id"] for u in await ok(http, tg, "getUpdates")] == ids
    assert [u["update_id"] for u in await ok(http, tg, "getUpdates", limit=1)] == ids[:1]
    assert [u["update_id"] for u in await ok(http, tg, "getUpdates", offset=ids[1])] == ids[1:]
    # The first update is confirmed now: offset 0 no longer returns it.
    assert [u["update_id"] for u in await ok(http, tg, "getUpdates")] == ids[1:]
    started = time.monotonic()
    assert await ok(http, tg, "getUpdates", offset=ids[1] + 1, timeout=0.2) == []
    assert 0.15 < time.monotonic() - started < 1


async def test_concurrent_get_updates_conflict(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    first = asyncio.create_task(call(http, tg, "getUpdates", timeout=5))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(call(http, tg, "getUpdates", timeout=0.1))
    status, body = await first
    assert status == 409 and "terminated by other getUpdates" in body["description"]
    assert (await second)[0] == 200


# ---------------------------------------------------------------- buttons and callbacks


async def test_press_matches_latest_keyboard(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/jobs")
    old = await ok(http, tg, "sendMessage", chat_id=alice.id, text="Job 1", reply_markup=KEYBOARD)
    kb2 = {"inline_keyboard": [[{"text": "Accept", "callback_data": "job:2:accept"}]]}
    new = await ok(http, tg, "sendMessage", chat_id=alice.id, text="Job 2", reply_markup=kb2)
    await ok(http, tg, "sendMessage", chat_id=alice.id, text="no keyboard here")

    update = await alice.press("Accept")
    query = update["callback_query"]
    assert query["data"] == "job:2:accept"
    assert query["message"] == new and query["from"]["id"] == alice.id
    assert query["chat_instance"] and query["id"]

    # By callback_data, on the older message, and on an explicit message.
    assert (await alice.press("job:1:decline"))["callback_query"]["message"]["message_id"] == (
        old["message_id"]
    )
    assert (await alice.press("Accept", old))["callback_query"]["data"] == "job:1:accept"
    with pytest.raises(AssertionError, match=r"(?s)no inline button 'Maybe'.*\[Accept\]"):
        await alice.press("Maybe")
    assert tg.buttons(old) == [["Accept", "Decline"]]

    assert await ok(http, tg, "answerCallbackQuery", callback_query_id=query["id"], text="Saved")
    status, body = await call(http, tg, "answerCallbackQuery", callback_query_id=query["id"])
    assert status == 400 and "query ID is invalid" in body["description"]
    assert tg.answered_callbacks[0].text == "Saved"
    assert (await tg.wait_for_callback_answer(query["id"])).callback_query_id == query["id"]


async def test_forged_callback_data(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user()
    await alice.send("/start")
    msg = await ok(http, tg, "sendMessage", chat_id=alice.id, text="Job", reply_markup=KEYBOARD)
    update = await alice.press_data("job:999:accept;DROP TABLE", msg["message_id"])
    assert update["callback_query"]["data"] == "job:999:accept;DROP TABLE"
    assert update["callback_query"]["message"]["message_id"] == msg["message_id"]
    assert tg.updates[-1]["update_id"] == update["update_id"]


async def test_reply_keyboard_tap_shares_location_and_contact(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    alice = tg.user(first_name="Alice", phone_number="+15550001111")
    await alice.send("/start")
    markup = {
        "keyboard": [
            [{"text": "📍 Share location", "request_location": True}],
            [{"text": "📞 Share phone", "request_contact": True}, "Help"],
        ],
        "resize_keyboard": True,
    }
    msg = await ok(http, tg, "sendMessage", chat_id=alice.id, text="Where?", reply_markup=markup)
    assert "reply_markup" not in msg  # Telegram only echoes inline keyboards.
    location = (await alice.tap("📍 Share location"))["message"]["location"]
    assert set(location) == {"latitude", "longitude"}
    contact = (await alice.tap("📞 Share phone"))["message"]["contact"]
    assert contact == {"phone_number": "+15550001111", "first_name": "Alice", "user_id": alice.id}
    assert (await alice.tap("Help"))["message"]["text"] == "Help"

    live = await alice.share_location(1.5, 2.5, live_period=600)
    moved = await alice.update_live_location(live["message"]["message_id"], 1.6, 2.6)
    assert moved["edited_message"]["location"] == {
        "latitude": 1.6,
        "longitude": 2.6,
        "live_period": 600,
    }
    assert "edit_date" in moved["edited_message"]

    await ok(
        http, tg, "sendMessage", chat_id=alice.id, text="ok", reply_markup={"remove_keyboard": True}
    )
    assert tg.reply_keyboard(alice.id) is None
    with pytest.raises(AssertionError, match="no reply-keyboard button"):
        await alice.tap("Help")


async def test_group_chat(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    crew = tg.group(title="Crew")
    bob = tg.user(first_name="Bob")
    update = await bob.send("/status", chat=crew)
    assert update["message"]["chat"] == {"id": crew.id, "type": "group", "title": "Crew"}
    await ok(http, tg, "sendMessage", chat_id=crew.id, text="All good")
    assert (await tg.wait_for(crew.id, "All good"))["chat"]["id"] == crew.id
    assert "[Bob @ Crew → bot] /status" in tg.transcript_text(crew.id)


# ---------------------------------------------------------------- edits and waits


async def test_edits_recorded(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user()
    await alice.send("/job")
    msg = await ok(http, tg, "sendMessage", chat_id=alice.id, text="Job 1", reply_markup=KEYBOARD)
    ref = {"chat_id": alice.id, "message_id": msg["message_id"]}

    status, body = await call(
        http, tg, "editMessageText", **ref, text="Job 1", reply_markup=KEYBOARD
    )
    assert status == 400 and body["description"].startswith("Bad Request: message is not modified")

    edited = await ok(http, tg, "editMessageText", **ref, text="Job 1 — accepted")
    assert edited["text"] == "Job 1 — accepted" and "reply_markup" not in edited
    assert "edit_date" in edited
    done = {"inline_keyboard": [[{"text": "Done", "callback_data": "job:1:done"}]]}
    await ok(http, tg, "editMessageReplyMarkup", **ref, reply_markup=done)
    status, body = await call(http, tg, "editMessageReplyMarkup", **ref, reply_markup=done)
    assert status == 400 and "not modified" in body["description"]

    status, body = await call(
        http, tg, "editMessageText", chat_id=alice.id, message_id=99, text="x"
    )
    assert (status, body["description"]) == (400, "Bad Request: message to edit not found")
    status, body = await call(http, tg, "editMessageText", chat_id=alice.id, message_id=1, text="x")
    assert (status, body["description"]) == (400, "Bad Request: message can't be edited")

    [current] = tg.messages(alice.id)
    assert current["text"] == "Job 1 — accepted" and tg.buttons(current) == [["Done"]]
    assert [e.get("text") for e in current["edits"]] == ["Job 1", "Job 1 — accepted"]
    assert tg.buttons(current["edits"][0]) == [["Accept", "Decline"]]

    first_edit = await tg.wait_for_edit(alice.id, "accepted")
    assert tg.buttons(first_edit) == []
    markup_edit = await tg.wait_for_edit(alice.id)
    assert tg.buttons(markup_edit) == [["Done"]]
    with pytest.raises(AssertionError, match="no edit"):
        await tg.wait_for_edit(alice.id, timeout=0.05)

    assert await ok(http, tg, "deleteMessage", **ref)
    assert tg.messages(alice.id)[0]["deleted"] is True
    status, body = await call(http, tg, "deleteMessage", **ref)
    assert (status, body["description"]) == (400, "Bad Request: message to delete not found")
    assert "(deleted #2)" in tg.transcript_text(alice.id)


async def test_wait_for_timeout_shows_transcript(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    await ok(http, tg, "sendMessage", chat_id=alice.id, text="Welcome", reply_markup=KEYBOARD)
    with pytest.raises(AssertionError) as info:
        await tg.wait_for(alice.id, "Goodbye", timeout=0.1)
    text = str(info.value)
    assert "'Goodbye'" in text
    assert "[Alice → bot] /start" in text
    assert "[bot → Alice] Welcome\n   [Accept] [Decline]" in text


async def test_wait_for_cursor_semantics(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user()
    await alice.send("/start")
    for text in ("one", "two", "three"):
        await ok(http, tg, "sendMessage", chat_id=alice.id, text=text)
    assert (await tg.wait_for(alice.id))["text"] == "one"
    assert (await tg.wait_for(alice.id, "three"))["text"] == "three"
    # Cursor is past "three": "two" is not found again, but after=0 searches from the start.
    with pytest.raises(AssertionError):
        await tg.wait_for(alice.id, "two", timeout=0.05)
    assert (await tg.wait_for(alice.id, "two", after=0))["text"] == "two"

    mark = tg.mark(alice.id)
    pending = asyncio.create_task(tg.wait_for(alice.id, lambda m: "four" in m["text"], after=mark))
    await asyncio.sleep(0.01)
    await ok(http, tg, "sendMessage", chat_id=alice.id, text="four")
    assert (await pending)["message_id"] == tg.messages(alice.id)[-1]["message_id"]


# ---------------------------------------------------------------- files


async def test_file_upload_multipart_and_download(
    tg: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    alice = tg.user()
    await alice.send("/report")
    form = aiohttp.FormData()
    form.add_field("chat_id", str(alice.id))
    form.add_field("caption", "Report")
    form.add_field("document", b"%PDF-1.4 fake", filename="report.pdf")
    async with http.post(f"{tg.api_url}/sendDocument", data=form) as resp:
        msg = (await resp.json())["result"]
    doc = msg["document"]
    assert (doc["file_name"], doc["mime_type"], doc["file_size"]) == (
        "report.pdf",
        "application/pdf",
        13,
    )
    assert msg["caption"] == "Report"
    assert tg.uploads[0].data == b"%PDF-1.4 fake" and tg.uploads[0].filename == "report.pdf"

    photo_form = aiohttp.FormData()
    photo_form.add_field("chat_id", str(alice.id))
    photo_form.add_field("photo", "attach://pic")
    photo_form.add_field("pic", b"\xff\xd8jpeg", filename="pic.jpg", content_type="image/jpeg")
    async with http.post(f"{tg.api_url}/sendPhoto", data=photo_form) as resp:
        photo = (await resp.json())["result"]["photo"]
    assert len(photo) == 2 and photo[-1]["width"] > photo[0]["width"]

    # Re-sending by file_id reuses the stored photo; a wrong id is rejected.
    again = await ok(http, tg, "sendPhoto", chat_id=alice.id, photo=photo[-1]["file_id"])
    assert again["photo"] == photo
    status, body = await call(http, tg, "sendPhoto", chat_id=alice.id, photo="nope")
    assert status == 400 and "wrong file identifier" in body["description"]

    sent = await alice.send_photo(b"user-photo-bytes", caption="broken pipe")
    for file_id, expected in (
        (sent["message"]["photo"][-1]["file_id"], b"user-photo-bytes"),
        (doc["file_id"], b"%PDF-1.4 fake"),
    ):
        info = await ok(http, tg, "getFile", file_id=file_id)
        async with http.get(f"{tg.url}/file/bot{tg.token}/{info['file_path']}") as resp:
            assert resp.status == 200 and await resp.read() == expected
    voice = (await alice.send_voice(b"ogg", duration=4))["message"]["voice"]
    assert voice["duration"] == 4 and voice["mime_type"] == "audio/ogg"
    assert (await call(http, tg, "getFile", file_id="missing"))[0] == 400


# ---------------------------------------------------------------- webhook


async def test_webhook_delivery_with_secret_and_retry(
    http: aiohttp.ClientSession,
) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    statuses = [500]

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        status = statuses.pop(0) if statuses else 200
        if status == 200 and len(received) == 2:
            reply = {"method": "sendMessage", "chat_id": alice.id, "text": "via webhook reply"}
            return web.json_response(reply)
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with FakeTelegram(webhook_retry_delay=0.05) as tg:
            alice = tg.user()
            await ok(http, tg, "setWebhook", url=hook_url, secret_token="s3cret")
            status, body = await call(http, tg, "getUpdates")
            assert status == 409 and "webhook is active" in body["description"]

            update = await alice.send("/start")
            await tg.wait_for(alice.id, "via webhook reply", timeout=3)
            assert [r[1] for r in received] == [update, update]
            assert {r[0] for r in received} == {"s3cret"}
            assert [d[1] for d in tg.webhook_deliveries] == [500, 200]
            info = await ok(http, tg, "getWebhookInfo")
            assert info["url"] == hook_url and info["pending_update_count"] == 0
            assert "500" in info["last_error_message"]

            second = await alice.send("again")
            await tg.wait_idle(quiet=0.05, timeout=3)
            assert received[-1][1] == second

            await ok(http, tg, "deleteWebhook")
            third = await alice.send("polling again")
            assert await ok(http, tg, "getUpdates") == [third]
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- faults and limits


async def test_fault_injection(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user()
    await alice.send("/start")
    tg.faults = FaultPlan(rate=1.0, kinds=("429",), retry_after=1, methods={"sendMessage"})
    status, body = await call(http, tg, "sendMessage", chat_id=alice.id, text="hi")
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert await ok(http, tg, "getMe")  # other methods unaffected
    tg.faults = None
    # Retrying before retry_after elapsed is counted and refused.
    assert (await call(http, tg, "sendMessage", chat_id=alice.id, text="hi"))[0] == 429
    assert tg.retry_after_violations == 1
    assert tg.messages(alice.id) == []

    for kind in ("500", "502"):
        tg.faults = FaultPlan(rate=1.0, kinds=(kind,), methods={"sendChatAction"})
        status, _ = await call(http, tg, "sendChatAction", chat_id=alice.id, action="typing")
        assert status == int(kind)
    tg.faults = FaultPlan(rate=1.0, kinds=("drop",), methods={"getMe"})
    with pytest.raises(aiohttp.ClientError):
        await call(http, tg, "getMe")
    tg.faults = FaultPlan(rate=1.0, kinds=("timeout",), timeout_delay=30, methods={"getMe"})
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(f"{tg.api_url}/getMe", timeout=aiohttp.ClientTimeout(total=0.1)):
            pass
    await ok(http, tg, "getUpdates")
    await tg.wait_idle(quiet=0.01, timeout=0.5)  # the stalled call ends once the client gave up
    assert [f.kind for f in tg.injected_faults] == ["429", "500", "502", "drop", "timeout"]
    assert tg.injected_faults[0].chat_id == alice.id

    plan = FaultPlan(rate=0.5, seed=7)
    again = FaultPlan(rate=0.5, seed=7)
    assert [plan.pick("x") for _ in range(20)] == [again.pick("x") for _ in range(20)]


async def test_rate_limits(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice, bob = tg.user(first_name="Alice"), tg.user(first_name="Bob")
    await alice.send("/start")
    await bob.send("/start")
    tg.limits = RateLimits(global_per_second=None, per_chat_per_second=1)
    await ok(http, tg, "sendMessage", chat_id=alice.id, text="1")
    status, body = await call(http, tg, "sendMessage", chat_id=alice.id, text="2")
    assert status == 429 and body["parameters"]["retry_after"] == 1
    await ok(http, tg, "sendMessage", chat_id=bob.id, text="other chat is fine")
    assert [c for c, _ in tg.rate_limited] == [alice.id]
    assert tg.retry_after_violations == 0
    assert [m["text"] for m in tg.messages(alice.id)] == ["1"]


# ---------------------------------------------------------------- observers and idle


async def test_observer_and_format_entry(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    seen: list[TranscriptEntry] = []
    unsubscribe = tg.on_event(seen.append)
    alice = tg.user(first_name="Alice")
    await alice.send("/start abc")
    await ok(http, tg, "sendMessage", chat_id=alice.id, text="Pick one", reply_markup=KEYBOARD)
    await ok(
        http,
        tg,
        "sendMessage",
        chat_id=alice.id,
        text="Share?",
        reply_markup={"keyboard": [["📍 Share location"]]},
    )
    await alice.press("Accept")
    unsubscribe()
    await alice.send("not observed")
    lines = [format_entry(e) for e in seen]
    assert lines == [
        "[Alice → bot] /start abc",
        "[bot → Alice] Pick one\n   [Accept] [Decline]",
        "[bot → Alice] Share?\n   (keyboard: 📍 Share location)",
        "[Alice → bot] (pressed [Accept])",
    ]
    assert [(e.direction, e.kind) for e in seen] == [
        ("user", "text"),
        ("bot", "text"),
        ("bot", "text"),
        ("user", "callback"),
    ]


async def test_wait_idle(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user()
    await alice.send("/start")
    with pytest.raises(AssertionError, match="1 undelivered"):
        await tg.wait_idle(quiet=0.01, timeout=0.1)
    await ok(http, tg, "getUpdates")
    await tg.wait_idle(quiet=0.05, timeout=1)


# ---------------------------------------------------------------- real client libraries


async def test_aiogram_bot(tg: FakeTelegram) -> None:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import TelegramBadRequest
    from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.url))
    bot = Bot(tg.token, session=session)
    try:
        me = await bot.get_me()
        assert me.id == tg.bot_id and me.is_bot
        alice = tg.user(first_name="Alice")
        await alice.send("/start")
        updates = await bot.get_updates(offset=0, timeout=1)
        assert updates[0].message is not None and updates[0].message.text == "/start"

        markup = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Accept", callback_data="acc")]]
        )
        sent = await bot.send_message(
            alice.id, "<b>New job</b>", parse_mode="HTML", reply_markup=markup
        )
        assert sent.text == "New job" and sent.reply_markup is not None
        assert sent.reply_markup.inline_keyboard[0][0].callback_data == "acc"
        pressed = await alice.press("Accept")
        updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
        query = updates[0].callback_query
        assert query is not None and query.data == "acc"
        assert query.id == pressed["callback_query"]["id"]
        assert await bot.answer_callback_query(query.id, text="Got it")
        edited = await bot.edit_message_text(
            "Accepted", chat_id=alice.id, message_id=sent.message_id
        )
        assert not isinstance(edited, bool) and edited.text == "Accepted"
        with pytest.raises(TelegramBadRequest, match="message is not modified"):
            await bot.edit_message_text("Accepted", chat_id=alice.id, message_id=sent.message_id)

        photo = await bot.send_photo(alice.id, BufferedInputFile(b"jpeg!", "p.jpg"), caption="Site")
        assert photo.photo is not None and photo.caption == "Site"
        file = await bot.get_file(photo.photo[-1].file_id)
        assert file.file_path is not None
        downloaded = await bot.download_file(file.file_path)
        assert downloaded is not None and downloaded.read() == b"jpeg!"
        assert (await tg.wait_for_edit(alice.id, "Accepted"))["edits"][0]["text"] == "New job"
    finally:
        await bot.session.close()


async def test_ptb_bot(tg: FakeTelegram) -> None:
    import telegram
    from telegram.error import BadRequest

    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    photo_update = await alice.send_photo(b"ptb-photo")
    bot = telegram.Bot(tg.token, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot")
    async with bot:
        me = await bot.get_me()
        assert me.id == tg.bot_id and me.username == tg.bot_user["username"]
        updates = await bot.get_updates(offset=0, timeout=1)
        assert [u.update_id for u in updates] == [u["update_id"] for u in tg.updates]
        assert updates[0].message is not None and updates[0].message.text == "/start"

        markup = telegram.InlineKeyboardMarkup(
            [[telegram.InlineKeyboardButton("Accept", callback_data="acc")]]
        )
        sent = await bot.send_message(
            alice.id, "Hello *there*", parse_mode="Markdown", reply_markup=markup
        )
        assert sent.text == "Hello there" and sent.reply_markup == markup
        assert (await tg.wait_for(alice.id, "Hello there"))["reply_markup"]["inline_keyboard"]

        file_id = photo_update["message"]["photo"][-1]["file_id"]
        file = await bot.get_file(file_id)
        assert bytes(await file.download_as_bytearray()) == b"ptb-photo"

        doc = await bot.send_document(alice.id, document=b"a,b\n1,2\n", filename="jobs.csv")
        assert doc.document is not None and doc.document.file_name == "jobs.csv"
        assert tg.file_bytes(doc.document.file_id) == b"a,b\n1,2\n"
        with pytest.raises(BadRequest, match=r"[Cc]hat not found"):
            await bot.send_message(424242, "nobody")


# ---------------------------------------------------------------- more methods and user actions


async def test_misc_methods(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    commands = [
        {"command": "start", "description": "Start"},
        {"command": "jobs", "description": "My jobs"},
    ]
    assert await ok(http, tg, "setMyCommands", commands=commands)
    scope = {"type": "chat", "chat_id": alice.id}
    assert await ok(
        http, tg, "setMyCommands", commands=commands[:1], scope=scope, language_code="de"
    )
    assert await ok(http, tg, "getMyCommands") == commands
    assert await ok(http, tg, "getMyCommands", scope=scope, language_code="de") == commands[:1]
    assert await ok(http, tg, "deleteMyCommands")
    assert await ok(http, tg, "getMyCommands") == []
    bad = [{"command": "Bad Command", "description": "x"}]
    assert (await call(http, tg, "setMyCommands", commands=bad))[1]["description"] == (
        "Bad Request: BOT_COMMAND_INVALID"
    )
    assert await ok(http, tg, "setChatMenuButton", menu_button={"type": "commands"})
    assert await ok(http, tg, "getChatMenuButton") == {"type": "commands"}

    loc = await ok(
        http, tg, "sendLocation", chat_id=alice.id, latitude=52.5, longitude=13.4, live_period=60
    )
    assert loc["location"] == {"latitude": 52.5, "longitude": 13.4, "live_period": 60}
    moved = await ok(
        http,
        tg,
        "editMessageLiveLocation",
        chat_id=alice.id,
        message_id=loc["message_id"],
        latitude=52.6,
        longitude=13.5,
    )
    assert moved["location"]["latitude"] == 52.6
    venue = await ok(
        http,
        tg,
        "sendVenue",
        chat_id=alice.id,
        latitude=1.0,
        longitude=2.0,
        title="Depot",
        address="Main St 1",
    )
    assert venue["venue"]["title"] == "Depot" and venue["location"]["latitude"] == 1.0
    contact = await ok(
        http, tg, "sendContact", chat_id=alice.id, phone_number="+100", first_name="Desk"
    )
    assert contact["contact"] == {"phone_number": "+100", "first_name": "Desk"}
    assert await ok(http, tg, "sendChatAction", chat_id=alice.id, action="typing")
    assert tg.chat_actions == [(alice.id, "typing")]

    form = aiohttp.FormData()
    form.add_field("chat_id", str(alice.id))
    media = [
        {"type": "photo", "media": "attach://a", "caption": "before"},
        {"type": "photo", "media": "attach://b"},
    ]
    form.add_field("media", json.dumps(media))
    form.add_field("a", b"A", filename="a.jpg")
    form.add_field("b", b"B", filename="b.jpg")
    async with http.post(f"{tg.api_url}/sendMediaGroup", data=form) as resp:
        album = (await resp.json())["result"]
    assert len(album) == 2 and album[0]["media_group_id"] == album[1]["media_group_id"]
    assert album[0]["caption"] == "before"
    ref = {"chat_id": alice.id, "message_id": album[0]["message_id"]}
    assert (await ok(http, tg, "editMessageCaption", **ref, caption="after"))["caption"] == "after"
    status, body = await call(
        http,
        tg,
        "editMessageCaption",
        chat_id=alice.id,
        message_id=contact["message_id"],
        caption="x",
    )
    assert status == 400 and "no caption" in body["description"]
    assert (await ok(http, tg, "getChat", chat_id=alice.id))["first_name"] == "Alice"
    assert await ok(http, tg, "logOut") is True and await ok(http, tg, "close") is True
    assert tg.internal_errors == []
    assert "(album of 2) before" in tg.transcript_text(alice.id)


async def test_user_actions(tg: FakeTelegram, http: aiohttp.ClientSession) -> None:
    alice = tg.user(first_name="Alice", last_name="Smith", username="alice")
    text = await alice.send("hello")
    assert text["message"]["from"] == {
        "id": alice.id,
        "is_bot": False,
        "first_name": "Alice",
        "last_name": "Smith",
        "username": "alice",
        "language_code": "en",
    }
    edited = await alice.edit_text(text["message"]["message_id"], "hello!")
    assert edited["edited_message"]["text"] == "hello!" and "edit_date" in edited["edited_message"]
    contact = (await alice.share_contact("+4915100000", first_name="Al"))["message"]["contact"]
    assert contact == {
        "phone_number": "+4915100000",
        "first_name": "Al",
        "last_name": "Smith",
        "user_id": alice.id,
    }
    doc = (await alice.send_document(b"x" * 10, "site.xlsx", "application/vnd.ms-excel"))[
        "message"
    ]["document"]
    assert doc["file_name"] == "site.xlsx" and doc["file_size"] == 10
    assert (await alice.send_sticker())["message"]["sticker"]["emoji"] == "👍"

    blocked = await alice.block()
    assert blocked["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    assert (await call(http, tg, "sendMessage", chat_id=alice.id, text="x"))[0] == 403
    await alice.unblock()
    assert (await call(http, tg, "sendMessage", chat_id=alice.id, text="x"))[0] == 200
    kinds = [e.kind for e in tg.transcript if e.direction == "user"]
    assert kinds == ["text", "edit", "contact", "document", "sticker", "block", "unblock"]
    assert [u["update_id"] for u in tg.updates] == sorted(u["update_id"] for u in tg.updates)
