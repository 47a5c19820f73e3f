"""DOMAIN.md §4: major faults — reported by any staff member, sent at once to the managers and
the account owner, tracked by the supervisor, closed with the fault analysis report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.core.enums import Priority
from bot.db.models import Customer, Dispatch, Outbox, User
from bot.db.models.supervision import FaultEvent, MajorFault
from tests.conftest import outbox_rows, texts_to
from tests.helpers import new_dispatch, onboard, press, say

ENGINEER, SUPERVISOR, MANAGER, MANAGER2, OWNER, CUSTOMER, STRANGER = 11, 21, 31, 32, 41, 51, 99


async def team(services) -> dict[str, User]:
    people = {
        "engineer": (await onboard(services, ENGINEER, "engineer", "Wang Wei")).user,
        "supervisor": (await onboard(services, SUPERVISOR, "supervisor", "Zhou Min", ())).user,
        "manager": (await onboard(services, MANAGER, "manager", "Liu Yang", ())).user,
        "manager2": (await onboard(services, MANAGER2, "manager", "Sun Li", ())).user,
        "owner": (await onboard(services, OWNER, "dispatcher", "Gao Fei", ())).user,
    }
    async with services.uow() as uow:
        uow.session.add(
            Customer(
                name="Acme Foods",
                account_owner_id=people["owner"].id,
                created_at=uow.clock.now(),
            )
        )
        uow.session.add(Customer(name="Acme Logistics", created_at=uow.clock.now()))
        uow.session.add(Customer(name="Brightway Hotel", created_at=uow.clock.now()))
        await uow.commit()
    return people


async def link_customer_user(services, dispatch_id: int) -> User:
    """A customer contact who follows the job in chat."""
    async with services.uow() as uow:
        user = User(
            telegram_id=CUSTOMER,
            chat_id=CUSTOMER,
            role="customer",
            name="Li Na",
            active=True,
            on_duty=False,
            created_at=uow.clock.now(),
        )
        uow.session.add(user)
        await uow.session.flush()
        job = await uow.session.get(Dispatch, dispatch_id)
        assert job is not None
        job.customer_user_id = user.id
        await uow.commit()
        return user


async def faults(services) -> list[MajorFault]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(MajorFault).order_by(MajorFault.id)))


async def events(services, fault_id: int) -> list[FaultEvent]:
    async with services.uow() as uow:
        return list(
            await uow.session.scalars(
                select(FaultEvent).where(FaultEvent.fault_id == fault_id).order_by(FaultEvent.id)
            )
        )


async def report_fault(services, who: int = ENGINEER, customer: str = "Acme Foods") -> MajorFault:
    await say(services, who, "/fault new")
    await press(services, who, "fltn:0:now")
    await say(services, who, "Line 3 of the cold store, 88 Century Avenue")
    await say(services, who, "All compressors stopped; temperature rising 1°C every 10 minutes")
    await say(services, who, "Two engineers on the way; rental chiller ordered")
    await say(services, who, customer)
    return (await faults(services))[-1]


async def test_an_engineer_reports_a_fault_and_it_goes_at_once_to_managers_and_account_owner(
    services,
) -> None:
    people = await team(services)
    await say(services, ENGINEER, "/fault")  # engineers start a report straight away
    assert "When did it begin" in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "09:15")
    await say(services, ENGINEER, "Line 3 of the cold store")
    await say(services, ENGINEER, "All compressors stopped")
    await say(services, ENGINEER, "Two engineers on the way")
    await say(services, ENGINEER, "acme foods")
    [fault] = await faults(services)
    assert fault.number == "MF000001" and fault.status == "open"
    assert fault.place == "Line 3 of the cold store"
    assert fault.symptoms == "All compressors stopped" and fault.plan == "Two engineers on the way"
    # 09:15 in Asia/Shanghai; the clock stands at 2026-11-30 09:00 local, so: yesterday 09:15
    assert fault.occurred_at == datetime(2026, 11, 29, 1, 15, tzinfo=UTC)
    async with services.uow() as uow:
        acme = await uow.session.scalar(select(Customer).where(Customer.name == "Acme Foods"))
    assert acme is not None and fault.customer_id == acme.id

    for chat in (MANAGER, MANAGER2, OWNER, SUPERVISOR):
        [alert] = [
            r
            for r in await outbox_rows(services, chat)
            if "MAJOR FAULT" in r.payload.get("text", "")
        ]
        assert alert.priority == Priority.URGENT
        assert "All compressors stopped" in alert.payload["text"]
        assert "Acme Foods" in alert.payload["text"]
        labels = [
            b["text"]
            for row in alert.payload.get("reply_markup", {}).get("inline_keyboard", [])
            for b in row
        ]
        assert labels == ["📝 Add an update", "✅ Close with the fault analysis report"]
    reply = (await texts_to(services, ENGINEER))[-1]
    assert "MF000001 reported" in reply and "4 people were told" in reply
    assert [e.kind for e in await events(services, fault.id)] == ["reported", "alerted"]
    assert people["engineer"].id == fault.reported_by


async def test_bad_answers_get_a_polite_reply_and_change_nothing(services) -> None:
    await team(services)
    await say(services, ENGINEER, "/fault")
    for bad in ("sometime this morning", "25:99", "2026-02-30 10:00"):
        await say(services, ENGINEER, bad)
        assert "could not read that time" in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "2026-12-24 10:00")  # the clock is at 2026-11-30
    assert "in the future" in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "2026-09-01 10:00")
    assert "more than 30 days ago" in (await texts_to(services, ENGINEER))[-1]
    await press(services, ENGINEER, "fltn:0:nocust")  # not at that step yet
    answers = [
        r for r in await outbox_rows(services, ENGINEER) if r.method == "answerCallbackQuery"
    ]
    assert answers[-1].payload["text"] == "This button is no longer valid."
    await press(services, ENGINEER, "fltn:0:now")
    await say(services, ENGINEER, "   ")
    assert "That was empty" in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "x" * 2001)
    assert "at most 2000 characters" in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "Line 3")
    await say(services, ENGINEER, "Stopped")
    await say(services, ENGINEER, "Going there")
    await say(services, ENGINEER, "Nobody Ltd")
    assert 'No customer matches "Nobody Ltd"' in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "FB999999")
    assert "There is no job FB999999" in (await texts_to(services, ENGINEER))[-1]
    await say(services, ENGINEER, "Acme")  # two match: buttons to choose
    rows = await outbox_rows(services, ENGINEER)
    choose = rows[-1]
    assert "Several customers match" in choose.payload["text"]
    labels = [b["text"] for row in choose.payload["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["Acme Foods", "Acme Logistics", "No customer"]
    assert await faults(services) == []
    await press(services, ENGINEER, "fltn:0:nocust")
    [fault] = await faults(services)
    assert fault.customer_id is None


async def test_a_job_number_links_the_fault_to_its_customer(services) -> None:
    await team(services)
    job = await new_dispatch(services)
    fault = await report_fault(services, customer=job.number)
    assert fault.dispatch_id == job.id and fault.customer_id == job.customer_id


async def test_customers_and_strangers_cannot_see_or_touch_faults(services) -> None:
    await team(services)
    fault = await report_fault(services)
    job = await new_dispatch(services)
    await link_customer_user(services, job.id)
    for who in (CUSTOMER, STRANGER):
        await say(services, who, "/fault")
        await press(services, who, f"flt:{fault.id}:upd")
        await press(services, who, "fltn:0:new")
    assert "Sorry, this is not available to you." in (await texts_to(services, CUSTOMER))[-1]
    for who in (CUSTOMER, STRANGER):
        texts = " ".join(await texts_to(services, who))
        assert "MF000001" not in texts and "compressors" not in texts
        answers = [r for r in await outbox_rows(services, who) if r.method == "answerCallbackQuery"]
        assert len(answers) == 2 and all(a.payload["show_alert"] for a in answers)
    # an engineer may report but not track
    await press(services, ENGINEER, f"flt:{fault.id}:close")
    answers = [
        r for r in await outbox_rows(services, ENGINEER) if r.method == "answerCallbackQuery"
    ]
    assert answers[-1].payload["text"] == "Sorry, this is not available to you."
    assert [e.kind for e in await events(services, fault.id)] == ["reported", "alerted"]


async def test_the_supervisor_lists_open_faults_and_adds_updates(services) -> None:
    await team(services)
    fault = await report_fault(services)
    await say(services, SUPERVISOR, "/fault")
    texts = await texts_to(services, SUPERVISOR)
    assert "Open major faults: 1" in texts[-2]
    assert "MF000001" in texts[-1] and "Line 3 of the cold store" in texts[-1]
    await press(services, SUPERVISOR, f"flt:{fault.id}:upd")
    assert "Type the update for major fault MF000001" in (await texts_to(services, SUPERVISOR))[-1]
    services.clock.advance(timedelta(minutes=20))
    await say(services, SUPERVISOR, "Rental chiller running; temperature falling")
    assert "Update saved" in (await texts_to(services, SUPERVISOR))[-1]
    for chat in (MANAGER, MANAGER2, OWNER, ENGINEER):
        assert "Rental chiller running" in (await texts_to(services, chat))[-1]
    ev = await events(services, fault.id)
    assert [e.kind for e in ev] == ["reported", "alerted", "update"]
    assert ev[-1].text == "Rental chiller running; temperature falling"
    await say(services, SUPERVISOR, "/fault")
    assert "Rental chiller running" in (await texts_to(services, SUPERVISOR))[-1]


async def test_closing_takes_the_analysis_report_which_goes_to_the_customer(services) -> None:
    await team(services)
    job = await new_dispatch(services)
    customer = await link_customer_user(services, job.id)
    fault = await report_fault(services, customer=job.number)
    await press(services, SUPERVISOR, f"flt:{fault.id}:send")  # no analysis yet
    assert (await faults(services))[0].status == "open"
    await press(services, SUPERVISOR, f"flt:{fault.id}:close")
    assert "1/5: What was the impact?" in (await texts_to(services, SUPERVISOR))[-1]
    answers = {
        "impact": "Cold store down for 3 hours; no goods lost",
        "handling": "Rental chiller installed within 2 hours",
        "root_cause": "Power surge burnt the main contactor",
        "corrective": "Contactor replaced; surge protector fitted",
        "preventive": "Quarterly inspection of the power supply",
    }
    for text in answers.values():
        await say(services, SUPERVISOR, text)
    summary = await outbox_rows(services, SUPERVISOR)
    assert "Please check the fault analysis report" in summary[-1].payload["text"]
    assert (await faults(services))[0].status == "open"  # not before the button
    await press(services, SUPERVISOR, f"flt:{fault.id}:send")
    [closed] = await faults(services)
    assert closed.status == "closed" and closed.analysis == answers
    assert closed.closed_at == services.clock.now()
    to_customer = (await texts_to(services, CUSTOMER))[-1]
    assert "Fault analysis report MF000001" in to_customer
    assert "Power surge burnt the main contactor" in to_customer
    assert "Quarterly inspection of the power supply" in to_customer
    for chat in (MANAGER, OWNER, ENGINEER, SUPERVISOR):
        assert "is closed by Zhou Min" in (await texts_to(services, chat))[-1]
    kinds = [e.kind for e in await events(services, fault.id)]
    assert kinds == ["reported", "alerted", "closed", "analysis_sent"]
    assert (await events(services, fault.id))[-1].data == {"customers": 1}
    assert customer.id is not None
    # closed is closed: the buttons now only say so
    await press(services, SUPERVISOR, f"flt:{fault.id}:upd")
    answer = [
        r for r in await outbox_rows(services, SUPERVISOR) if r.method == "answerCallbackQuery"
    ][-1]
    assert "already closed" in answer.payload["text"]


async def test_fault_alerts_jump_the_queue(services) -> None:
    await team(services)
    await report_fault(services)
    async with services.uow() as uow:
        alerts = list(
            await uow.session.scalars(
                select(Outbox).where(Outbox.chat_id == MANAGER, Outbox.method == "sendMessage")
            )
        )
    assert alerts[-1].priority == Priority.URGENT
    assert alerts[-1].not_before == services.clock.now()
