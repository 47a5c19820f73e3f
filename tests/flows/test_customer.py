"""DOMAIN.md §1 steps 6–7 and the customer's view (issue 4): linking by deep link and by shared
contact, notifications, sign-off in chat and on paper, reminders, the work-order PDF, feedback,
/myjobs, and that nobody reaches another customer's job.

Times: the fake clock starts at 2026-11-30 01:00 UTC (09:00 in Asia/Shanghai, the site's
zone); the default window is 11:00–14:00 local.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from bot.core.events import Kind
from bot.db.models import Conversation, Dispatch, DispatchEvent, Offer, Outbox, Timer, User
from bot.db.models.complaints import Complaint
from bot.db.models.customer import Feedback, SignOff, WorkOrderPdf
from bot.db.models.followups import FollowUp
from bot.scheduler.sweep import sweep
from bot.services.context import Services
from bot.services.customers import customer_link
from bot.services.staff import Redeem, add_staff, redeem_invite
from tests.conftest import outbox_rows
from tests.helpers import new_dispatch, press, say, send_kind

ENG, ENG2, SUP, CUST, CUST2 = 11, 12, 21, 7001, 7002
PHONE = "8613800138000"  # as Telegram sends the account's own number
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEAR = (31.2310, 121.4740)


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 30, hour, minute, tzinfo=SHANGHAI)


# ---- reading ----------------------------------------------------------------------------------


async def dispatch_of(services: Services, dispatch_id: int) -> Dispatch:
    async with services.uow() as uow:
        found = await uow.session.get(Dispatch, dispatch_id)
        assert found is not None
        return found


async def user_by_tg(services: Services, telegram_id: int) -> User | None:
    async with services.uow() as uow:
        return await uow.session.scalar(select(User).where(User.telegram_id == telegram_id))


async def rows_of(services: Services, model: Any, **where: Any) -> list[Any]:
    async with services.uow() as uow:
        stmt = select(model).order_by(model.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return list(await uow.session.scalars(stmt))


async def kinds(services: Services, dispatch_id: int) -> list[str]:
    return [e.kind for e in await rows_of(services, DispatchEvent, dispatch_id=dispatch_id)]


async def pending_timers(services: Services, dispatch_id: int) -> set[str]:
    timers = await rows_of(services, Timer, subject=f"signoff:{dispatch_id}")
    return {t.kind for t in timers if t.status == "pending"}


async def mark(services: Services) -> int:
    async with services.uow() as uow:
        return int(await uow.session.scalar(select(func.max(Outbox.id))) or 0)


async def sent(services: Services, chat_id: int, since: int = 0) -> list[Outbox]:
    return [r for r in await outbox_rows(services, chat_id) if r.id > since]


async def texts(services: Services, chat_id: int, since: int = 0) -> list[str]:
    return [
        r.payload["text"]
        for r in await sent(services, chat_id, since)
        if r.method in ("sendMessage", "editMessageText")
    ]


async def alerts(services: Services, chat_id: int, since: int = 0) -> list[str]:
    return [
        r.payload.get("text", "")
        for r in await sent(services, chat_id, since)
        if r.method == "answerCallbackQuery"
    ]


def data_of(row: Outbox) -> list[str]:
    markup = row.payload.get("reply_markup") or {}
    return [b["callback_data"] for line in markup.get("inline_keyboard", []) for b in line]


async def last_with(services: Services, chat_id: int, needle: str, since: int = 0) -> Outbox:
    found = [
        r
        for r in await sent(services, chat_id, since)
        if r.method in ("sendMessage", "editMessageText") and needle in r.payload["text"]
    ]
    assert found, (needle, await texts(services, chat_id, since))
    return found[-1]


# ---- driving ----------------------------------------------------------------------------------


async def staff(
    services: Services,
    telegram_id: int,
    role: str = "engineer",
    name: str = "Wang Wei",
    phone: str | None = None,
) -> int:
    async with services.uow() as uow:
        new = await add_staff(
            uow,
            role=role,
            name=name,
            skills=["repair"] if role == "engineer" else [],
            phone=phone,
        )
        await uow.commit()
    async with services.uow() as uow:
        result, user = await redeem_invite(
            uow, code=new.code, telegram_id=telegram_id, chat_id=telegram_id, language="en"
        )
        assert result is Redeem.OK and user is not None
        await uow.commit()
        return user.id


async def share_contact(
    services: Services, telegram_id: int, phone: str = PHONE, *, own: bool = True, **fields: Any
) -> None:
    await send_kind(
        services,
        telegram_id,
        Kind.CONTACT,
        contact_phone=phone,
        contact_user_id=telegram_id if own else None,
        first_name=fields.pop("first_name", "Na"),
        language=fields.pop("language", "en"),
        **fields,
    )


async def link_code(services: Services, dispatch_id: int) -> str:
    async with services.uow() as uow:
        dispatch = await uow.session.get(Dispatch, dispatch_id)
        assert dispatch is not None
        link = await customer_link(uow, dispatch)
        await uow.commit()
    return link.split("start=", 1)[1]


async def accept(services: Services, dispatch_id: int, engineer_tg: int = ENG) -> None:
    engineer = await user_by_tg(services, engineer_tg)
    assert engineer is not None
    async with services.uow() as uow:
        offer = await uow.session.scalar(
            select(Offer.id).where(
                Offer.dispatch_id == dispatch_id, Offer.engineer_id == engineer.id
            )
        )
    await press(services, engineer_tg, f"off:{offer}:acc")


async def contact_and_arrive(services: Services, clock: Any, dispatch_id: int) -> None:
    eta = local(11, 30)
    await press(services, ENG, f"job:{dispatch_id}:ctd")
    await press(services, ENG, f"job:{dispatch_id}:eta:{int(eta.timestamp() // 60)}")
    await press(services, ENG, f"job:{dispatch_id}:way")
    await press(services, ENG, f"job:{dispatch_id}:omw:{int(local(11, 15).timestamp() // 60)}")
    clock.set(local(11, 10))
    await send_kind(services, ENG, Kind.LOCATION, latitude=NEAR[0], longitude=NEAR[1])


async def report(
    services: Services,
    dispatch_id: int,
    *,
    work: str = "Replaced the compressor relay",
    photos: int = 1,
    extra: str | None = None,
) -> None:
    await press(services, ENG, f"job:{dispatch_id}:out:fixed")
    await say(services, ENG, work)
    await say(services, ENG, "Relay x 2\nFuse")
    for n in range(photos):
        await send_kind(services, ENG, Kind.PHOTO, file_ids=(f"photo-{n + 1}",))
    await press(services, ENG, f"job:{dispatch_id}:phd")
    if extra:
        await say(services, ENG, extra)
    else:
        await press(services, ENG, f"job:{dispatch_id}:noex")
    await press(services, ENG, f"job:{dispatch_id}:sub")


async def team(services: Services) -> None:
    await staff(services, ENG)
    await staff(services, SUP, "supervisor", "Zhou Min")


async def submitted_job(
    services: Services, clock: Any, *, customer: bool = True, **report_fields: Any
) -> int:
    """ENG's job through to the submitted report; CUST (if ``customer``) linked by contact."""
    await team(services)
    dispatch = await new_dispatch(services)
    if customer:
        await share_contact(services, CUST)
    await accept(services, dispatch.id)
    await contact_and_arrive(services, clock, dispatch.id)
    await report(services, dispatch.id, **report_fields)
    assert (await dispatch_of(services, dispatch.id)).status == "awaiting_signoff"
    return dispatch.id


