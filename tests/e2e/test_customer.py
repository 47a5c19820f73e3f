"""Issue 4 end to end, over the real runtime (aiogram and PTB) and the fake Bot API: a customer
shares their phone, follows the job step by step, signs off (and gets the PDF) and rates it; or
rejects the work order and a complaint appears; forged buttons reach nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from pypdf import PdfReader
from sqlalchemy import select

from bot.db.models import Dispatch
from bot.db.models.complaints import Complaint
from bot.db.models.customer import Feedback, SignOff
from bot.fakeapi import FakeTelegram
from tests.e2e.conftest import Harness
from tests.e2e.test_engineer_job import join
from tests.e2e.test_foundation import DISPATCH

SITE = (DISPATCH["latitude"], DISPATCH["longitude"])


def is_document(message: dict[str, Any]) -> bool:
    return "document" in message


async def job_for_a_linked_customer(harness: Harness) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Supervisor and engineer in chat; the customer shares their phone before the job is taken."""
    tg = harness.tg
    boss = await join(harness, "Zhou Min", "supervisor", ())
    eng = await join(harness, "Chen Jie")
    # Telegram sends the account's own number without the "+"
    customer = tg.user(first_name="Na", phone_number="8613800138000")
    start = datetime.now(UTC) + timedelta(hours=1)
    body = {
        **DISPATCH,
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=2)).isoformat(),
    }
    async with harness.api() as api:
        created = (await api.post("/api/v1/dispatches", json=body)).json()
    await customer.send("/start")
    await tg.wait_for(customer.id, "share your phone number")
    await customer.tap("📱 Share my phone number")
    linked = await tg.wait_for(customer.id, "You now follow")
    assert created["number"] in linked["text"]
    return boss, eng, customer, created


async def work_until_the_work_order(tg: FakeTelegram, eng: Any, customer: Any, number: str) -> None:
    """The engineer's whole job; the customer hears of each step, in order."""
    await tg.wait_for(eng.id, number)
    await eng.press("✅ Accept")
    assigned = await tg.wait_for(customer.id, "has an engineer")
    assert "Chen Jie (staff ID E0001)" in assigned["text"] and number in assigned["text"]
    await tg.wait_for(eng.id, "call the customer")
    await eng.press("📞 I reached the customer")
    eta = await tg.wait_for(eng.id, "What ETA")
    eta_label = tg.buttons(eta)[0][0]
    await eng.press(eta_label, eta)
    contacted = await tg.wait_for(customer.id, "expects to arrive at")
    assert eta_label.removeprefix("ETA ") in contacted["text"]
    await tg.wait_for(eng.id, "saved for job")
    await eng.press("🚗 On my way")
    omw = await tg.wait_for(eng.id, "What ETA")
    await eng.press(tg.buttons(omw)[0][0], omw)
    await tg.wait_for(customer.id, "is on the way")
    await eng.share_location(SITE[0] + 0.001, SITE[1])
    arrived = await tg.wait_for(customer.id, "has arrived")
    assert "Chen Jie" in arrived["text"] and "E0001" in arrived["text"]
    assert number in arrived["text"]
    await tg.wait_for(eng.id, "what is the outcome")
    await eng.press("✅ Fixed")
    await tg.wait_for(eng.id, "Describe the work")
    await eng.send("Replaced the compressor relay")
    await tg.wait_for(eng.id, "Which parts")
    await eng.press("No parts used")
    await tg.wait_for(eng.id, "Send photos")
    await eng.send_photo(caption="After")
    await tg.wait_for(eng.id, "Photo 1 saved")
    await eng.press("Done with photos")
    await tg.wait_for(eng.id, "extra work")
    await eng.press("No extra work found")
    await tg.wait_for(eng.id, "check the report")
    await eng.press("📨 Submit the report")
    await tg.wait_for(eng.id, "submitted")
    await tg.wait_for(customer.id, lambda m: "photo" in m)  # the job's photo, before the order


