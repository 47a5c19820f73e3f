"""Both runtimes turn the same update into the same Event, and map Bot API errors alike."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from telegram import Update
from telegram import error as tg_error
from telegram.ext import Application, MessageHandler, filters

from bot.core.events import Event, Kind
from bot.fakeapi import FakeTelegram, FaultPlan
from bot.runtime.aiogram import AiogramRuntime
from bot.runtime.base import (
    NotModified,
    PermanentSendError,
    RetryAfter,
    Runtime,
    TransientSendError,
)
from bot.runtime.ptb import PTBRuntime, build_handlers, send_error

TOKEN = "123456789:AAEhBOweik9ai0Qa-test-token-xxxxxxxx"
NOWHERE = "http://127.0.0.1:9"  # feed() makes no HTTP call
RUNTIMES = {"aiogram": AiogramRuntime, "ptb": PTBRuntime}

ALICE = {"id": 100000001, "is_bot": False, "first_name": "Alice", "language_code": "en"}
WEI = {"id": 100000002, "is_bot": False, "first_name": "Wei", "language_code": "zh-hans"}
BOT = {"id": 123456789, "is_bot": True, "first_name": "FieldBot", "username": "fieldbot_test_bot"}
PRIVATE = {"id": ALICE["id"], "type": "private", "first_name": "Alice"}
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "Night shift"}
DATE = 1_767_000_000


def message(
    content: dict[str, Any],
    *,
    sender: dict[str, Any] = ALICE,
    chat: dict[str, Any] = PRIVATE,
    message_id: int = 42,
) -> dict[str, Any]:
    return {"message_id": message_id, "from": sender, "chat": chat, "date": DATE, **content}


def command(text: str) -> dict[str, Any]:
    head = text.split(maxsplit=1)[0]
    return {"text": text, "entities": [{"type": "bot_command", "offset": 0, "length": len(head)}]}


def photo_size(n: int, side: int, size: int) -> dict[str, Any]:
    return {
        "file_id": f"AgACAgIAAxkBAAI{n}",
        "file_unique_id": f"AQAD{n}",
        "width": side,
        "height": side,
        "file_size": size,
    }


BOT_MESSAGE = {
    "message_id": 41,
    "from": BOT,
    "chat": PRIVATE,
    "date": DATE,
    "text": "New job J-0001",
    "reply_markup": {"inline_keyboard": [[{"text": "Accept", "callback_data": "job:1:acc"}]]},
}
LIVE = {
    "latitude": 31.2304,
    "longitude": 121.4737,
    "live_period": 900,
    "heading": 90,
    "horizontal_accuracy": 12.5,
}

# name → (raw update, the kind both runtimes must produce)
UPDATES: dict[str, tuple[dict[str, Any], Kind]] = {
    "deep link": (
        {"update_id": 1, "message": message(command("/start inv_Q2x9-abc"))},
        Kind.COMMAND,
    ),
    "command@bot": (
        {"update_id": 2, "message": message(command("/jobs@fieldbot_test_bot"))},
        Kind.COMMAND,
    ),
    "command@bot with args in a group": (
        {
            "update_id": 3,
            "message": message(command("/Report@fieldbot_test_bot  J-7 late "), chat=GROUP),
        },
        Kind.COMMAND,
    ),
    "plain text": (
        {"update_id": 4, "message": message({"text": "on my way, 20 min 🚗"})},
        Kind.TEXT,
    ),
    "lone slash": ({"update_id": 5, "message": message({"text": "/"})}, Kind.TEXT),
    "callback query": (
        {
            "update_id": 6,
            "callback_query": {
                "id": "4000000000000123",
                "from": ALICE,
                "message": BOT_MESSAGE,
                "chat_instance": "-7312",
                "data": "job:1:acc",
            },
        },
        Kind.BUTTON,
    ),
    "callback on an inaccessible message": (
        {
            "update_id": 7,
            "callback_query": {
                "id": "4000000000000124",
                "from": WEI,
                "message": {
                    "message_id": 9,
                    "chat": {"id": WEI["id"], "type": "private"},
                    "date": 0,
                },
                "chat_instance": "-7313",
                "data": "job:2:dec",
            },
        },
        Kind.BUTTON,
    ),
    "callback from an inline message": (
        {
            "update_id": 21,
            "callback_query": {
                "id": "4000000000000125",
                "from": ALICE,
                "inline_message_id": "AAAAAJx0AAB",
                "chat_instance": "-7314",
                "data": "job:3:acc",
            },
        },
        Kind.BUTTON,
    ),
    "contact": (
        {
            "update_id": 8,
            "message": message(
                {
                    "contact": {
                        "phone_number": "+8613800138000",
                        "first_name": "Alice",
                        "user_id": ALICE["id"],
                    }
                }
            ),
        },
        Kind.CONTACT,
    ),
    "someone else's contact": (
        {
            "update_id": 9,
            "message": message({"contact": {"phone_number": "13900139000", "first_name": "Zhao"}}),
        },
        Kind.CONTACT,
    ),
    "location": (
        {
            "update_id": 10,
            "message": message({"location": {"latitude": 52.520008, "longitude": 13.404954}}),
        },
        Kind.LOCATION,
    ),
    "live location": ({"update_id": 11, "message": message({"location": LIVE})}, Kind.LOCATION),
    "edited live location": (
        {
            "update_id": 12,
            "edited_message": message(
                {"location": {**LIVE, "latitude": 31.2310}, "edit_date": DATE + 60}
            ),
        },
        Kind.LOCATION,
    ),
    "photo with caption": (
        {
            "update_id": 13,
            "message": message(
                {
                    "photo": [
                        photo_size(1, 90, 1201),
                        photo_size(2, 320, 15023),
                        photo_size(3, 1280, 98811),
                    ],
                    "caption": "after repair",
                }
            ),
        },
        Kind.PHOTO,
    ),
    "voice": (
        {
            "update_id": 14,
            "message": message(
                {
                    "voice": {
                        "file_id": "AwACAgIAAxkBAAIV",
                        "file_unique_id": "AgADV",
                        "duration": 7,
                        "mime_type": "audio/ogg",
                        "file_size": 12345,
                    }
                }
            ),
        },
        Kind.VOICE,
    ),
    "document": (
        {
            "update_id": 15,
            "message": message(
                {
                    "document": {
                        "file_id": "BQACAgIAAxkBAAID",
                        "file_unique_id": "AgADD",
                        "file_name": "report.pdf",
                        "mime_type": "application/pdf",
                        "file_size": 204800,
                    },
                    "caption": "signed",
                }
            ),
        },
        Kind.DOCUMENT,
    ),
    "document without size or type": (
        {
            "update_id": 16,
            "message": message(
                {"document": {"file_id": "BQACAgIAAxkBAAIE", "file_unique_id": "AgADE"}}
            ),
        },
        Kind.DOCUMENT,
    ),
    "sticker": (
        {
            "update_id": 17,
            "message": message(
                {
                    "sticker": {
                        "file_id": "CAACAgIAAxkBAAIS",
                        "file_unique_id": "AgADS",
                        "type": "regular",
                        "width": 512,
                        "height": 512,
                        "is_animated": False,
                        "is_video": False,
                        "emoji": "👍",
                        "file_size": 9000,
                    }
                }
            ),
        },
        Kind.OTHER,
    ),
    "group message": (
        {
            "update_id": 18,
            "message": message({"text": "who takes J-0009?"}, sender=WEI, chat=GROUP),
        },
        Kind.TEXT,
    ),
    "no language code": (
        {
            "update_id": 19,
            "message": message(
                {"text": "hello"},
                sender={"id": 5, "is_bot": False, "first_name": "Nolang"},
                chat={"id": 5, "type": "private", "first_name": "Nolang"},
            ),
        },
        Kind.TEXT,
    ),
    "unknown future field": (
        {
            "update_id": 20,
            "message": message({"text": "hi", "some_field_from_bot_api_99": {"x": 1}}),
        },
        Kind.TEXT,
    ),
}

# updates neither runtime routes to fieldbot
IGNORED = {
    "edited text": {
        "update_id": 30,
        "edited_message": message({"text": "fixed typo", "edit_date": DATE + 5}),
    },
    "channel post": {
        "update_id": 31,
        "channel_post": {
            "message_id": 1,
            "chat": {"id": -100777, "type": "channel", "title": "News"},
            "date": DATE,
            "text": "hello",
        },
    },
    "bot blocked": {
        "update_id": 32,
        "my_chat_member": {
            "chat": PRIVATE,
            "from": ALICE,
            "date": DATE,
            "old_chat_member": {"status": "member", "user": BOT},
            "new_chat_member": {"status": "kicked", "user": BOT, "until_date": 0},
        },
    },
}


async def events_of(runtime_name: str, payloads: list[dict[str, Any]]) -> list[Event]:
    seen: list[Event] = []

    async def handle(event: Event) -> None:
        seen.append(event)

    runtime = RUNTIMES[runtime_name](token=TOKEN, api_url=NOWHERE, handle=handle)
    try:
        for payload in payloads:
            await runtime.feed(copy.deepcopy(payload))
    finally:
        await runtime.stop()
    return seen


@pytest.mark.parametrize("name", list(UPDATES))
async def test_both_runtimes_make_the_same_event(name: str) -> None:
    payload, kind = UPDATES[name]
    on_aiogram = await events_of("aiogram", [payload])
    on_ptb = await events_of("ptb", [payload])
    assert len(on_aiogram) == 1 and on_aiogram[0].kind == kind, on_aiogram
    assert on_ptb == on_aiogram


async def test_the_events_carry_what_the_update_said() -> None:
    """Spot checks, so that both runtimes cannot agree on a wrong answer."""
    (
        deep,
        at_bot,
        group_cmd,
        query,
        stale,
        contact,
        live,
        edited,
        photo,
        voice,
        group,
    ) = await events_of(
        "ptb",
        [
            UPDATES[n][0]
            for n in (
                "deep link",
                "command@bot",
                "command@bot with args in a group",
                "callback query",
                "callback on an inaccessible message",
                "contact",
                "live location",
                "edited live location",
                "photo with caption",
                "voice",
                "group message",
            )
        ],
    )
    assert (deep.command, deep.args, deep.telegram_id, deep.language, deep.message_id) == (
        "start",
        "inv_Q2x9-abc",
        ALICE["id"],
        "en",
        42,
    )
    assert (at_bot.command, at_bot.args) == ("jobs", "")
    assert (group_cmd.command, group_cmd.args, group_cmd.private) == ("report", "J-7 late", False)
    assert (query.data, query.callback_id, query.message_id, query.chat_id) == (
        "job:1:acc",
        "4000000000000123",
        41,
        ALICE["id"],
    )
    assert (stale.telegram_id, stale.language, stale.message_id) == (WEI["id"], "zh-hans", 9)
    assert (contact.contact_phone, contact.contact_user_id) == ("+8613800138000", ALICE["id"])
    assert (live.live, live.edited, live.latitude) == (True, False, 31.2304)
    assert (edited.live, edited.edited, edited.latitude) == (True, True, 31.2310)
    assert (photo.file_ids, photo.file_size, photo.text) == (
        ("AgACAgIAAxkBAAI3",),
        98811,
        "after repair",
    )
    assert (voice.duration, voice.file_size, voice.file_ids) == (7, 12345, ("AwACAgIAAxkBAAIV",))
    assert (group.chat_id, group.telegram_id, group.first_name, group.private) == (
        GROUP["id"],
        WEI["id"],
        "Wei",
        False,
    )


@pytest.mark.parametrize("runtime_name", list(RUNTIMES))
async def test_updates_fieldbot_does_not_take_reach_no_handler(runtime_name: str) -> None:
    assert await events_of(runtime_name, list(IGNORED.values())) == []


@pytest.mark.parametrize("runtime_name", list(RUNTIMES))
@pytest.mark.parametrize("name", ["plain text", "callback query", "edited live location"])
async def test_a_failing_handler_fails_feed(runtime_name: str, name: str) -> None:
    """The inbox processor retries or records an update only if it sees the exception."""

    class Boom(Exception):
        pass

    async def handle(event: Event) -> None:
        raise Boom(event.kind)

    runtime = RUNTIMES[runtime_name](token=TOKEN, api_url=NOWHERE, handle=handle)
    try:
        with pytest.raises(Boom):
            await runtime.feed(copy.deepcopy(UPDATES[name][0]))
    finally:
        await runtime.stop()


# ---------------------------------------------------------------- calls against the fake server


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_username="fieldbot_test_bot") as fake:
        yield fake


@pytest.fixture(params=list(RUNTIMES))
async def runtime(request: pytest.FixtureRequest, tg: FakeTelegram) -> AsyncIterator[Runtime]:
    async def handle(event: Event) -> None:
        raise AssertionError("no update is fed here")

    rt: Runtime = RUNTIMES[request.param](token=tg.token, api_url=tg.url, handle=handle)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_get_me_and_updates_as_telegram_sent_them(tg: FakeTelegram, runtime: Runtime) -> None:
    assert await runtime.get_me() == {"id": tg.bot_id, "username": "fieldbot_test_bot"}
    alice = tg.user(first_name="Alice")
    await alice.send("/start abc")
    await alice.share_location(31.2, 121.4, live_period=600)
    await alice.send_photo(caption="meter")
    updates = await runtime.get_updates(None, 1)
    assert updates == tg.updates
    assert await runtime.get_updates(updates[-1]["update_id"] + 1, 0) == []


async def test_sent_messages_edits_and_not_modified(tg: FakeTelegram, runtime: Runtime) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    sent = await runtime.call(
        "sendMessage",
        {
            "chat_id": alice.id,
            "text": "<b>New job</b>",
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "Accept", "callback_data": "j:1:a"}]]},
        },
    )
    assert set(sent) == {"message_id"} and isinstance(sent["message_id"], int)
    assert tg.buttons(await tg.wait_for(alice.id, "New job")) == [["Accept"]]
    edit = {"chat_id": alice.id, "message_id": sent["message_id"], "text": "Accepted"}
    assert await runtime.call("editMessageText", edit) == {"message_id": sent["message_id"]}
    with pytest.raises(NotModified):
        await runtime.call("editMessageText", edit)
    assert await runtime.call("sendChatAction", {"chat_id": alice.id, "action": "typing"}) is True


async def test_retry_after(tg: FakeTelegram, runtime: Runtime) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    tg.faults = FaultPlan(rate=1.0, kinds=("429",), retry_after=3, methods={"sendMessage"})
    with pytest.raises(RetryAfter) as caught:
        await runtime.call("sendMessage", {"chat_id": alice.id, "text": "hi"})
    assert caught.value.seconds == 3


async def test_blocked_user_and_bad_requests_are_permanent(
    tg: FakeTelegram, runtime: Runtime
) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    await alice.block()
    with pytest.raises(PermanentSendError) as blocked:
        await runtime.call("sendMessage", {"chat_id": alice.id, "text": "still there?"})
    assert blocked.value.blocked is True
    with pytest.raises(PermanentSendError) as missing:
        await runtime.call("sendMessage", {"chat_id": 424242, "text": "nobody"})
    assert missing.value.blocked is False and "chat not found" in str(missing.value).lower()
    with pytest.raises(PermanentSendError):
        await runtime.call("noSuchMethod", {"chat_id": 1})


@pytest.mark.parametrize("kind", ["500", "502", "drop"])
async def test_server_and_network_trouble_is_transient(
    tg: FakeTelegram, runtime: Runtime, kind: Any
) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    tg.faults = FaultPlan(rate=1.0, kinds=(kind,), methods={"sendMessage"})
    with pytest.raises(TransientSendError):
        await runtime.call("sendMessage", {"chat_id": alice.id, "text": "hi"})
    tg.faults = None
    assert "message_id" in await runtime.call("sendMessage", {"chat_id": alice.id, "text": "hi"})


async def test_files_kept_in_the_outbox_are_uploaded(tg: FakeTelegram, runtime: Runtime) -> None:
    alice = tg.user(first_name="Alice")
    await alice.send("/start")
    pdf, jpeg = b"%PDF-1.4 signed report", b"\xff\xd8\xff\xe0 site photo \xff\xd9"
    sent = await runtime.call(
        "sendDocument",
        {
            "chat_id": alice.id,
            "document_b64": base64.b64encode(pdf).decode(),
            "document_name": "FB000001-report.pdf",
            "caption": "Your service report",
        },
    )
    assert "message_id" in sent
    document = await tg.wait_for(alice.id, lambda m: "document" in m)
    assert document["document"]["file_name"] == "FB000001-report.pdf"
    assert document["caption"] == "Your service report"
    assert tg.file_bytes(document["document"]["file_id"]) == pdf
    await runtime.call(
        "sendPhoto",
        {
            "chat_id": alice.id,
            "photo_b64": base64.b64encode(jpeg).decode(),
            "photo_name": "site.jpg",
        },
    )
    photo = await tg.wait_for(alice.id, lambda m: "photo" in m)
    assert tg.file_bytes(photo["photo"][-1]["file_id"]) == jpeg


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (tg_error.RetryAfter(7), RetryAfter),
        (tg_error.RetryAfter(timedelta(seconds=7)), RetryAfter),
        (tg_error.TimedOut(), TransientSendError),
        (tg_error.NetworkError("Bad Gateway"), TransientSendError),
        (tg_error.Forbidden("Forbidden: bot was blocked by the user"), PermanentSendError),
        (tg_error.BadRequest("Bad Request: message is not modified: same"), NotModified),
        (tg_error.BadRequest("Bad Request: chat not found"), PermanentSendError),
        (tg_error.ChatMigrated(-1001), PermanentSendError),
        (tg_error.InvalidToken(), PermanentSendError),
    ],
)
def test_ptb_errors_map_to_ours(error: tg_error.TelegramError, expected: type[Exception]) -> None:
    mapped = send_error(error)
    assert type(mapped) is expected
    if isinstance(mapped, RetryAfter):
        assert mapped.seconds == 7
    if isinstance(mapped, PermanentSendError):
        assert mapped.blocked == isinstance(error, tg_error.Forbidden)


async def test_the_handlers_fit_an_ordinary_ptb_application(tg: FakeTelegram) -> None:
    """``build_handlers`` for a team that runs its own PTB Application (and error handlers)."""
    seen: list[Event] = []
    errors: list[object] = []

    async def handle(event: Event) -> None:
        seen.append(event)
        if event.kind == Kind.BUTTON:
            raise RuntimeError("boom")

    async def on_error(update: object, context: Any) -> None:
        errors.append(context.error)

    app = (
        Application.builder()
        .token(tg.token)
        .base_url(f"{tg.url}/bot")
        .base_file_url(f"{tg.url}/file/bot")
        .updater(None)
        .job_queue(None)
        .build()
    )
    app.add_handler(MessageHandler(filters.Regex("^team$"), lambda u, c: asyncio.sleep(0)))
    app.add_handlers(build_handlers(handle), group=1)
    app.add_error_handler(on_error)
    async with app:
        for name in ("plain text", "edited live location", "callback query"):
            await app.process_update(Update.de_json(copy.deepcopy(UPDATES[name][0]), app.bot))
    assert [e.kind for e in seen] == [Kind.TEXT, Kind.LOCATION, Kind.BUTTON]
    assert [str(e) for e in errors] == ["boom"]
    assert seen == await events_of(
        "aiogram", [UPDATES[n][0] for n in ("plain text", "edited live location", "callback query")]
    )


async def test_ptb_start_without_a_bot_api_fails_as_a_send_error_and_stops_cleanly() -> None:
    async def handle(event: Event) -> None:
        raise AssertionError("no update")

    runtime = PTBRuntime(token=TOKEN, api_url=NOWHERE, handle=handle)
    with pytest.raises(TransientSendError):
        await runtime.start()
    await runtime.stop()
    await runtime.stop()  # twice is fine