async def pending_signoff(services: Services, dispatch_id: int) -> SignOff:
    rows = [
        s
        for s in await rows_of(services, SignOff, dispatch_id=dispatch_id)
        if s.status == "pending"
    ]
    assert len(rows) == 1, rows
    return rows[0]


async def signed(services: Services, clock: Any, **fields: Any) -> int:
    job = await submitted_job(services, clock, **fields)
    signoff = await pending_signoff(services, job)
    await press(services, CUST, f"so:{signoff.id}:ok")
    assert (await dispatch_of(services, job)).status == "signed_off"
    return job


# ---- linking: /start, shared contact ----------------------------------------------------------


async def test_start_offers_strangers_a_share_phone_button(services) -> None:
    await say(services, CUST, "/start")
    row = (await sent(services, CUST))[-1]
    assert "share your phone number" in row.payload["text"]
    keyboard = row.payload["reply_markup"]["keyboard"]
    assert keyboard == [[{"text": "📱 Share my phone number", "request_contact": True}]]


async def test_own_contact_links_every_open_job_with_that_phone(services) -> None:
    await team(services)
    first = await new_dispatch(services)
    second = await new_dispatch(services, address="1 Nanjing Road", contact_phone="13800138000")
    other = await new_dispatch(services, contact_phone="+86 139 0000 0000")
    cancelled = await new_dispatch(services, address="2 Huaihai Road")
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, cancelled.id)
        assert row is not None
        row.status = "cancelled"
        await uow.commit()
    await share_contact(services, CUST, first_name="Na")
    customer = await user_by_tg(services, CUST)
    assert customer is not None
    assert (customer.role, customer.phone, customer.name) == ("customer", "+8613800138000", "Na")
    for job, linked in ((first, True), (second, True), (other, False), (cancelled, False)):
        found = await dispatch_of(services, job.id)
        assert (found.customer_user_id == customer.id) is linked, job.number
    text = (await texts(services, CUST))[-1]
    assert first.number in text and second.number in text and other.number not in text
    assert "we are finding an engineer" in text
    assert "customer_linked" in await kinds(services, first.id)


