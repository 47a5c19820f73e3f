"""DOMAIN.md §2 / issue 5: complaint intake, first-responder ownership, replies through the bot,
SLA clocks and escalation, resolution and the call-back, status views, the pattern flag."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.bootstrap import build_services
from bot.core.events import Event, Kind
from bot.db.models import Conversation, Dispatch, Organisation, Timer, User
from bot.db.models.complaints import Complaint, ComplaintEvent
from bot.flows import complaints as flow
from bot.handlers.router import handle
from bot.scheduler.sweep import sweep
from bot.services.context import Services
from bot.services.staff import organisation
from tests.conftest import outbox_rows, reset_database, texts_to
from tests.helpers import new_dispatch, onboard, press, say, send_kind

CUSTOMER = 31
OTHER_CUSTOMER = 32
BOSS = 21
BOSS2 = 22
MANAGER = 41
ENG = 11


# ---- helpers -------------------------------------------------------------------------------------


async def user_of(services: Services, telegram_id: int) -> User:
    async with services.uow() as uow:
        user = await uow.session.scalar(select(User).where(User.telegram_id == telegram_id))
        assert user is not None
        return user


async def complaints(services: Services) -> list[Complaint]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(Complaint).order_by(Complaint.id)))


async def complaint(services: Services, complaint_id: int) -> Complaint:
    async with services.uow() as uow:
        found = await uow.session.get(Complaint, complaint_id)
        assert found is not None
        return found


async def history(services: Services, complaint_id: int) -> list[ComplaintEvent]:
    async with services.uow() as uow:
        return list(
            await uow.session.scalars(
                select(ComplaintEvent)
                .where(ComplaintEvent.complaint_id == complaint_id)
                .order_by(ComplaintEvent.id)
            )
        )


async def kinds(services: Services, complaint_id: int) -> list[str]:
    return [e.kind for e in await history(services, complaint_id)]


async def pending(services: Services, complaint_id: int) -> dict[str, Timer]:
    async with services.uow() as uow:
        rows = await uow.session.scalars(
            select(Timer).where(
                Timer.subject == f"complaint:{complaint_id}", Timer.status == "pending"
            )
        )
        return {t.kind: t for t in rows}


async def last_text(services: Services, chat_id: int) -> str:
    texts = await texts_to(services, chat_id)
    return texts[-1] if texts else ""


async def answers(services: Services, chat_id: int) -> list[str]:
    return [
        r.payload.get("text", "")
        for r in await outbox_rows(services, chat_id)
        if r.method == "answerCallbackQuery"
    ]


def buttons_of(row: Any) -> list[str]:
    markup = row.payload.get("reply_markup") or {}
    return [b["callback_data"] for line in markup.get("inline_keyboard", []) for b in line]


async def last_buttons(services: Services, chat_id: int) -> list[str]:
    rows = [r for r in await outbox_rows(services, chat_id) if r.method == "sendMessage"]
    return buttons_of(rows[-1])


async def boss(services: Services, telegram_id: int = BOSS, name: str = "Zhou Min") -> User:
    new = await onboard(services, telegram_id, role="supervisor", name=name, skills=())
    return new.user


async def stranger_intake(
    services: Services, telegram_id: int = CUSTOMER, *, name: str = "Li Na", category="quality"
) -> User:
    """A stranger: /complaint, name, phone (contact button), category; ready to describe."""
    await say(services, telegram_id, "/complaint")
    await say(services, telegram_id, name)
    await send_kind(
        services,
        telegram_id,
        Kind.CONTACT,
        contact_phone=f"+86 139 0000 {telegram_id:04d}",
        contact_user_id=telegram_id,
    )
    user = await user_of(services, telegram_id)
    await press(services, telegram_id, f"cmi:{user.id}:cat:{category}")
    return user


async def file_complaint(
    services: Services, telegram_id: int = CUSTOMER, text: str = "The engineer was rude.", **kw
) -> Complaint:
    await stranger_intake(services, telegram_id, **kw)
    before = {c.id for c in await complaints(services)}
    await say(services, telegram_id, text)
    user = await user_of(services, telegram_id)
    await press(services, telegram_id, f"cmi:{user.id}:done")
    new = [c for c in await complaints(services) if c.id not in before]
    assert len(new) == 1
    return new[0]


async def taken(services: Services, by: int = BOSS, **kw) -> Complaint:
    filed = await file_complaint(services, **kw)
    await press(services, by, f"cmp:{filed.id}:take")
    return await complaint(services, filed.id)


async def linked_job(services: Services, customer: User, engineer: User | None = None) -> Dispatch:
    dispatch = await new_dispatch(services)
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, dispatch.id)
        assert row is not None
        row.customer_user_id = customer.id
        if engineer is not None:
            row.engineer_id = engineer.id
        await uow.commit()
        return row


async def resolve(
    services: Services, c: Complaint, *, days: int = 0, by: int = BOSS, solution: str = "New seal"
) -> None:
    await press(services, by, f"cmp:{c.id}:res")
    await say(services, by, solution)
    await press(services, by, f"cmp:{c.id}:when:{days}")


@pytest.fixture
async def shrunk(make_settings, clock, db_url) -> AsyncIterator[Services]:
    """Deadlines shrunk through settings (as an operator would)."""
    await reset_database(db_url)
    svc = build_services(
        make_settings(
            complaint_response_sla="3m",
            complaint_resolution_sla="30m",
            complaint_urgent_resolution_sla="6m",
            escalation_step="5m",
        ),
        clock=clock,
    )
    yield svc
    await svc.sessionmaker.kw["bind"].dispose()


# ---- intake --------------------------------------------------------------------------------------


async def test_a_stranger_files_a_complaint_and_gets_the_number_at_once(services, clock) -> None:
    await boss(services)
    await say(services, CUSTOMER, "/complaint")
    assert "tell us your name" in await last_text(services, CUSTOMER)
    await say(services, CUSTOMER, "  Li   Na ")
    ask_phone = (await outbox_rows(services, CUSTOMER))[-1]
    keyboard = ask_phone.payload["reply_markup"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    await send_kind(
        services, CUSTOMER, Kind.CONTACT, contact_phone="+8613900001111", contact_user_id=CUSTOMER
    )
    user = await user_of(services, CUSTOMER)
    assert (user.role, user.name, user.phone) == ("customer", "Li Na", "+8613900001111")
    category_buttons = await last_buttons(services, CUSTOMER)
    assert f"cmi:{user.id}:cat:service_attitude" in category_buttons
    assert len(category_buttons) == 7  # six categories and cancel
    await press(services, CUSTOMER, f"cmi:{user.id}:cat:service_attitude")
    assert "describe what happened" in await last_text(services, CUSTOMER)
    assert await complaints(services) == []
    await say(services, CUSTOMER, "The engineer shouted at my staff.")

    [c] = await complaints(services)
    assert c.number == f"TS{c.id:06d}" and c.status == "new"
    assert (c.category, c.source, c.customer_user_id) == ("service_attitude", "chat", user.id)
    assert (c.contact_name, c.contact_phone) == ("Li Na", "+8613900001111")
    assert c.response_due == clock.now() + timedelta(minutes=30)
    assert c.resolution_due == clock.now() + timedelta(hours=24)
    registered = await last_text(services, CUSTOMER)
    assert c.number in registered and "respond by 2026-11-30 09:30" in registered
    announcement = (await outbox_rows(services, BOSS))[-1]
    assert c.number in announcement.payload["text"]
    assert "+8613900001111" not in announcement.payload["text"]
    assert buttons_of(announcement) == [f"cmp:{c.id}:take"]
    assert set(await pending(services, c.id)) == {
        "cmp_response_warn",
        "cmp_response_breach",
        "cmp_resolution_warn",
        "cmp_resolution_breach",
    }
    assert await kinds(services, c.id) == ["opened"]


async def test_the_ticket_is_stored_at_the_first_message_and_more_are_added(services) -> None:
    await boss(services)
    user = await stranger_intake(services)
    await send_kind(services, CUSTOMER, Kind.PHOTO, file_ids=("ph-1",), file_size=1000)
    [c] = await complaints(services)  # a photo alone registers it
    assert c.description == "" and c.attachments[0]["file_id"] == "ph-1"
    await say(services, CUSTOMER, "Water on the floor.")
    await send_kind(services, CUSTOMER, Kind.VOICE, file_ids=("vo-1",), file_size=20_000)
    await send_kind(
        services, CUSTOMER, Kind.PHOTO, file_ids=("ph-2",), file_size=1000, text="Under the unit"
    )
    assert "4 messages so far" in await last_text(services, CUSTOMER)
    await press(services, CUSTOMER, f"cmi:{user.id}:done")
    c = await complaint(services, c.id)
    assert c.description == "Water on the floor.\n\nUnder the unit"
    assert [a["kind"] for a in c.attachments] == ["photo", "voice", "photo"]
    summary = await last_text(services, CUSTOMER)
    assert "is complete" in summary and "2 photos, 1 voice notes" in summary
    async with services.uow() as uow:
        assert await uow.session.get(Conversation, user.id) is None
    assert await kinds(services, c.id) == [
        "opened",
        "customer_message",
        "customer_message",
        "customer_message",
        "intake_done",
    ]


async def test_a_customer_can_name_one_of_their_own_jobs(services) -> None:
    await boss(services)
    engineer = (await onboard(services, ENG)).user
    await stranger_intake(services)  # creates the customer record; start again with a job
    me = await user_of(services, CUSTOMER)
    await say(services, CUSTOMER, "/cancel")
    mine = await linked_job(services, me, engineer)
    await stranger_intake(services, OTHER_CUSTOMER, name="Other")
    other = await user_of(services, OTHER_CUSTOMER)
    theirs = await linked_job(services, other)
    await say(services, OTHER_CUSTOMER, "/cancel")

    await say(services, CUSTOMER, "/complaint")
    await press(services, CUSTOMER, f"cmi:{me.id}:cat:late_no_show")
    job_buttons = await last_buttons(services, CUSTOMER)
    assert job_buttons == [f"cmi:{me.id}:job:{mine.id}", f"cmi:{me.id}:nojob"]
    await press(services, CUSTOMER, f"cmi:{me.id}:job:{theirs.id}")  # forged: not theirs
    assert "no longer valid" in (await answers(services, CUSTOMER))[-1]
    await press(services, CUSTOMER, f"cmi:{me.id}:job:{mine.id}")
    await say(services, CUSTOMER, "Nobody came.")
    [c] = await complaints(services)
    assert (c.dispatch_id, c.engineer_id) == (mine.id, engineer.id)
    assert c.contact_phone == "+8613900000031"
    assert c.address == "88 Century Avenue, Pudong"


async def test_another_customers_intake_buttons_do_nothing(services) -> None:
    me = await stranger_intake(services)
    await stranger_intake(services, OTHER_CUSTOMER, name="Other")
    await press(services, OTHER_CUSTOMER, f"cmi:{me.id}:cat:billing")
    await press(services, OTHER_CUSTOMER, f"cmi:{me.id}:done")
    assert "no longer valid" in (await answers(services, OTHER_CUSTOMER))[-1]
    assert await complaints(services) == []


async def test_a_typed_phone_works_and_a_bad_one_is_refused(services) -> None:
    await say(services, CUSTOMER, "/complaint")
    await say(services, CUSTOMER, "Li Na")
    await say(services, CUSTOMER, "call me maybe")
    assert "not a phone number" in await last_text(services, CUSTOMER)
    assert (await user_of(services, CUSTOMER)).phone is None
    await say(services, CUSTOMER, "139 0000 1111")
    assert (await user_of(services, CUSTOMER)).phone == "+8613900001111"
    assert "What is your complaint about" in await last_text(services, CUSTOMER)


async def test_staff_cannot_file_complaints_in_chat(services) -> None:
    await boss(services)
    await say(services, BOSS, "/complaint")
    assert "filed by customers" in await last_text(services, BOSS)
    await say(services, BOSS, "/mycomplaints")
    assert "not available" in await last_text(services, BOSS)


# ---- bad input during intake -------------------------------------------------------------------------


async def test_an_empty_description_registers_nothing(services) -> None:
    user = await stranger_intake(services)
    await say(services, CUSTOMER, "   ")
    assert "describe the problem first" in await last_text(services, CUSTOMER)
    await press(services, CUSTOMER, f"cmi:{user.id}:done")
    assert "describe the problem first" in (await answers(services, CUSTOMER))[-1]
    assert await complaints(services) == []


async def test_only_stickers_register_nothing(services) -> None:
    await stranger_intake(services)
    for _ in range(3):
        await send_kind(services, CUSTOMER, Kind.OTHER)
    assert "stickers" in await last_text(services, CUSTOMER)
    assert await complaints(services) == []


async def test_fifty_photos_keep_twenty_and_say_so_once(services) -> None:
    await boss(services)
    await stranger_intake(services)
    for n in range(50):
        await send_kind(services, CUSTOMER, Kind.PHOTO, file_ids=(f"ph-{n}",), file_size=900)
    [c] = await complaints(services)
    assert len(c.attachments) == flow.MAX_ATTACHMENTS
    assert [a["file_id"] for a in c.attachments] == [f"ph-{n}" for n in range(20)]
    texts = await texts_to(services, CUSTOMER)
    assert sum("at most 20 photos" in t for t in texts) == 1
    await say(services, CUSTOMER, "And the text still counts.")
    assert (await complaint(services, c.id)).description == "And the text still counts."


async def test_a_voice_note_over_the_limit_is_refused(services) -> None:
    await boss(services)
    await stranger_intake(services)
    await send_kind(
        services, CUSTOMER, Kind.VOICE, file_ids=("big",), file_size=flow.MAX_VOICE_BYTES + 1
    )
    assert "voice note is too large" in await last_text(services, CUSTOMER)
    assert await complaints(services) == []
    await say(services, CUSTOMER, "Typed instead.")
    await send_kind(
        services, CUSTOMER, Kind.VOICE, file_ids=("big",), file_size=flow.MAX_VOICE_BYTES + 1
    )
    [c] = await complaints(services)
    assert c.attachments == [] and await kinds(services, c.id) == ["opened"]


# ---- opened by other areas (rejected sign-off, low rating) ------------------------------------------


async def test_open_complaint_from_a_rejected_signoff(services) -> None:
    await boss(services)
    engineer = (await onboard(services, ENG)).user
    me = await stranger_intake(services)
    await say(services, CUSTOMER, "/cancel")
    job = await linked_job(services, me, engineer)
    async with services.uow() as uow:
        customer = await uow.session.get(User, me.id)
        dispatch = await uow.session.get(Dispatch, job.id)
        c = await flow.open_complaint(
            uow,
            customer=customer,
            dispatch=dispatch,
            category="quality",
            description="The unit still leaks",
            source="signoff_rejected",
        )
        await uow.commit()
    c = await complaint(services, c.id)
    assert (c.source, c.dispatch_id, c.engineer_id, c.status) == (
        "signoff_rejected",
        job.id,
        engineer.id,
        "new",
    )
    told = await last_text(services, CUSTOMER)
    assert c.number in told and "respond by" in told
    assert c.number in await last_text(services, BOSS)
    [opened] = await history(services, c.id)
    assert opened.kind == "opened" and opened.actor_id is None


async def test_open_complaint_for_someone_not_in_chat_uses_name_and_phone(services) -> None:
    await boss(services)
    async with services.uow() as uow:
        c = await flow.open_complaint(
            uow,
            customer=None,
            dispatch=None,
            category="billing",
            description="Invoice charged twice",
            source="low_rating",
            name="Mr Zhang",
            phone="138 0013 8000",
        )
        await uow.commit()
    c = await complaint(services, c.id)
    assert (c.contact_name, c.contact_phone, c.customer_user_id) == (
        "Mr Zhang",
        "+8613800138000",
        None,
    )
    with pytest.raises(ValueError):
        async with services.uow() as uow:
            await flow.open_complaint(
                uow,
                customer=None,
                dispatch=None,
                category="weather",
                description="",
                source="chat",
            )


async def test_alerts_go_to_the_supervisors_group_when_one_is_configured(services) -> None:
    await boss(services)
    await boss(services, BOSS2, "Second Boss")
    async with services.uow() as uow:
        org = await organisation(uow)
        org.supervisors_chat_id = -100500
        await uow.commit()
    c = await file_complaint(services)
    group = await outbox_rows(services, -100500)
    assert c.number in group[-1].payload["text"]
    assert buttons_of(group[-1]) == [f"cmp:{c.id}:take"]
    assert not any(c.number in t for t in await texts_to(services, BOSS))
    assert not any(c.number in t for t in await texts_to(services, BOSS2))


async def test_only_the_on_duty_supervisor_is_alerted(services) -> None:
    on = await boss(services)
    await boss(services, BOSS2, "Off Duty")
    await onboard(services, ENG)
    async with services.uow() as uow:
        row = await uow.session.get(User, on.id)
        assert row is not None
        row.on_duty = True
        await uow.commit()
    c = await file_complaint(services)
    assert any(c.number in t for t in await texts_to(services, BOSS))
    assert not any(c.number in t for t in await texts_to(services, BOSS2))
    assert not any(c.number in t for t in await texts_to(services, ENG))


# ---- first responder -----------------------------------------------------------------------------


async def test_the_first_to_take_owns_it_and_the_others_see_who(services) -> None:
    first = await boss(services)
    await boss(services, BOSS2, "Second Boss")
    c = await file_complaint(services)
    await press(services, BOSS, f"cmp:{c.id}:take")
    c = await complaint(services, c.id)
    assert (c.owner_id, c.status) == (first.id, "open")
    assert c.first_response_at is not None
    assert not {"cmp_response_warn", "cmp_response_breach"} & set(await pending(services, c.id))
    for chat in (BOSS, BOSS2):
        edits = [r for r in await outbox_rows(services, chat) if r.method == "editMessageText"]
        assert edits[-1].edit_of == f"cmpnew:{c.id}"
        assert "taken by Zhou Min" in edits[-1].payload["text"]
        assert "reply_markup" not in edits[-1].payload
    card = [r for r in await outbox_rows(services, BOSS) if r.method == "sendMessage"][-1]
    assert "You own this complaint" in card.payload["text"]
    assert f"cmp:{c.id}:reply" in buttons_of(card) and f"cmp:{c.id}:res" in buttons_of(card)
    assert "+86" not in card.payload["text"]  # the phone only through "Call customer"
    assert "Zhou Min is handling your complaint" in await last_text(services, CUSTOMER)

    await press(services, BOSS2, f"cmp:{c.id}:take")
    assert "already taken by Zhou Min" in (await answers(services, BOSS2))[-1]
    assert (await complaint(services, c.id)).owner_id == first.id
    assert (await kinds(services, c.id)).count("taken") == 1


async def test_two_staff_taking_at_once_one_wins(services) -> None:
    await boss(services)
    await boss(services, BOSS2, "Second Boss")
    c = await file_complaint(services)
    await asyncio.gather(
        press(services, BOSS, f"cmp:{c.id}:take"), press(services, BOSS2, f"cmp:{c.id}:take")
    )
    c = await complaint(services, c.id)
    taken_rows = [e for e in await history(services, c.id) if e.kind == "taken"]
    assert len(taken_rows) == 1 and c.owner_id == taken_rows[0].actor_id
    loser = BOSS2 if c.owner_id == (await user_of(services, BOSS)).id else BOSS
    assert "already taken" in (await answers(services, loser))[-1]


async def test_take_on_a_closed_ticket_changes_nothing(services) -> None:
    owner = await boss(services)
    await boss(services, BOSS2, "Second Boss")
    c = await taken(services)
    await resolve(services, c, days=0)
    me = await user_of(services, CUSTOMER)
    await press(services, CUSTOMER, f"cmp:{c.id}:ok")
    assert (await complaint(services, c.id)).status == "closed"
    before = await kinds(services, c.id)
    await press(services, BOSS2, f"cmp:{c.id}:take")
    assert "is closed" in (await answers(services, BOSS2))[-1]
    await press(services, BOSS2, f"cmp:{c.id}:tko")
    assert "is closed" in (await answers(services, BOSS2))[-1]
    after = await complaint(services, c.id)
    assert after.owner_id == owner.id and await kinds(services, c.id) == before
    assert me.id == after.customer_user_id


async def test_an_engineer_cannot_take_a_complaint_about_their_own_job(services) -> None:
    await boss(services)
    engineer = (await onboard(services, ENG)).user
    me = await stranger_intake(services)
    await say(services, CUSTOMER, "/cancel")
    job = await linked_job(services, me, engineer)
    async with services.uow() as uow:
        c = await flow.open_complaint(
            uow,
            customer=await uow.session.get(User, me.id),
            dispatch=await uow.session.get(Dispatch, job.id),
            category="service_attitude",
            description="Rude",
            source="low_rating",
        )
        await uow.commit()
    await press(services, ENG, f"cmp:{c.id}:take")
    assert "about your own job" in (await answers(services, ENG))[-1]
    assert (await complaint(services, c.id)).owner_id is None


async def test_customers_and_strangers_cannot_take(services) -> None:
    await boss(services)
    c = await file_complaint(services)
    await press(services, CUSTOMER, f"cmp:{c.id}:take")
    await press(services, 999, f"cmp:{c.id}:take")
    assert (await complaint(services, c.id)).owner_id is None
    assert (await answers(services, 999))[-1] == "Sorry, this is not available to you."


# ---- replies through the bot -------------------------------------------------------------------------


async def test_the_owner_and_the_customer_talk_through_the_bot(services) -> None:
    await boss(services)
    c = await taken(services)
    await press(services, BOSS, f"cmp:{c.id}:reply")
    await say(services, BOSS, "We are sorry. When can we call you?")
    relayed = (await outbox_rows(services, CUSTOMER))[-1]
    assert (
        "Zhou Min" in relayed.payload["text"] and "When can we call you?" in relayed.payload["text"]
    )
    assert buttons_of(relayed) == [f"cmp:{c.id}:add"]
    assert "Sent to the customer" in await last_text(services, BOSS)
    await say(services, CUSTOMER, "After 3 pm, please.")
    assert "After 3 pm, please." in await last_text(services, BOSS)
    await send_kind(services, CUSTOMER, Kind.PHOTO, file_ids=("ph-9",), file_size=10)
    photos = [r for r in await outbox_rows(services, BOSS) if r.method == "sendPhoto"]
    assert photos[-1].payload["photo"] == "ph-9"
    rows = await history(services, c.id)
    message = next(e for e in rows if e.kind == "owner_message")
    assert message.data["text"] == "We are sorry. When can we call you?"
    answers_ = [e for e in rows if e.kind == "customer_message"]
    assert answers_[-2].data["text"] == "After 3 pm, please."
    assert answers_[-1].data["file_id"] == "ph-9"


async def test_only_the_owner_may_message_the_customer(services) -> None:
    await boss(services)
    await boss(services, BOSS2, "Second Boss")
    await onboard(services, ENG)
    c = await taken(services)
    await press(services, BOSS2, f"cmp:{c.id}:reply")
    assert "Only the owner" in (await answers(services, BOSS2))[-1]
    await press(services, ENG, f"cmp:{c.id}:reply")
    assert "no such complaint" in (await answers(services, ENG))[-1]


async def test_added_information_reaches_the_owner_from_mycomplaints(services) -> None:
    await boss(services)
    c = await taken(services)
    await press(services, CUSTOMER, f"cmp:{c.id}:add")
    await send_kind(services, CUSTOMER, Kind.VOICE, file_ids=("vo-7",), file_size=100)
    voices = [r for r in await outbox_rows(services, BOSS) if r.method == "sendVoice"]
    assert voices[-1].payload["voice"] == "vo-7"
    assert "sent a voice note" in await last_text(services, BOSS)
    assert "Sent to Zhou Min" in await last_text(services, CUSTOMER)


# ---- transfer of work, reassignment, notes, phone --------------------------------------------------


async def test_transfer_of_work_keeps_the_owner(services) -> None:
    owner = await boss(services)
    worker = (await onboard(services, ENG, name="Chen Jie")).user
    c = await taken(services)
    await press(services, BOSS, f"cmp:{c.id}:xfer")
    assert f"cmp:{c.id}:xto:{worker.id}" in await last_buttons(services, BOSS)
    await press(services, BOSS, f"cmp:{c.id}:xto:{worker.id}")
    await say(services, BOSS, "Please check the seal on site tomorrow.")
    request = await last_text(services, ENG)
    assert "check the seal" in request and c.number in request
    assert "+86" not in request
    c = await complaint(services, c.id)
    assert (c.owner_id, c.worker_id) == (owner.id, worker.id)
    await press(services, ENG, f"cmp:{c.id}:note")
    await say(services, ENG, "Seal replaced, no leak now.")
    assert "Seal replaced" in await last_text(services, BOSS)
    await press(services, ENG, f"cmp:{c.id}:reply")  # the worker never talks for the owner
    assert "Only the owner" in (await answers(services, ENG))[-1]
    await press(services, ENG, f"cmp:{c.id}:wdone")
    assert "finished their part" in await last_text(services, BOSS)
    c = await complaint(services, c.id)
    assert (c.owner_id, c.worker_id) == (owner.id, None)
    assert [
        k for k in await kinds(services, c.id) if k in ("transferred", "note", "work_done")
    ] == [
        "transferred",
        "note",
        "work_done",
    ]


async def test_a_supervisor_reassigns_ownership_explicitly(services) -> None:
    await boss(services)
    second = await boss(services, BOSS2, "Second Boss")
    c = await taken(services)
    await press(services, BOSS2, f"cmp:{c.id}:own")
    await press(services, BOSS2, f"cmp:{c.id}:ownto:{second.id}")
    c = await complaint(services, c.id)
    assert c.owner_id == second.id
    assert "now belongs to Second Boss" in await last_text(services, BOSS)
    assert "Second Boss now handles your complaint" in await last_text(services, CUSTOMER)
    reassigned = [e for e in await history(services, c.id) if e.kind == "reassigned"]
    assert reassigned[0].actor_id == second.id


async def test_engineers_cannot_reassign_ownership(services) -> None:
    await boss(services)
    eng = (await onboard(services, ENG)).user
    c = await taken(services)
    await press(services, ENG, f"cmp:{c.id}:ownto:{eng.id}")
    assert (await answers(services, ENG))[-1] == "Sorry, this is not available to you."
    assert (await complaint(services, c.id)).owner_id != eng.id


async def test_call_customer_shows_the_phone_to_that_staff_member_only(services) -> None:
    await boss(services)
    await boss(services, BOSS2, "Second Boss")
    async with services.uow() as uow:
        (await organisation(uow)).supervisors_chat_id = -100500
        await uow.commit()
    c = await file_complaint(services)
    press_in_group = Event(
        update_id=987654,
        kind=Kind.BUTTON,
        telegram_id=BOSS2,
        chat_id=-100500,
        private=False,
        data=f"cmp:{c.id}:call",
        callback_id="cq-group",
    )
    await handle(services, press_in_group)
    toast = [r for r in await outbox_rows(services, -100500) if r.method == "answerCallbackQuery"]
    assert "private message" in toast[-1].payload["text"]
    assert "+8613900000031" in await last_text(services, BOSS2)
    assert not any("+86139" in t for t in await texts_to(services, -100500))
    assert not any("+86139" in t for t in await texts_to(services, BOSS))
    shown = [e for e in await history(services, c.id) if e.kind == "phone_shown"]
    assert shown[0].actor_id == (await user_of(services, BOSS2)).id


# ---- clocks and escalation -----------------------------------------------------------------------


async def test_escalation_levels_fire_in_order_for_an_untaken_complaint(shrunk, clock) -> None:
    services = shrunk
    await boss(services)
    await onboard(services, MANAGER, role="manager", name="Manager Liu", skills=())
    c = await file_complaint(services)
    assert c.response_due == clock.now() + timedelta(minutes=3)
    clock.advance(timedelta(minutes=2))  # two thirds of the 3-minute response clock
    await sweep(services)
    warning = await last_text(services, BOSS)
    assert "Nobody has taken this complaint yet" in warning
    assert not any(c.number in t for t in await texts_to(services, MANAGER))
    clock.advance(timedelta(minutes=1))
    await sweep(services)
    alert = (await outbox_rows(services, BOSS))[-1]
    assert "Nobody has responded" in alert.payload["text"]
    assert buttons_of(alert) == [
        f"cmp:{c.id}:tko",
        f"cmp:{c.id}:own",
        f"cmp:{c.id}:note",
        f"cmp:{c.id}:call",
    ]
    assert not any(c.number in t for t in await texts_to(services, MANAGER))
    clock.advance(timedelta(minutes=4))
    await sweep(services)
    assert not any(c.number in t for t in await texts_to(services, MANAGER))
    clock.advance(timedelta(minutes=1))  # ESCALATION_STEP after the breach
    await sweep(services)
    to_manager = (await outbox_rows(services, MANAGER))[-1]
    assert "Second-level escalation" in to_manager.payload["text"]
    assert f"cmp:{c.id}:tko" in buttons_of(to_manager)
    escalations = [e for e in await history(services, c.id) if e.kind in ("warned", "escalated")]
    assert [
        (e.kind, e.data.get("level"), e.data.get("reason", e.data.get("clock")))
        for e in escalations
    ] == [
        ("warned", None, "response"),
        ("escalated", 1, "response"),
        ("escalated", 2, "response"),
    ]
    assert (await complaint(services, c.id)).escalation_level == 2


async def test_the_resolution_clock_warns_the_owner_then_escalates(shrunk, clock) -> None:
    services = shrunk
    await boss(services)
    await boss(services, BOSS2, "Second Boss")
    await onboard(services, MANAGER, role="manager", name="Manager Liu", skills=())
    c = await taken(services, by=BOSS2)
    clock.advance(timedelta(minutes=20))  # two thirds of 30 minutes
    await sweep(services)
    assert "must be resolved by" in await last_text(services, BOSS2)
    assert not any("must be resolved" in t for t in await texts_to(services, BOSS))
    clock.advance(timedelta(minutes=10))
    await sweep(services)
    assert "not resolved in time" in await last_text(services, BOSS)
    assert not any(c.number in t for t in await texts_to(services, MANAGER))
    clock.advance(timedelta(minutes=5))
    await sweep(services)
    assert "not resolved in time" in await last_text(services, MANAGER)
    # The supervisor takes over from the escalation message.
    await press(services, BOSS, f"cmp:{c.id}:tko")
    c = await complaint(services, c.id)
    assert c.owner_id == (await user_of(services, BOSS)).id
    assert "now belongs to Zhou Min" in await last_text(services, BOSS2)


async def test_a_complaint_taken_in_time_is_never_escalated(shrunk, clock) -> None:
    services = shrunk
    await boss(services)
    c = await taken(services)
    clock.advance(timedelta(minutes=29))
    await sweep(services)
    await resolve(services, c, days=0)
    clock.advance(timedelta(hours=2))
    await sweep(services)
    assert "escalated" not in await kinds(services, c.id)


async def test_urgent_severity_uses_the_urgent_resolution_clock(shrunk, clock) -> None:
    services = shrunk
    await boss(services)
    c = await taken(services)
    assert c.resolution_due == c.created_at + timedelta(minutes=30)
    clock.advance(timedelta(minutes=2))
    await press(services, BOSS, f"cmp:{c.id}:urg")
    c = await complaint(services, c.id)
    assert c.severity == "urgent"
    assert c.resolution_due == c.created_at + timedelta(minutes=6)
    assert (await pending(services, c.id))["cmp_resolution_breach"].due_at == c.resolution_due
    assert "urgent now" in await last_text(services, BOSS)
    await press(services, BOSS, f"cmp:{c.id}:urg")
    assert "already urgent" in (await answers(services, BOSS))[-1]


# ---- resolution and the call-back ---------------------------------------------------------------


async def test_resolution_then_a_satisfied_call_back_closes_it(services, clock) -> None:
    await boss(services)
    c = await taken(services)
    await resolve(services, c, days=0, solution="We replace the seal and refund the visit.")
    texts = await texts_to(services, CUSTOMER)
    assert "is resolved" in texts[-2] and "refund the visit" in texts[-2]
    assert "is it solved?" in texts[-1]
    c = await complaint(services, c.id)
    assert c.status == "resolved" and c.solution_due == clock.now()
    assert await pending(services, c.id) == {}
    await press(services, CUSTOMER, f"cmp:{c.id}:ok")
    assert "How satisfied" in await last_text(services, CUSTOMER)
    await press(services, CUSTOMER, f"cmp:{c.id}:rate:5")
    c = await complaint(services, c.id)
    assert (c.status, c.satisfied, c.rating) == ("closed", True, 5)
    await press(services, CUSTOMER, f"cmp:{c.id}:rate:1")  # a second tap changes nothing
    assert (await complaint(services, c.id)).rating == 5
    assert "confirmed that complaint" in await last_text(services, BOSS)
    assert await kinds(services, c.id) == [
        "opened",
        "intake_done",
        "taken",
        "resolved",
        "callback_sent",
        "callback_solved",
        "closed",
        "rated",
    ]


async def test_the_call_back_waits_for_the_completion_time(services, clock) -> None:
    await boss(services)
    c = await taken(services)
    await resolve(services, c, days=3)
    assert "is it solved?" not in await last_text(services, CUSTOMER)
    timer = (await pending(services, c.id))["cmp_callback"]
    assert timer.due_at == clock.now() + timedelta(days=3)
    clock.advance(timedelta(days=3))
    await sweep(services)
    assert "is it solved?" in await last_text(services, CUSTOMER)


async def test_not_solved_reopens_to_the_same_owner_and_escalates_one_level(services) -> None:
    owner = await boss(services)
    await boss(services, BOSS2, "Second Boss")
    await onboard(services, MANAGER, role="manager", name="Manager Liu", skills=())
    c = await taken(services)
    await resolve(services, c, days=0)
    await press(services, CUSTOMER, f"cmp:{c.id}:nok")
    c = await complaint(services, c.id)
    assert (c.status, c.owner_id, c.reopen_count, c.escalation_level) == ("open", owner.id, 1, 1)
    assert set(await pending(services, c.id)) == {"cmp_resolution_warn", "cmp_resolution_breach"}
    assert "not solved" in await last_text(services, BOSS)
    assert "not solved" in await last_text(services, BOSS2)  # the on-duty supervisor(s)
    assert not any(c.number in t for t in await texts_to(services, MANAGER))
    await say(services, CUSTOMER, "Still leaking at the back.")  # goes straight to the owner
    assert "Still leaking at the back." in await last_text(services, BOSS)
    # Second round: not solved again reaches the manager.
    await resolve(services, c, days=0)
    await press(services, CUSTOMER, f"cmp:{c.id}:nok")
    assert "not solved" in await last_text(services, MANAGER)
    assert (await complaint(services, c.id)).escalation_level == 2
    assert (await kinds(services, c.id)).count("reopened") == 2
    await press(services, CUSTOMER, f"cmp:{c.id}:nok")  # a stale tap
    assert "already answered" in (await answers(services, CUSTOMER))[-1]


async def test_the_call_back_is_made_by_phone_when_the_customer_is_not_in_chat(services) -> None:
    owner = await boss(services)
    async with services.uow() as uow:
        c = await flow.open_complaint(
            uow,
            customer=None,
            dispatch=None,
            category="billing",
            description="Charged twice",
            source="low_rating",
            name="Mr Zhang",
            phone="13800138000",
        )
        await uow.commit()
    await press(services, BOSS, f"cmp:{c.id}:take")
    await press(services, BOSS, f"cmp:{c.id}:reply")
    assert "not on Telegram" in (await answers(services, BOSS))[-1]
    await resolve(services, c, days=0)
    assert f"cmp:{c.id}:cbok" in await last_buttons(services, BOSS)
    await press(services, BOSS, f"cmp:{c.id}:cbok")
    c = await complaint(services, c.id)
    assert (c.status, c.satisfied, c.owner_id) == ("closed", True, owner.id)


async def test_a_bad_completion_time_is_refused(services) -> None:
    await boss(services)
    c = await taken(services)
    await press(services, BOSS, f"cmp:{c.id}:res")
    await say(services, BOSS, "Refund")
    await say(services, BOSS, "next week")
    assert "date and time" in await last_text(services, BOSS)
    await say(services, BOSS, "2031-01-01 10:00")
    assert "date and time" in await last_text(services, BOSS)
    assert (await complaint(services, c.id)).status == "open"
    await say(services, BOSS, "2026-12-03 15:00")
    c = await complaint(services, c.id)
    assert c.status == "resolved" and c.solution_due is not None
    assert c.solution_due.isoformat() == "2026-12-03T07:00:00+00:00"


# ---- status views and confidentiality ----------------------------------------------------------------


async def test_mycomplaints_shows_only_the_customers_own_tickets(services) -> None:
    await boss(services)
    mine = await taken(services)
    theirs = await file_complaint(services, OTHER_CUSTOMER, "Billing wrong", name="Other")
    await say(services, CUSTOMER, "/mycomplaints")
    listing = await last_text(services, CUSTOMER)
    assert mine.number in listing and theirs.number not in listing
    assert "handled by Zhou Min" in listing and "resolution by" in listing
    assert await last_buttons(services, CUSTOMER) == [f"cmp:{mine.id}:view"]

    before = await texts_to(services, CUSTOMER)
    await say(services, CUSTOMER, f"/mycomplaints {theirs.number}")
    await press(services, CUSTOMER, f"cmp:{theirs.id}:view")
    await press(services, CUSTOMER, f"cmp:{theirs.id}:add")
    await press(services, CUSTOMER, f"cmp:{theirs.id}:nok")
    await press(services, CUSTOMER, f"cmp:{theirs.id}:rate:1")
    after = await texts_to(services, CUSTOMER)
    leaked = [t for t in after[len(before) :] if theirs.number in t or "Billing wrong" in t]
    assert leaked == []
    assert "no such complaint" in after[-1]
    assert all("no such complaint" in a for a in (await answers(services, CUSTOMER))[-4:])
    assert (await complaint(services, theirs.id)).status == "new"
    assert "customer_message" not in await kinds(services, theirs.id)

    await say(services, CUSTOMER, f"/mycomplaints {mine.number.lower()}")
    detail = await last_text(services, CUSTOMER)
    assert mine.number in detail and "Zhou Min" in detail


async def test_staff_list_is_ordered_by_clock(shrunk, clock) -> None:
    services = shrunk
    await boss(services)
    late = await file_complaint(services, 31, "late one")
    clock.advance(timedelta(minutes=1))
    soon = await file_complaint(services, 32, "soon one", name="B")
    clock.advance(timedelta(minutes=2, seconds=30))
    fresh = await file_complaint(services, 33, "fresh one", name="C")
    await say(services, BOSS, "/complaints")
    text = await last_text(services, BOSS)
    overdue, _, rest = text.partition("Due soon")
    due_soon, _, others = rest.partition("Others")
    assert late.number in overdue and soon.number in due_soon and fresh.number in others
    assert await last_buttons(services, BOSS) == [
        f"cmp:{late.id}:view",
        f"cmp:{soon.id}:view",
        f"cmp:{fresh.id}:view",
    ]
    await press(services, BOSS, f"cmp:{late.id}:view")
    assert late.number in await last_text(services, BOSS)
    assert "+86" not in await last_text(services, BOSS)


async def test_an_engineer_sees_only_complaints_they_work_on(services) -> None:
    await boss(services)
    await onboard(services, ENG, name="Chen Jie")
    c = await taken(services)
    await say(services, ENG, "/complaints")
    assert "No open complaints" in await last_text(services, ENG)
    await press(services, ENG, f"cmp:{c.id}:view")
    assert "no such complaint" in (await answers(services, ENG))[-1]


# ---- the pattern flag ----------------------------------------------------------------------------


async def test_the_third_complaint_about_one_engineer_is_flagged(services, clock) -> None:
    await boss(services)
    engineer = (await onboard(services, ENG, name="Wang Wei")).user
    job = await new_dispatch(services)
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, job.id)
        assert row is not None
        row.engineer_id = engineer.id
        await uow.commit()

    async def about_engineer(category: str) -> Complaint:
        async with services.uow() as uow:
            c = await flow.open_complaint(
                uow,
                customer=None,
                dispatch=await uow.session.get(Dispatch, job.id),
                category=category,
                description=f"about {category}",
                source="low_rating",
            )
            await uow.commit()
            return c

    old = await about_engineer("quality")
    clock.advance(timedelta(days=91))  # outside COMPLAINT_PATTERN_WINDOW
    first = await about_engineer("late_no_show")
    await about_engineer("product_fault")  # not the engineer's doing
    second = await about_engineer("service_attitude")
    assert not any("complaints about engineer" in t for t in await texts_to(services, BOSS))
    third = await about_engineer("quality")
    flag = await last_text(services, BOSS)
    assert "3 complaints about engineer Wang Wei within 90 days" in flag
    for c in (first, second, third):
        assert c.number in flag
    assert old.number not in flag
    assert "pattern_flagged" in await kinds(services, third.id)


# ---- restarts: everything is in the database ------------------------------------------------------


async def test_an_intake_resumes_after_a_restart(services, make_settings, clock) -> None:
    await boss(services)
    user = await stranger_intake(services)
    await say(services, CUSTOMER, "First part.")
    restarted = build_services(make_settings(), clock=clock)
    try:
        await say(restarted, CUSTOMER, "Second part.")
        await press(restarted, CUSTOMER, f"cmi:{user.id}:done")
    finally:
        await restarted.sessionmaker.kw["bind"].dispose()
    [c] = await complaints(services)
    assert c.description == "First part.\n\nSecond part."


async def test_complaint_timers_all_have_actions() -> None:
    from bot.scheduler.registry import ACTIONS

    assert set(flow.KINDS) <= set(ACTIONS)


async def test_org_settings_keep_other_keys(services) -> None:
    async with services.uow() as uow:
        org = await organisation(uow)
        org.settings = {"bot_username": "x"}
        await uow.commit()
    async with services.uow() as uow:
        row = await uow.session.scalar(select(Organisation))
        assert row is not None and row.settings == {"bot_username": "x"}


async def test_writing_to_a_closed_complaint_says_so_and_changes_nothing(services) -> None:
    await boss(services)
    await stranger_intake(services)
    await say(services, CUSTOMER, "It broke again.")  # registered; the customer never taps Done
    [c] = await complaints(services)
    await press(services, BOSS, f"cmp:{c.id}:take")
    await resolve(services, c, days=0)
    await press(services, CUSTOMER, f"cmp:{c.id}:ok")
    before = await kinds(services, c.id)
    await say(services, CUSTOMER, "One more thing")
    assert "is closed" in await last_text(services, CUSTOMER)
    await press(services, CUSTOMER, f"cmp:{c.id}:add")
    assert "is closed" in (await answers(services, CUSTOMER))[-1]
    assert await kinds(services, c.id) == before
    assert (await complaint(services, c.id)).description == "It broke again."
    await say(services, CUSTOMER, "hello?")  # no longer in the complaint conversation
    assert "is closed" not in await last_text(services, CUSTOMER)


async def test_resolving_while_waiting_on_the_customer(services) -> None:
    await boss(services)
    c = await taken(services)
    await press(services, BOSS, f"cmp:{c.id}:ask")
    await say(services, BOSS, "Can you send a photo?")
    assert (await complaint(services, c.id)).status == "waiting"
    await press(services, BOSS, f"cmp:{c.id}:ask")  # still allowed: asks again, stays paused
    await say(services, BOSS, "Or a video?")
    assert (await complaint(services, c.id)).status == "waiting"
    await resolve(services, c, days=1)
    c = await complaint(services, c.id)
    assert c.status == "resolved" and c.paused_at is None and c.meta["paused"] == []
    assert set(await pending(services, c.id)) == {"cmp_callback"}
    await press(services, BOSS, f"cmp:{c.id}:ask")
    assert "not possible now" in (await answers(services, BOSS))[-1]
    await say(services, CUSTOMER, "Here it is")  # an answer after resolution: kept, relayed
    assert (await complaint(services, c.id)).status == "resolved"
    assert "Here it is" in await last_text(services, BOSS)


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ("new", {"open"}),
        ("open", {"waiting", "resolved"}),
        ("waiting", {"open", "resolved"}),
        ("resolved", {"open", "closed"}),
        ("closed", set()),
    ],
)
def test_the_status_machine(status: str, allowed: set[str]) -> None:
    from bot.services.errors import DomainError

    for target in ("new", "open", "waiting", "resolved", "closed"):
        ticket = Complaint(number="TS1", status=status)
        if target in allowed:
            flow._move(ticket, target)
            assert ticket.status == target
        else:
            with pytest.raises(DomainError):
                flow._move(ticket, target)
            assert ticket.status == status


async def test_a_stranger_who_starts_again_is_still_asked_for_name_and_phone(services) -> None:
    await say(services, CUSTOMER, "/complaint")
    await say(services, CUSTOMER, "/complaint")
    assert "tell us your name" in await last_text(services, CUSTOMER)
    async with services.uow() as uow:
        count = len(list(await uow.session.scalars(select(User).where(User.role == "customer"))))
    assert count == 1


async def test_other_areas_start_the_intake_with_a_button_about_a_job(services) -> None:
    await boss(services)
    me = await stranger_intake(services)
    await say(services, CUSTOMER, "/cancel")
    mine = await linked_job(services, me)
    other = await linked_job(services, me)
    theirs = await new_dispatch(services)
    button = flow.complaint_button(me.id, mine.id)
    assert button.label == "cmp_file" and button.data == f"cmi:{me.id}:new:{mine.id}"
    await press(services, CUSTOMER, f"cmi:{me.id}:new:{theirs.id}")  # not theirs: no preselect
    await press(services, CUSTOMER, f"cmi:{me.id}:cat:quality")
    assert await last_buttons(services, CUSTOMER) == [
        f"cmi:{me.id}:job:{other.id}",
        f"cmi:{me.id}:job:{mine.id}",
        f"cmi:{me.id}:nojob",
    ]
    await press(services, CUSTOMER, button.data)
    await press(services, CUSTOMER, f"cmi:{me.id}:cat:quality")
    assert "describe what happened" in await last_text(services, CUSTOMER)
    await say(services, CUSTOMER, "Bad repair")
    [c] = await complaints(services)
    assert c.dispatch_id == mine.id
