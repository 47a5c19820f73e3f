"""Issue 5 end to end over real HTTP: a stranger complains in chat, a supervisor takes it, they
talk through the bot, the complaint is resolved and the customer confirms it is solved."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.models import User
from bot.db.models.complaints import Complaint, ComplaintEvent
from tests.e2e.conftest import Harness
from tests.e2e.test_engineer_job import join


async def test_a_complaint_from_intake_to_a_satisfied_call_back(harness: Harness) -> None:
    tg = harness.tg
    await harness.start()
    boss = await join(harness, "Zhou Min", "supervisor", ())
    customer = tg.user(first_name="Li", phone_number="+8613900001111")

    # Intake: a stranger gives name and phone, a category and a description in a few taps.
    await customer.send("/complaint")
    await tg.wait_for(customer.id, "tell us your name")
    await customer.send("Li Na")
    await tg.wait_for(customer.id, "share your phone number")
    await customer.tap("📱 Share my phone number")
    await tg.wait_for(customer.id, "What is your complaint about")
    await customer.press("Quality of work")
    await tg.wait_for(customer.id, "describe what happened")
    await customer.send("The chiller still leaks after the repair.")
    registered = await tg.wait_for(customer.id, "registered as")
    assert "respond by" in registered["text"]
    await customer.send_photo(caption="Water under the unit")
    await tg.wait_for(customer.id, "2 messages so far")
    await customer.press("✅ Done")
    await tg.wait_for(customer.id, "is complete")

    # First responder: the supervisor takes it; the announcement shows who took it.
    announced = await tg.wait_for(boss.id, "New complaint")
    assert "+8613900001111" not in announced["text"]
    await boss.press("🙋 Take", announced)
    edited = await tg.wait_for_edit(boss.id, "taken by Zhou Min")
    assert edited["message_id"] == announced["message_id"] and tg.buttons(edited) == []
    await tg.wait_for(boss.id, "You own this complaint")
    await tg.wait_for(customer.id, "Zhou Min is handling your complaint")

    # Replies through the bot, both ways.
    await boss.press("💬 Message the customer")
    await tg.wait_for(boss.id, "Write your message")
    await boss.send("We will replace the seal tomorrow morning. Is 9:00 fine?")
    relayed = await tg.wait_for(customer.id, "replace the seal tomorrow")
    assert "Zhou Min" in relayed["text"]
    await tg.wait_for(boss.id, "Sent to the customer")
    await customer.send("Yes, 9:00 is fine.")
    await tg.wait_for(boss.id, "Yes, 9:00 is fine.")
    await tg.wait_for(customer.id, "Sent to Zhou Min")

    # Resolution and the satisfaction call-back.
    await boss.press("✅ Resolve")
    await tg.wait_for(boss.id, "What solution")
    await boss.send("Seal replaced on site; the visit is free of charge.")
    await tg.wait_for(boss.id, "When will the solution be completed")
    await boss.press("Already done")
    resolved = await tg.wait_for(customer.id, "is resolved")
    assert "Seal replaced on site" in resolved["text"]
    await tg.wait_for(customer.id, "is it solved?")
    await customer.press("✅ Solved")
    await tg.wait_for(customer.id, "How satisfied")
    await customer.press("⭐⭐⭐⭐⭐")
    await tg.wait_for(customer.id, "Thank you for your rating")
    await tg.wait_for(boss.id, "confirmed that complaint")
    await tg.wait_idle()

    assert harness.bot is not None
    async with harness.bot.services.uow() as uow:
        complaint = await uow.session.scalar(select(Complaint))
        owner = await uow.session.scalar(select(User).where(User.telegram_id == boss.id))
        person = await uow.session.scalar(select(User).where(User.telegram_id == customer.id))
        history = list(
            await uow.session.scalars(select(ComplaintEvent).order_by(ComplaintEvent.id))
        )
    assert complaint is not None and owner is not None and person is not None
    assert (complaint.status, complaint.satisfied, complaint.rating) == ("closed", True, 5)
    assert complaint.owner_id == owner.id and complaint.customer_user_id == person.id
    assert (person.role, person.name, person.phone) == ("customer", "Li Na", "+8613900001111")
    assert len(complaint.attachments) == 1
    assert [e.kind for e in history] == [
        "opened",
        "customer_message",
        "intake_done",
        "taken",
        "owner_message",
        "customer_message",
        "resolved",
        "callback_sent",
        "callback_solved",
        "closed",
        "rated",
    ]
    actors = {e.kind: e.actor_id for e in history}
    assert actors["taken"] == owner.id and actors["rated"] == person.id
    assert not tg.internal_errors