@pytest.mark.parametrize("phone", ["+86 138-0013-8000", "13800138000", "008613800138000"])
async def test_numbers_are_matched_whatever_their_format(services, phone) -> None:
    dispatch = await new_dispatch(services)
    await share_contact(services, CUST, phone)
    customer = await user_by_tg(services, CUST)
    assert customer is not None
    assert (await dispatch_of(services, dispatch.id)).customer_user_id == customer.id


async def test_someone_elses_contact_is_refused(services) -> None:
    dispatch = await new_dispatch(services)
    await share_contact(services, CUST, own=False)
    await send_kind(services, CUST2, Kind.CONTACT, contact_phone=PHONE, contact_user_id=CUST)
    assert await user_by_tg(services, CUST) is None and await user_by_tg(services, CUST2) is None
    assert (await dispatch_of(services, dispatch.id)).customer_user_id is None
    row = (await sent(services, CUST))[-1]
    assert "your own phone number" in row.payload["text"]
    assert row.payload["reply_markup"]["keyboard"][0][0]["request_contact"] is True


async def test_a_number_without_a_job_gets_an_explanation_and_a_complaint_button(
    services,
) -> None:
    await new_dispatch(services)
    await share_contact(services, CUST, "8613900000000")
    row = (await sent(services, CUST))[-1]
    text = row.payload["text"]
    assert "could not find an open service job" in text and "/complaint" in text
    assert "+86*******0000" in text and "13900000000" not in text
    customer = await user_by_tg(services, CUST)
    assert customer is not None and customer.phone == "+8613900000000"
    assert data_of(row) == [f"cmi:{customer.id}:new"]  # the complaints area's intake button
    assert await rows_of(services, Dispatch, customer_user_id=customer.id) == []


async def test_a_job_already_followed_by_another_account_is_not_taken_over(services) -> None:
    dispatch = await new_dispatch(services)
    await share_contact(services, CUST)
    first = await user_by_tg(services, CUST)
    await share_contact(services, CUST2)  # same number, another Telegram account
    assert (await dispatch_of(services, dispatch.id)).customer_user_id == first.id  # type: ignore[union-attr]
    assert "another Telegram account" in (await texts(services, CUST2))[-1]


async def test_staff_cannot_link_themselves_to_a_customer_job(services) -> None:
    await team(services)
    dispatch = await new_dispatch(services)
    await share_contact(services, ENG)
    await say(services, ENG, f"/start {await link_code(services, dispatch.id)}")
    assert (await dispatch_of(services, dispatch.id)).customer_user_id is None
    assert all("staff account" in t for t in (await texts(services, ENG))[-2:])


# ---- linking: the per-job deep link ---------------------------------------------------------------


async def test_deep_link_links_the_job_and_tells_its_current_status(services, clock) -> None:
    await team(services)
    dispatch = await new_dispatch(services)
    await accept(services, dispatch.id)
    await press(services, ENG, f"job:{dispatch.id}:ctd")
    await press(services, ENG, f"job:{dispatch.id}:eta:{int(local(11, 30).timestamp() // 60)}")
    await say(services, CUST, f"/start {await link_code(services, dispatch.id)}")
    customer = await user_by_tg(services, CUST)
    assert customer is not None and customer.role == "customer" and customer.phone is None
    assert (await dispatch_of(services, dispatch.id)).customer_user_id == customer.id
    text = (await texts(services, CUST))[-1]
    assert dispatch.number in text and "the engineer has called you and will come" in text
    assert "Wang Wei (staff ID E0001)" in text and "Expected arrival: 11:30" in text
    assert "11:00–14:00" in text


async def test_deep_link_refusals_forged_replaced_and_someone_elses(services) -> None:
    dispatch = await new_dispatch(services)
    old = await link_code(services, dispatch.id)
    code = await link_code(services, dispatch.id)  # a new link replaces the old one
    await say(services, CUST, f"/start {old}")
    await say(services, CUST, "/start job_AAAAAAAAAAAAAAAAAAAAAAAA")
    assert (await dispatch_of(services, dispatch.id)).customer_user_id is None
    assert [t.count("not valid") for t in await texts(services, CUST)] == [1, 1]
    await say(services, CUST, f"/start {code}")
    customer = await user_by_tg(services, CUST)
    await say(services, CUST2, f"/start {code}")  # the same link, another account
    assert (await dispatch_of(services, dispatch.id)).customer_user_id == customer.id  # type: ignore[union-attr]
    assert "already followed from another Telegram account" in (await texts(services, CUST2))[-1]
    assert await user_by_tg(services, CUST2) is None
    await say(services, CUST, f"/start {code}")  # again: fine, and says so
    assert "already follow this job" in (await texts(services, CUST))[-1]