async def test_customer_links_follows_signs_off_and_rates(harness: Harness) -> None:
    tg = harness.tg
    await harness.start()
    boss, eng, customer, created = await job_for_a_linked_customer(harness)
    number = created["number"]
    await work_until_the_work_order(tg, eng, customer, number)

    order = await tg.wait_for(customer.id, "Please check the work order")
    assert "Replaced the compressor relay" in order["text"]
    assert tg.buttons(order) == [["✅ Confirm", "✖️ Reject"]]
    await customer.press("✅ Confirm", order)
    # the first PDF of a process builds the font cache (a few seconds): hence the timeout
    await tg.wait_for(customer.id, "signed off with your Telegram account", timeout=30)
    document = await tg.wait_for(customer.id, is_document)
    pdf = tg.file_bytes(document["document"]["file_id"])
    assert pdf.startswith(b"%PDF") and document["document"]["file_name"].endswith(".pdf")
    assert number in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    await tg.wait_for(eng.id, "customer signed off")
    await tg.wait_for(boss.id, is_document)

    rating = await tg.wait_for(customer.id, "How was the service")
    assert tg.buttons(rating) == [["1 ⭐", "2 ⭐", "3 ⭐", "4 ⭐", "5 ⭐"]]
    await customer.press("5 ⭐", rating)
    await tg.wait_for_edit(customer.id, "5 of 5")
    await tg.wait_for(customer.id, "add a comment")
    await customer.send("Quick and tidy")
    await tg.wait_for(customer.id, "Thank you for your feedback")
    await tg.wait_idle()
    # DOMAIN §7: the engineer's chat keeps the job, not the customer's contact and address
    engineer_sees = tg.messages(eng.id)
    assert not [m for m in engineer_sees if DISPATCH["address"] in m.get("text", "")]
    assert not [m for m in engineer_sees if "+8613800138000" in m.get("text", "")]
    scrubbed = [m for m in engineer_sees if f"Job {number} is finished" in m.get("text", "")]
    assert len(scrubbed) == 4 and not any(tg.buttons(m) for m in scrubbed)

    assert harness.bot is not None
    async with harness.bot.services.uow() as uow:
        job = await uow.session.get(Dispatch, created["id"])
        signoff = await uow.session.scalar(select(SignOff).where(SignOff.dispatch_id == job.id))
        feedback = await uow.session.scalar(select(Feedback).where(Feedback.dispatch_id == job.id))
    assert job is not None and job.status == "signed_off"
    assert signoff is not None and signoff.telegram_id == customer.id
    assert signoff.text in order["text"]
    assert feedback is not None and (feedback.rating, feedback.comment) == (5, "Quick and tidy")
    assert not tg.internal_errors


async def test_customer_rejects_and_a_complaint_appears(harness: Harness) -> None:
    tg = harness.tg
    await harness.start()
    boss, eng, customer, created = await job_for_a_linked_customer(harness)
    await work_until_the_work_order(tg, eng, customer, created["number"])
    order = await tg.wait_for(customer.id, "Please check the work order")

    # Another customer forges the buttons of this work order: nothing happens.
    intruder = tg.user(first_name="Eve", phone_number="8613911112222")
    await intruder.send("/start")
    await tg.wait_for(intruder.id, "share your phone number")
    await intruder.tap("📱 Share my phone number")
    await tg.wait_for(intruder.id, "could not find an open service job")
    data = order["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    forged = await intruder.press_data(data)
    answer = await tg.wait_for_callback_answer(forged["callback_query"]["id"])
    assert answer.show_alert and "not yours" in (answer.text or "")

    await customer.press("✖️ Reject", order)
    await tg.wait_for(customer.id, "What is wrong")
    await customer.send("The unit still leaks water")
    await tg.wait_for(customer.id, "a complaint has been opened")
    await tg.wait_for(eng.id, "rejected the sign-off")
    await tg.wait_idle()

    assert harness.bot is not None
    async with harness.bot.services.uow() as uow:
        complaint = await uow.session.scalar(
            select(Complaint).where(Complaint.dispatch_id == created["id"])
        )
        job = await uow.session.get(Dispatch, created["id"])
    assert complaint is not None
    assert (complaint.source, complaint.description) == (
        "signoff_rejected",
        "The unit still leaks water",
    )
    assert job is not None and job.status == "awaiting_signoff"
    assert any(complaint.number in (m.get("text") or "") for m in tg.messages(customer.id))
    assert any(complaint.number in (m.get("text") or "") for m in tg.messages(boss.id))
    assert not any(created["number"] in (m.get("text") or "") for m in tg.messages(intruder.id))
    assert not tg.internal_errors
