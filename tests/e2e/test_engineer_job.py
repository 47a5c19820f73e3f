"""Issue 3 end to end: a REST dispatch goes from offer to awaiting sign-off over real HTTP.

One engineer declines, one lets the offer time out (OFFER_TIMEOUT shrunk through settings), the
third takes the job; the bot process restarts in the middle (an update arrives while it is
down); the window ends without a check-in (late alert, customer-facing new ETA); then arrival
and the whole work report.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.db.models import Dispatch, DispatchEvent, Timer
from tests.e2e.conftest import Harness
from tests.e2e.test_foundation import DISPATCH
from tests.helpers import new_staff

SITE = (DISPATCH["latitude"], DISPATCH["longitude"])


async def join(harness: Harness, name: str, role: str = "engineer", skills=("repair",)):
    tg = harness.tg
    assert harness.bot is not None
    new = await new_staff(harness.bot.services, role, name, tuple(skills))
    user = tg.user(first_name=name.split()[0])
    await user.send(f"/start {new.code}")
    await tg.wait_for(user.id, "/help")
    return user


async def test_a_job_from_offer_to_awaiting_signoff(harness: Harness) -> None:
    tg = harness.tg
    await harness.start(offer_timeout="2s")
    boss = await join(harness, "Zhou Min", "supervisor", ())
    anna = await join(harness, "Anna Li")
    bob = await join(harness, "Bob Wu")
    chen = await join(harness, "Chen Jie")

    start = datetime.now(UTC) + timedelta(hours=1)
    body = {
        **DISPATCH,
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=2)).isoformat(),
    }
    async with harness.api() as api:
        created = (await api.post("/api/v1/dispatches", json=body)).json()
    number, job_id = created["number"], created["id"]

    # 1. Anna declines with a reason.
    await tg.wait_for(anna.id, number)
    await anna.press("✖️ Decline")
    await tg.wait_for(anna.id, "Why are you declining")
    await anna.send("Van is in the garage")
    await tg.wait_for_edit(anna.id, "You declined")

    # 2. Bob does not answer: withdrawn after OFFER_TIMEOUT, his message edited.
    bob_offer = await tg.wait_for(bob.id, number)
    withdrawn = await tg.wait_for_edit(bob.id, "withdrawn", timeout=10)
    assert withdrawn["message_id"] == bob_offer["message_id"]
    assert tg.buttons(withdrawn) == []
    late_press_mark = tg.mark(bob.id)
    await bob.press_data(
        bob_offer["reply_markup"]["inline_keyboard"][0][0]["callback_data"], bob_offer["message_id"]
    )
    answer = await tg.wait_for_callback_answer(tg.updates[-1]["callback_query"]["id"])
    assert "no longer open" in (answer.text or "")
    assert len(tg.messages(bob.id)) == late_press_mark  # nothing else sent to Bob

    # 3. Chen accepts and is asked to call the customer.
    await tg.wait_for(chen.id, number)
    await chen.press("✅ Accept")
    call = await tg.wait_for(chen.id, "call the customer")
    assert "+8613800138000" in call["text"]

    # 4. Restart: Chen taps while the bot is down; nothing is lost.
    await harness.stop()
    await chen.press("📞 I reached the customer")
    await harness.start()
    eta_prompt = await tg.wait_for(chen.id, "What ETA", timeout=10)
    await chen.press(tg.buttons(eta_prompt)[0][0], eta_prompt)
    await tg.wait_for(chen.id, "saved for job")

    # 5. The window ends without a check-in.
    harness.clock.shift(timedelta(hours=3, minutes=1))
    await tg.wait_for(chen.id, "Reminder: the window", timeout=10)
    await tg.wait_for(boss.id, "has not arrived", timeout=10)
    alert = tg.messages(boss.id)[-1]
    assert tg.buttons(alert) == [["🔔 Remind the engineer", "🔀 Reassign"]]
    late_eta = await tg.wait_for(chen.id, "When will you arrive", timeout=10)
    await chen.press(tg.buttons(late_eta)[0][0], late_eta)
    await tg.wait_for(chen.id, "saved for job")

    # 6. Arrival: a location near the site.
    await chen.share_location(SITE[0] + 0.001, SITE[1])
    checked = await tg.wait_for(chen.id, "Checked in")
    assert "outside the promised window" in checked["text"]

    # 7. The work report, with a return visit.
    await tg.wait_for(chen.id, "what is the outcome")
    await chen.press("🔁 Needs a return visit")
    await tg.wait_for(chen.id, "Describe the work")
    await chen.send("Diagnosed a failed compressor; ordered a replacement.")
    await tg.wait_for(chen.id, "Which parts")
    await chen.press("No parts used")
    await tg.wait_for(chen.id, "Send photos")
    await chen.send_photo(caption="Compressor label")
    await tg.wait_for(chen.id, "Photo 1 saved")
    await chen.send_photo(caption="Wiring")
    await tg.wait_for(chen.id, "Photo 2 saved")
    await chen.press("Done with photos")
    await tg.wait_for(chen.id, "extra work")
    await chen.send("Replace the worn door seal")
    summary = await tg.wait_for(chen.id, "check the report")
    assert "Photos: 2" in summary["text"]
    await chen.press("📨 Submit the report")
    done = await tg.wait_for(chen.id, "submitted")
    assert "follow-up job" in done["text"]
    await tg.wait_for(chen.id, "New job offered")  # the follow-up, to the same engineer
    await tg.wait_idle()

    services = harness.bot.services
    async with services.uow() as uow:
        job = await uow.session.get(Dispatch, job_id)
        kinds = list(
            await uow.session.scalars(
                select(DispatchEvent.kind)
                .where(DispatchEvent.dispatch_id == job_id)
                .order_by(DispatchEvent.id)
            )
        )
        timers = list(
            await uow.session.scalars(select(Timer).where(Timer.subject == f"dispatch:{job_id}"))
        )
        follow_up = await uow.session.scalar(select(Dispatch).where(Dispatch.parent_id == job_id))
    assert job is not None and job.status == "awaiting_signoff"
    assert job.report["final"]["outcome"] == "return_visit"
    assert len(job.report["final"]["photos"]) == 2
    assert job.arrival["in_window"] is False and job.arrival["distance_m"] < 500
    assert kinds[:4] == ["created", "offered", "declined", "offered"]
    assert kinds.count("offer_expired") == 1 and kinds.count("accepted") == 1
    for kind in (
        "customer_contacted",
        "arrival_reminder_sent",
        "late",
        "new_eta",
        "arrived",
        "report_submitted",
        "follow_up_created",
    ):
        assert kinds.count(kind) == 1, kind
    fired = Counter(t.kind for t in timers if t.status == "done")
    assert fired == Counter({"offer_timeout": 1, "arrival_reminder": 1, "arrival_overdue": 1})
    assert not [t for t in timers if t.status == "pending"]
    assert follow_up is not None and follow_up.requested_engineer_id == job.engineer_id
    assert not tg.internal_errors