async def test_reset_link_lets_a_new_account_claim_the_job(services) -> None:
    dispatch = await new_dispatch(services)
    await say(services, CUST, f"/start {await link_code(services, dispatch.id)}")
    async with services.uow() as uow:
        row = await uow.session.get(Dispatch, dispatch.id)
        assert row is not None
        code = (await customer_link(uow, row, reset=True)).split("start=", 1)[1]
        await uow.commit()
    await say(services, CUST2, f"/start {code}")
    newcomer = await user_by_tg(services, CUST2)
    assert newcomer is not None
    assert (await dispatch_of(services, dispatch.id)).customer_user_id == newcomer.id


# ---- notifications ----------------------------------------------------------------------------


async def test_the_customer_follows_each_step_without_the_engineers_phone(services, clock) -> None:
    await staff(services, ENG, phone="13911112222")
    dispatch = await new_dispatch(services)
    await share_contact(services, CUST)
    since = await mark(services)
    await accept(services, dispatch.id)
    await contact_and_arrive(services, clock, dispatch.id)
    got = await texts(services, CUST, since)
    assert len(got) == 4, got
    assigned, contacted, on_the_way, arrived = got
    assert "has an engineer" in assigned and "Wang Wei (staff ID E0001)" in assigned
    assert "11:00–14:00" in assigned
    assert "expects to arrive at 11:30" in contacted
    assert "on the way" in on_the_way and "11:15" in on_the_way
    assert "has arrived" in arrived and "E0001" in arrived and dispatch.number in arrived
    assert all("13911112222" not in t for t in got)


async def test_show_engineer_phone_setting_lets_customers_see_it(services, make_settings) -> None:
    services.settings = make_settings(show_engineer_phone=True)
    await staff(services, ENG, phone="13911112222")
    dispatch = await new_dispatch(services)
    await share_contact(services, CUST)
    await accept(services, dispatch.id)
    assert "+8613911112222" in (await texts(services, CUST))[-1]


# ---- sign-off in chat -------------------------------------------------------------------------


async def test_submitted_report_puts_the_work_order_to_the_customer(services, clock) -> None:
    since = await mark(services)
    job = await submitted_job(services, clock, photos=2)
    signoff = await pending_signoff(services, job)
    rows = [r for r in await sent(services, CUST, since) if r.id > 0]
    photos = [r.payload["photo"] for r in rows if r.method == "sendPhoto"]
    assert photos == ["photo-1", "photo-2"]
    request = await last_with(services, CUST, "Please check the work order")
    assert data_of(request) == [f"so:{signoff.id}:ok", f"so:{signoff.id}:no"]
    assert signoff.text in request.payload["text"]  # exactly what is hashed
    assert signoff.text_sha256 == hashlib.sha256(signoff.text.encode()).hexdigest()
    for part in (
        "Replaced the compressor relay",
        "Relay × 2",
        "Fuse × 1",
        "Photos: 2",
        "Wang Wei (staff ID E0001)",
        "CH-200 chiller × 2",
        "SN-1001, SN-1002",
        "Arrived: 2026-11-30 11:10",
        "Outcome: fixed",
    ):
        assert part in signoff.text, part
    assert await pending_timers(services, job) == {"signoff_reminder", "signoff_escalation"}
    paper = await last_with(services, ENG, "received the work order")
    assert data_of(paper) == [f"pap:{job}:up"]


async def test_confirm_signs_off_stores_the_record_and_sends_the_pdf(services, clock) -> None:
    job = await submitted_job(services, clock)
    signoff = await pending_signoff(services, job)
    clock.set(local(12, 5))
    since = await mark(services)
    await press(services, CUST, f"so:{signoff.id}:ok")
    dispatch = await dispatch_of(services, job)
    assert dispatch.status == "signed_off"
    [record] = await rows_of(services, SignOff, dispatch_id=job)
    assert (record.status, record.telegram_id, record.answered_at) == (
        "confirmed",
        CUST,
        local(12, 5),
    )
    assert dispatch.report["signoff"]["sha256"] == record.text_sha256
    assert dispatch.report["final"]["work_done"] == "Replaced the compressor relay"
    assert not await pending_timers(services, job) & {"signoff_reminder", "signoff_escalation"}
    [pdf] = await rows_of(services, WorkOrderPdf, dispatch_id=job)
    assert pdf.content.startswith(b"%PDF") and pdf.signoff_id == record.id
    assert pdf.sha256 == hashlib.sha256(pdf.content).hexdigest()
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert dispatch.number in text and record.text_sha256 in text and str(CUST) in text
    customer_rows = await sent(services, CUST, since)
    methods = [r.method for r in customer_rows if r.method != "answerCallbackQuery"]
    assert methods == ["sendMessage", "sendDocument", "sendMessage"]  # thanks, PDF, rating
    document = next(r for r in customer_rows if r.method == "sendDocument")
    assert base64.b64decode(document.payload["document_b64"]) == pdf.content
    assert document.payload["document_name"] == f"work-order-{dispatch.number}.pdf"
    assert (
        "signed off with your Telegram account at 2026-11-30 12:05"
        in customer_rows[0].payload["text"]
    )
    supervisor_docs = [r for r in await sent(services, SUP, since) if r.method == "sendDocument"]
    assert len(supervisor_docs) == 1 and "signed in chat" in supervisor_docs[0].payload["caption"]
    assert "customer signed off" in (await texts(services, ENG, since))[-1]
    rating = await last_with(services, CUST, "How was the service")
    assert data_of(rating) == [f"fb:{job}:r:{n}" for n in range(1, 6)]
    [followup] = await rows_of(services, FollowUp, dispatch_id=job)  # DOMAIN §3, next day
    assert followup.kind == "satisfaction"
    history = await kinds(services, job)
    assert history.index("signed_off") < history.index("work_order_pdf")


async def test_a_second_confirm_changes_nothing(services, clock) -> None:
    job = await signed(services, clock)
    signoff = (await rows_of(services, SignOff, dispatch_id=job))[0]
    since = await mark(services)
    await press(services, CUST, f"so:{signoff.id}:ok")
    assert "already signed off" in (await alerts(services, CUST, since))[-1]
    assert (await kinds(services, job)).count("signed_off") == 1
    assert len(await rows_of(services, WorkOrderPdf, dispatch_id=job)) == 1


async def test_forged_buttons_cannot_touch_another_customers_job(services, clock) -> None:
    job = await submitted_job(services, clock)
    signoff = await pending_signoff(services, job)
    await share_contact(services, CUST2, "8613911112222")  # a customer with no job
    since = await mark(services)
    for data in (
        f"so:{signoff.id}:ok",
        f"so:{signoff.id}:no",
        f"cj:{job}:sign",
        f"fb:{job}:r:5",
        f"so:{signoff.id}:ok:x",
        "so:999:ok",
    ):
        await press(services, CUST2, data)
    assert (await dispatch_of(services, job)).status == "awaiting_signoff"
    assert (await pending_signoff(services, job)).id == signoff.id
    assert await rows_of(services, Feedback) == []
    got = await sent(services, CUST2, since)
    assert all(r.method == "answerCallbackQuery" for r in got)  # only refusals, no job data
    number = (await dispatch_of(services, job)).number
    assert all(number not in r.payload.get("text", "") for r in got)
    # staff and strangers cannot press customers' buttons at all
    await press(services, ENG, f"so:{signoff.id}:ok")
    await press(services, 99, f"so:{signoff.id}:ok")
    assert (await dispatch_of(services, job)).status == "awaiting_signoff"


async def test_reject_asks_the_reason_and_opens_a_complaint(services, clock) -> None:
    job = await submitted_job(services, clock)
    signoff = await pending_signoff(services, job)
    await press(services, CUST, f"so:{signoff.id}:no")
    assert "What is wrong" in (await texts(services, CUST))[-1]
    await say(services, CUST, "x" * 1001)
    assert "at most 1000 characters" in (await texts(services, CUST))[-1]
    assert (await pending_signoff(services, job)).status == "pending"
    await say(services, CUST, "The unit still leaks water")
    [record] = await rows_of(services, SignOff, dispatch_id=job)
    assert (record.status, record.reason, record.telegram_id) == (
        "rejected",
        "The unit still leaks water",
        CUST,
    )
    [complaint] = await rows_of(services, Complaint, dispatch_id=job)
    customer = await user_by_tg(services, CUST)
    assert (complaint.source, complaint.category, complaint.description) == (
        "signoff_rejected",
        "quality",
        "The unit still leaks water",
    )
    assert complaint.customer_user_id == customer.id  # type: ignore[union-attr]
    assert (await dispatch_of(services, job)).status == "awaiting_signoff"
    assert await pending_timers(services, job) & {"signoff_reminder", "signoff_escalation"} == set()
    assert "rejected the sign-off" in (await last_with(services, ENG, "rejected")).payload["text"]
    assert any(complaint.number in t for t in await texts(services, CUST))
    async with services.uow() as uow:
        assert await uow.session.get(Conversation, customer.id) is None  # type: ignore[union-attr]
    await press(services, CUST, f"so:{signoff.id}:ok")  # the answered request stays answered
    assert (await dispatch_of(services, job)).status == "awaiting_signoff"


async def test_myjobs_review_sends_a_new_work_order_and_retires_the_old(services, clock) -> None:
    job = await submitted_job(services, clock)
    old = await pending_signoff(services, job)
    await say(services, CUST, "/myjobs")
    listing = (await sent(services, CUST))[-1]
    assert data_of(listing) == [f"cj:{job}:sign"]
    await press(services, CUST, f"cj:{job}:sign")
    new = await pending_signoff(services, job)
    assert new.id != old.id and new.text == old.text
    since = await mark(services)
    await press(services, CUST, f"so:{old.id}:ok")
    assert "replaced by a newer one" in (await alerts(services, CUST, since))[-1]
    assert (await dispatch_of(services, job)).status == "awaiting_signoff"
    await press(services, CUST, f"so:{new.id}:ok")
    assert (await dispatch_of(services, job)).status == "signed_off"


async def test_a_long_work_order_goes_out_in_parts_with_the_buttons_last(services, clock) -> None:
    since = await mark(services)
    work = "\n".join(
        f"Step {n}: " + "checked and cleaned the condenser coil " * 5 for n in range(10)
    )
    job = await submitted_job(services, clock, work=work[:2000], extra="y" * 1990)
    signoff = await pending_signoff(services, job)
    messages = [r for r in await sent(services, CUST, since) if r.method == "sendMessage"]
    parts = [r for r in messages if "Step 0" in r.payload["text"] or "yyyy" in r.payload["text"]]
    assert len(parts) >= 2 and all(len(r.payload["text"]) <= 4096 for r in parts)
    assert data_of(parts[-1]) == [f"so:{signoff.id}:ok", f"so:{signoff.id}:no"]
    assert all(not data_of(r) for r in parts[:-1])


# ---- reminders and escalation -------------------------------------------------------------------


async def test_no_answer_reminds_the_customer_then_alerts_the_supervisor(services, clock) -> None:
    job = await submitted_job(services, clock)
    signoff = await pending_signoff(services, job)
    clock.advance(services.settings.signoff_reminder)
    await sweep(services)
    reminder = await last_with(services, CUST, "Reminder")
    assert data_of(reminder) == [f"so:{signoff.id}:ok", f"so:{signoff.id}:no"]
    clock.advance(services.settings.signoff_escalation)
    await sweep(services)
    alert = await last_with(services, SUP, "still not signed off")
    assert data_of(alert) == [f"sos:{job}:rem"]
    since = await mark(services)
    await press(services, SUP, f"sos:{job}:rem")
    assert "Reminder" in (await texts(services, CUST, since))[-1]
    assert "has been reminded" in (await texts(services, SUP, since))[-1]
    await press(services, CUST, f"so:{signoff.id}:ok")
    await press(services, SUP, f"sos:{job}:rem")  # over now
    assert "no longer current" in (await alerts(services, SUP))[-1]
    assert {"signoff_reminder_sent", "signoff_overdue", "signoff_reminded"} <= set(
        await kinds(services, job)
    )


async def test_reminders_stop_once_signed_off(services, clock) -> None:
    job = await signed(services, clock)
    since = await mark(services)
    clock.advance(services.settings.signoff_escalation + timedelta(hours=1))
    await sweep(services)
    assert not any("Reminder" in t for t in await texts(services, CUST, since))
    assert not any("still not signed off" in t for t in await texts(services, SUP, since))
    assert "signoff_reminder_sent" not in await kinds(services, job)


# ---- sign-off on paper ------------------------------------------------------------------------


async def test_without_a_customer_in_chat_the_engineer_uploads_the_paper_form(
    services, clock
) -> None:
    job = await submitted_job(services, clock, customer=False)
    prompt = await last_with(services, ENG, "does not follow the job in Telegram")
    assert data_of(prompt) == [f"pap:{job}:up"]
    clock.advance(services.settings.signoff_reminder)
    await sweep(services)
    assert data_of(await last_with(services, ENG, "still not signed off")) == [f"pap:{job}:up"]
    await press(services, ENG, f"pap:{job}:up")
    assert "Send a photo of the paper form" in (await texts(services, ENG))[-1]
    await say(services, ENG, "here it is")
    assert "Please send a photo" in (await texts(services, ENG))[-1]
    since = await mark(services)
    await send_kind(services, ENG, Kind.PHOTO, file_ids=("paper-form-photo",))
    dispatch = await dispatch_of(services, job)
    assert dispatch.status == "signed_off" and dispatch.report["signoff"]["method"] == "paper"
    [record] = await rows_of(services, SignOff, dispatch_id=job)
    engineer = await user_by_tg(services, ENG)
    assert (record.method, record.photo_file_id, record.recorded_by, record.telegram_id) == (
        "paper",
        "paper-form-photo",
        engineer.id,
        None,  # type: ignore[union-attr]
    )
    [pdf] = await rows_of(services, WorkOrderPdf, dispatch_id=job)
    assert "paper-form-photo" in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "signed off (on paper)" in (await texts(services, ENG, since))[-1]
    docs = [r for r in await sent(services, SUP, since) if r.method == "sendDocument"]
    assert len(docs) == 1 and "signed on paper" in docs[0].payload["caption"]
    assert await rows_of(services, Feedback) == []


async def test_paper_sign_off_any_time_with_paper_command(services, clock) -> None:
    job = await submitted_job(services, clock)  # the customer is in chat, but signs on paper
    await say(services, ENG, "/paper")
    listing = (await sent(services, ENG))[-1]
    assert data_of(listing) == [f"pap:{job}:up"]
    await press(services, ENG, f"pap:{job}:up")
    await send_kind(services, ENG, Kind.DOCUMENT, file_ids=("scan-1",), mime_type="application/pdf")
    assert (await dispatch_of(services, job)).status == "signed_off"
    statuses = [s.status for s in await rows_of(services, SignOff, dispatch_id=job)]
    assert statuses == ["superseded", "confirmed"]  # the chat request can no longer be used
    assert "How was the service" in (await texts(services, CUST))[-1]  # feedback still asked


async def test_only_the_jobs_engineer_can_record_the_paper_form(services, clock) -> None:
    job = await submitted_job(services, clock, customer=False)
    await staff(services, ENG2, name="Zhao Lei")
    await press(services, ENG2, f"pap:{job}:up")
    assert "not yours" in (await alerts(services, ENG2))[-1]
    await press(services, CUST, f"pap:{job}:up")
    assert (await dispatch_of(services, job)).status == "awaiting_signoff"


async def test_linking_while_awaiting_signoff_sends_the_work_order_at_once(services, clock) -> None:
    job = await submitted_job(services, clock, customer=False)
    await share_contact(services, CUST)
    signoff = await pending_signoff(services, job)
    request = await last_with(services, CUST, "Please check the work order")
    assert data_of(request) == [f"so:{signoff.id}:ok", f"so:{signoff.id}:no"]
    assert "please check and sign the work order" in (await texts(services, CUST))[0]


# ---- feedback -------------------------------------------------------------------------------------


async def test_rating_and_comment_once_per_job(services, clock) -> None:
    job = await signed(services, clock)
    await press(services, CUST, f"fb:{job}:r:5")
    [edit] = [r for r in await sent(services, CUST) if r.method == "editMessageText"]
    assert edit.edit_of == f"feedback:{job}"
    assert "5 of 5" in edit.payload["text"] and data_of(edit) == []
    assert "add a comment" in (await texts(services, CUST))[-1]
    await say(services, CUST, "c" * 1001)
    assert "at most 1000 characters" in (await texts(services, CUST))[-1]
    await say(services, CUST, "Quick and tidy, thank you")
    [feedback] = await rows_of(services, Feedback)
    engineer = await user_by_tg(services, ENG)
    assert (feedback.rating, feedback.comment, feedback.engineer_id) == (
        5,
        "Quick and tidy, thank you",
        engineer.id,  # type: ignore[union-attr]
    )
    since = await mark(services)
    await press(services, CUST, f"fb:{job}:r:4")
    assert "already given feedback" in (await alerts(services, CUST, since))[-1]
    assert (await rows_of(services, Feedback))[0].rating == 5
    assert await rows_of(services, Complaint) == []
    assert not any("Low rating" in t for t in await texts(services, SUP))


async def test_forged_ratings_change_nothing(services, clock) -> None:
    job = await signed(services, clock)
    for arg in ("0", "6", "x", "-1", "55", ""):
        await press(services, CUST, f"fb:{job}:r:{arg}".rstrip(":"))
    assert await rows_of(services, Feedback) == []


async def test_no_rating_before_sign_off(services, clock) -> None:
    job = await submitted_job(services, clock)
    await press(services, CUST, f"fb:{job}:r:5")
    assert "not signed off yet" in (await alerts(services, CUST))[-1]
    assert await rows_of(services, Feedback) == []


async def test_low_rating_alerts_the_supervisor_and_opens_a_complaint(services, clock) -> None:
    job = await signed(services, clock)
    await press(services, CUST, f"fb:{job}:r:2")
    alert = await last_with(services, SUP, "Low rating")
    assert "2 of 5" in alert.payload["text"] and "Wang Wei" in alert.payload["text"]
    [complaint] = await rows_of(services, Complaint, dispatch_id=job)
    assert (complaint.source, complaint.category) == ("low_rating", "quality")
    await say(services, CUST, "Left a mess behind")
    assert (
        "Left a mess behind"
        in (await last_with(services, SUP, "Comment on the low")).payload["text"]
    )


async def test_skip_the_comment(services, clock) -> None:
    job = await signed(services, clock)
    await press(services, CUST, f"fb:{job}:r:4")
    await press(services, CUST, f"fb:{job}:skip")
    assert "Thank you for your feedback" in (await texts(services, CUST))[-1]
    [feedback] = await rows_of(services, Feedback)
    assert (feedback.rating, feedback.comment) == (4, None)
    customer = await user_by_tg(services, CUST)
    async with services.uow() as uow:
        assert await uow.session.get(Conversation, customer.id) is None  # type: ignore[union-attr]
    await press(services, CUST, f"fb:{job}:skip")  # stale now
    assert "no longer valid" in (await alerts(services, CUST))[-1]


# ---- /myjobs ----------------------------------------------------------------------------------


async def test_myjobs_shows_own_jobs_status_engineer_and_window_only(services, clock) -> None:
    await team(services)
    mine = await new_dispatch(services)
    theirs = await new_dispatch(services, contact_phone="13911112222", address="9 Secret Road")
    await share_contact(services, CUST)
    await share_contact(services, CUST2, "8613911112222")
    await accept(services, mine.id)
    await say(services, CUST, "/myjobs")
    text = (await texts(services, CUST))[-1]
    assert mine.number in text and theirs.number not in text
    assert "Wang Wei" in text and "11:00–14:00" in text and "will call you" in text
    for secret in ("Century Avenue", "+8613800138000", "Li Na", "E0001"):
        assert secret not in text
    await say(services, ENG, "/myjobs")
    assert "not available to you" in (await texts(services, ENG))[-1]


async def test_myjobs_without_jobs_offers_to_share_the_phone(services) -> None:
    await share_contact(services, CUST)
    await say(services, CUST, "/myjobs")
    row = (await sent(services, CUST))[-1]
    assert "You follow no open jobs" in row.payload["text"]
    assert row.payload["reply_markup"]["keyboard"][0][0]["request_contact"] is True


# ---- confidentiality ----------------------------------------------------------------------------


async def test_phone_numbers_and_addresses_never_reach_the_logs(
    services, clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # LOG_LEVEL's default
    job = await signed(services, clock)
    await press(services, CUST, f"fb:{job}:r:1")
    await share_contact(services, CUST2, "8613911112222")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("13800138000", "138 0013 8000", "13911112222", "Century Avenue"):
        assert secret not in logged


async def test_a_reason_typed_after_a_paper_sign_off_ends_quietly(services, clock) -> None:
    job = await submitted_job(services, clock)
    signoff = await pending_signoff(services, job)
    await press(services, CUST, f"so:{signoff.id}:no")
    await press(services, ENG, f"pap:{job}:up")
    await send_kind(services, ENG, Kind.PHOTO, file_ids=("paper",))
    await say(services, CUST, "It leaks")
    assert "already signed off" in (await texts(services, CUST))[-1]
    assert await rows_of(services, Complaint) == []
    customer = await user_by_tg(services, CUST)
    async with services.uow() as uow:
        assert await uow.session.get(Conversation, customer.id) is None  # type: ignore[union-attr]


async def test_escalation_without_a_customer_in_chat_has_no_remind_button(services, clock) -> None:
    job = await submitted_job(services, clock, customer=False)
    clock.advance(services.settings.signoff_escalation)
    await sweep(services)
    alert = await last_with(services, SUP, "still not signed off")
    assert "must upload the signed paper form" in alert.payload["text"]
    assert data_of(alert) == []
    await press(services, SUP, f"sos:{job}:rem")  # forged: there is nobody to remind
    assert "no longer current" in (await alerts(services, SUP))[-1]


async def test_paper_command_with_nothing_waiting(services) -> None:
    await staff(services, ENG)
    await say(services, ENG, "/paper")
    row = (await sent(services, ENG))[-1]
    assert "None of your jobs" in row.payload["text"] and data_of(row) == []
    await say(services, CUST, "/paper")  # a stranger
    assert await user_by_tg(services, CUST) is None


def test_work_order_pieces_fit_telegram_even_when_escaped() -> None:
    from bot.flows.customer import CHUNK, _chunks, _size

    text = "Work done: " + "&<>" * 2000 + "\nParts: none"
    pieces = _chunks(text)
    assert len(pieces) > 1 and all(_size(p) <= CHUNK for p in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    assert _chunks("one\n\nthree") == ["one\n\nthree"]
