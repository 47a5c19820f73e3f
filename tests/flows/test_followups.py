"""DOMAIN.md §3, follow-ups (回访): after a job, monthly then quarterly after a delivery, the
December outreach, answers, and the supervisors' list of who did not answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.bootstrap import build_services
from bot.core.events import Kind
from bot.db.models import Customer, Dispatch, Timer, User
from bot.db.models.followups import FollowUp
from bot.flows import followups
from bot.flows.followups import add_months, periodic_dates
from bot.scheduler.sweep import ensure_recurring, sweep
from bot.services.context import Services
from tests.conftest import outbox_rows, reset_database, texts_to
from tests.helpers import new_dispatch, onboard, press, say, send_kind


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(*args: int) -> datetime:
    """A wall time in Asia/Shanghai (TIMEZONE in the tests), as UTC."""
    return datetime(*args, tzinfo=UTC) - timedelta(hours=8)


async def add_customer_user(
    services: Services, telegram_id: int, *, locale: str = "en", name: str = "Li Na"
) -> User:
    async with services.uow() as uow:
        user = User(
            role="customer",
            name=name,
            telegram_id=telegram_id,
            chat_id=telegram_id,
            phone="+8613800138000",
            locale=locale,
            active=True,
            on_duty=False,
            created_at=uow.clock.now(),
        )
        uow.session.add(user)
        await uow.commit()
        return user


async def completed_job(services: Services, user: User | None = None, **fields: Any) -> Dispatch:
    """A job as the sign-off leaves it: linked to its customer in chat, then job_completed."""
    dispatch = await new_dispatch(services, **fields)
    async with services.uow() as uow:
        job = await uow.session.get(Dispatch, dispatch.id)
        assert job is not None
        job.customer_user_id = user.id if user else None
        job.closed_at = uow.clock.now()
        await followups.job_completed(uow, job)
        await uow.commit()
        return job


async def all_followups(services: Services) -> list[FollowUp]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(FollowUp).order_by(FollowUp.id)))


async def the_followup(services: Services, followup_id: int) -> FollowUp:
    async with services.uow() as uow:
        row = await uow.session.get(FollowUp, followup_id)
        assert row is not None
        return row


def button_data(row: Any) -> list[str]:
    markup = row.payload.get("reply_markup", {}).get("inline_keyboard", [])
    return [button["callback_data"] for line in markup for button in line]


# ---- month arithmetic ------------------------------------------------------------------------


def test_a_delivery_on_31_january_is_followed_up_at_each_month_end(make_settings) -> None:
    settings = make_settings()
    delivered = local(2027, 1, 31, 15, 0)
    dates = periodic_dates(delivered, "Asia/Shanghai", settings, 16)
    assert dates == [
        local(2027, 2, 28, 15, 0),
        local(2027, 3, 31, 15, 0),
        local(2027, 4, 30, 15, 0),
        local(2027, 5, 31, 15, 0),
        local(2027, 6, 30, 15, 0),
        local(2027, 7, 31, 15, 0),
        local(2027, 8, 31, 15, 0),
        local(2027, 9, 30, 15, 0),
        local(2027, 10, 31, 15, 0),
        local(2027, 11, 30, 15, 0),
        local(2027, 12, 31, 15, 0),
        local(2028, 1, 31, 15, 0),  # twelve months: the first year is over
        local(2028, 4, 30, 15, 0),  # then quarterly
        local(2028, 7, 31, 15, 0),
        local(2028, 10, 31, 15, 0),
        local(2029, 1, 31, 15, 0),
    ]
    leap = periodic_dates(local(2028, 1, 31, 9, 0), "Asia/Shanghai", settings, 2)
    assert leap == [local(2028, 2, 29, 9, 0), local(2028, 3, 31, 9, 0)]


def test_follow_ups_run_across_a_year_boundary(make_settings) -> None:
    settings = make_settings()
    assert periodic_dates(local(2026, 11, 15, 10, 0), "Asia/Shanghai", settings, 3) == [
        local(2026, 12, 15, 10, 0),
        local(2027, 1, 15, 10, 0),
        local(2027, 2, 15, 10, 0),
    ]
    assert periodic_dates(local(2026, 12, 31, 10, 0), "Asia/Shanghai", settings, 2) == [
        local(2027, 1, 31, 10, 0),
        local(2027, 2, 28, 10, 0),
    ]
    # the delivery's local date counts: 31 Dec 20:00 UTC is already 1 January in Shanghai
    assert periodic_dates(utc(2026, 12, 31, 20, 0), "Asia/Shanghai", settings, 1) == [
        local(2027, 2, 1, 4, 0)
    ]
    assert add_months(datetime(2026, 8, 31), 6) == datetime(2027, 2, 28)


def test_the_rhythm_is_a_setting(make_settings) -> None:
    settings = make_settings(followup_monthly_months=2, followup_later_months=6)
    assert periodic_dates(local(2027, 1, 10, 9, 0), "Asia/Shanghai", settings, 4) == [
        local(2027, 2, 10, 9, 0),
        local(2027, 3, 10, 9, 0),
        local(2027, 9, 10, 9, 0),
        local(2028, 3, 10, 9, 0),
    ]


# ---- the satisfaction follow-up ------------------------------------------------------------


async def test_the_satisfaction_follow_up_is_asked_the_next_day_once(services, clock) -> None:
    customer = await add_customer_user(services, 301)
    job = await completed_job(services, customer)
    [followup] = await all_followups(services)
    assert (followup.kind, followup.status) == ("satisfaction", "scheduled")
    assert followup.due_at == clock.now() + timedelta(days=1)

    async with services.uow() as uow:  # a second call (double sign-off) adds nothing
        await followups.job_completed(uow, job)
        await uow.commit()
    assert len(await all_followups(services)) == 1

    clock.advance(timedelta(hours=23, minutes=59))
    assert await sweep(services) == 0
    clock.advance(timedelta(minutes=1))
    assert await sweep(services) == 1
    [question] = await outbox_rows(services, 301)
    assert f"job {job.number}" in question.payload["text"]
    assert "Is everything working well" in question.payload["text"]
    assert question.priority == 9  # bulk: urgent escalations go first
    assert button_data(question) == [
        f"fu:{followup.id}:ok",
        f"fu:{followup.id}:fix",
        f"fu:{followup.id}:cmp",
    ]
    assert (await the_followup(services, followup.id)).status == "asked"
    clock.advance(timedelta(days=30))
    assert await sweep(services) == 0  # asked once
    assert len(await outbox_rows(services, 301)) == 1


async def test_a_repair_job_gets_no_periodic_follow_ups(services, clock) -> None:
    await completed_job(services, await add_customer_user(services, 301))
    assert [f.kind for f in await all_followups(services)] == ["satisfaction"]


async def test_a_follow_up_waits_for_the_customers_morning(make_settings, clock, db_url) -> None:
    await reset_database(db_url)
    services = build_services(make_settings(quiet_hours="21:00-08:00"), clock=clock)
    try:
        clock.set(local(2026, 12, 1, 22, 30))
        customer = await add_customer_user(services, 301)
        await completed_job(services, customer)
        clock.advance(timedelta(days=1))
        assert await sweep(services) == 1
        [question] = await outbox_rows(services, 301)
        assert question.not_before == local(2026, 12, 3, 8, 0)
    finally:
        await services.sessionmaker.kw["bind"].dispose()


async def test_the_question_is_in_the_customers_language(services, clock) -> None:
    customer = await add_customer_user(services, 302, locale="zh_Hans")
    await completed_job(services, customer)
    clock.advance(timedelta(days=1))
    await sweep(services)
    [question] = await outbox_rows(services, 302)
    assert "维修" in question.payload["text"]  # the service type, as the zh-Hans locale says it


async def test_a_customer_not_in_chat_is_listed_for_a_call(services, clock) -> None:
    await completed_job(services, None)
    clock.advance(timedelta(days=1))
    assert await sweep(services) == 1
    [followup] = await all_followups(services)
    assert followup.status == "unreachable"


# ---- answers --------------------------------------------------------------------------------


async def asked(services: Services, clock, telegram_id: int = 301, **fields: Any) -> FollowUp:
    customer = await add_customer_user(services, telegram_id)
    await completed_job(services, customer, **fields)
    clock.advance(timedelta(days=1))
    await sweep(services)
    return [f for f in await all_followups(services) if f.status == "asked"][-1]


async def test_all_good_is_stored_and_the_question_closed(services, clock) -> None:
    followup = await asked(services, clock)
    await press(services, 301, f"fu:{followup.id}:ok")
    row = await the_followup(services, followup.id)
    assert (row.status, row.answer) == ("answered", "good")
    assert row.answered_at == clock.now()
    edit = [r for r in await outbox_rows(services, 301) if r.method == "editMessageText"]
    assert edit and edit[-1].edit_of == f"fu:{followup.id}"
    assert "all good" in edit[-1].payload["text"]
    assert "reply_markup" not in edit[-1].payload  # the buttons are gone

    await press(services, 301, f"fu:{followup.id}:fix")  # a second answer is refused
    answers = [r for r in await outbox_rows(services, 301) if r.method == "answerCallbackQuery"]
    assert "already answered" in answers[-1].payload["text"]
    assert (await the_followup(services, followup.id)).answer == "good"


async def test_nobody_else_can_answer_a_follow_up(services, clock) -> None:
    followup = await asked(services, clock)
    await add_customer_user(services, 399, name="Someone else")
    await onboard(services, 11)
    for telegram_id in (399, 11, 12345):
        await press(services, telegram_id, f"fu:{followup.id}:ok")
    for data in (f"fu:{followup.id}:zzz", f"fu:{followup.id}:need", "fu:999:ok", "fu:x:ok"):
        await press(services, 301, data)
    row = await the_followup(services, followup.id)
    assert (row.status, row.answer) == ("asked", None)
    answers = [r for r in await outbox_rows(services, 301) if r.method == "answerCallbackQuery"]
    assert all(a.payload.get("show_alert") for a in answers)


async def test_a_problem_becomes_a_repair_job_offered_to_an_engineer(services, clock) -> None:
    engineer = await onboard(services, 11, skills=("repair",))
    followup = await asked(services, clock, service_type="installation")
    await press(services, 301, f"fu:{followup.id}:fix")
    assert "describe the problem" in (await texts_to(services, 301))[-1]
    await say(services, 301, "  The chiller is leaking water again  ")

    row = await the_followup(services, followup.id)
    assert (row.status, row.answer) == ("answered", "repair")
    assert row.note == "The chiller is leaking water again"
    async with services.uow() as uow:
        repair = await uow.session.scalar(select(Dispatch).where(Dispatch.source == "followup"))
        assert repair is not None
        parent = await uow.session.get(Dispatch, followup.dispatch_id)
    assert row.result_ref == repair.number
    assert (repair.parent_id, repair.service_type, repair.status) == (
        followup.dispatch_id,
        "repair",
        "offered",
    )
    assert repair.description == "The chiller is leaking water again"
    assert repair.customer_user_id == followup.user_id
    assert repair.window_start >= clock.now() + timedelta(days=1)
    assert repair.window_end - repair.window_start == parent.window_end - parent.window_start
    offers = [t for t in await texts_to(services, 11) if repair.number in t]
    assert offers and engineer.user.id
    assert repair.number in (await texts_to(services, 301))[-1]
    await say(services, 301, "hello")  # the conversation is over
    assert len([d for d in await _dispatches(services) if d.source == "followup"]) == 1


async def _dispatches(services: Services) -> list[Dispatch]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(Dispatch)))


async def test_a_problem_can_be_a_complaint(services, clock) -> None:
    from bot.flows import complaints

    if "followup" not in getattr(complaints, "SOURCES", ("followup",)):
        pytest.skip("the complaints area does not take source='followup' yet")
    followup = await asked(services, clock)
    await press(services, 301, f"fu:{followup.id}:cmp")
    await say(services, 301, "The engineer left a mess")
    row = await the_followup(services, followup.id)
    assert (row.status, row.answer) == ("answered", "complaint")
    assert row.result_ref


async def test_bad_descriptions_get_a_polite_answer_and_change_nothing(services, clock) -> None:
    followup = await asked(services, clock)
    await press(services, 301, f"fu:{followup.id}:fix")
    await say(services, 301, "   ")
    assert "empty" in (await texts_to(services, 301))[-1]
    await say(services, 301, "x" * 2001)
    assert "too long" in (await texts_to(services, 301))[-1]
    await send_kind(services, 301, Kind.PHOTO, file_ids=("photo-1",))
    assert "waiting for a text answer" in (await texts_to(services, 301))[-1]
    assert (await the_followup(services, followup.id)).status == "asked"
    assert [d for d in await _dispatches(services) if d.source == "followup"] == []
    await say(services, 301, "/cancel")
    await say(services, 301, "it broke")  # not in the conversation any more
    assert (await the_followup(services, followup.id)).status == "asked"


# ---- installations: monthly, then quarterly -----------------------------------------------


async def periodic(services: Services) -> list[FollowUp]:
    return [f for f in await all_followups(services) if f.kind == "periodic"]


async def test_an_installation_is_followed_up_monthly_then_quarterly(services, clock) -> None:
    clock.set(local(2027, 1, 31, 15, 0))
    customer = await add_customer_user(services, 301)
    await completed_job(services, customer, service_type="installation")
    expected = periodic_dates(clock.now(), "Asia/Shanghai", services.settings, 14)
    seen = []
    for due in expected:
        pending = [f for f in await periodic(services) if f.status == "scheduled"]
        assert len(pending) == 1  # never more than the next one
        assert pending[0].due_at == due
        clock.set(due)
        await sweep(services)
        seen.append(due)
    assert [f.due_at for f in await periodic(services)][:14] == seen
    assert [f.seq for f in await periodic(services)] == [*range(1, 13), 15, 18, 21]
    questions = [t for t in await texts_to(services, 301) if "regular follow-up" in t]
    assert len(questions) == 14
    assert "delivered on 2027-01-31" in questions[0]
    async with services.uow() as uow:
        delivered = await uow.session.scalars(
            select(FollowUp.delivered_at).where(FollowUp.kind == "periodic")
        )
        assert set(delivered) == {local(2027, 1, 31, 15, 0)}


async def test_after_downtime_only_the_next_periodic_follow_up_is_kept(
    services, clock, make_settings
) -> None:
    clock.set(local(2027, 1, 31, 15, 0))
    customer = await add_customer_user(services, 301)
    await completed_job(services, customer, service_type="installation")
    await services.sessionmaker.kw["bind"].dispose()
    clock.set(local(2027, 7, 10, 9, 0))  # down from February to July
    restarted = build_services(make_settings(), clock=clock)
    try:
        assert await sweep(restarted) == 2  # the satisfaction one and February's, once each
        assert await sweep(restarted) == 0
        rows = await periodic(restarted)
        assert [(f.seq, f.status) for f in rows] == [(1, "asked"), (6, "scheduled")]
        assert rows[1].due_at == local(2027, 7, 31, 15, 0)
    finally:
        await restarted.sessionmaker.kw["bind"].dispose()


# ---- the December outreach -----------------------------------------------------------------


async def test_the_december_outreach_asks_every_customer_with_a_job_this_year(
    services, clock
) -> None:
    clock.set(local(2025, 6, 1, 9, 0))
    old = await add_customer_user(services, 310, name="Old customer")
    await new_dispatch(services, customer="Last Year Ltd")
    clock.set(local(2026, 3, 1, 9, 0))
    await ensure_recurring(services)
    asked_user = await add_customer_user(services, 311)
    owner = await onboard(services, 41, role="manager", name="Account Owner", skills=())
    acme = await completed_job(services, asked_user, customer="Acme Foods")
    await completed_job(services, None, customer="Offline Co")
    async with services.uow() as uow:
        cust = await uow.session.get(Customer, acme.customer_id)
        assert cust is not None
        cust.account_owner_id = owner.user.id
        await uow.commit()
    clock.set(local(2026, 3, 2, 9, 0))
    await sweep(services)  # the satisfaction follow-ups
    before = len(await texts_to(services, 311))

    clock.set(local(2026, 12, 1, 10, 0))
    assert await sweep(services) == 1
    outreach = [f for f in await all_followups(services) if f.kind == "outreach"]
    assert sorted((f.year, f.status) for f in outreach) == [
        (2026, "asked"),
        (2026, "unreachable"),
    ]
    question = (await outbox_rows(services, 311))[-1]
    assert "planning for 2027" in question.payload["text"]
    assert len(await texts_to(services, 311)) == before + 1
    assert await texts_to(services, 310) == []  # only last year's job: not asked
    mine = next(f for f in outreach if f.status == "asked")
    assert button_data(question) == [f"fu:{mine.id}:need", f"fu:{mine.id}:none"]

    await press(services, 311, f"fu:{mine.id}:ok")  # not an answer to this question
    assert (await the_followup(services, mine.id)).status == "asked"
    await press(services, 311, f"fu:{mine.id}:need")
    await say(services, 311, "Two more CH-200 chillers for the new plant")
    row = await the_followup(services, mine.id)
    assert (row.answer, row.note) == ("needs", "Two more CH-200 chillers for the new plant")
    assert "Two more CH-200" in (await texts_to(services, 41))[-1]
    assert old.id

    async with services.uow() as uow:
        [following] = await uow.session.scalars(
            select(Timer).where(Timer.kind == "followup_outreach", Timer.status == "pending")
        )
    assert following.due_at == local(2027, 12, 1, 10, 0)
    assert await sweep(services) == 0  # once this year


async def test_the_december_outreach_asks_a_batch_per_transaction_and_everyone_once(
    services, clock, monkeypatch
) -> None:
    """Thousands of customers in one transaction would hold the database (on SQLite the whole
    bot) for seconds: each batch is a sweep of its own, the next lined up as a timer."""
    monkeypatch.setattr(followups, "OUTREACH_BATCH", 2)
    clock.set(local(2026, 3, 1, 9, 0))
    await ensure_recurring(services)
    for n in range(5):
        user = await add_customer_user(services, 320 + n)
        await completed_job(services, user, customer=f"Customer {n}")
    clock.set(local(2026, 12, 1, 10, 0))

    def question(text: str) -> bool:
        return "planning for 2027" in text

    asked = []
    for _ in range(4):
        await sweep(services)
        outreach = [f for f in await all_followups(services) if f.kind == "outreach"]
        asked.append(len(outreach))
    assert asked == [2, 4, 5, 5]
    for n in range(5):
        assert len([t for t in await texts_to(services, 320 + n) if question(t)]) == 1
    async with services.uow() as uow:
        pending = list(
            await uow.session.scalars(
                select(Timer.kind).where(
                    Timer.kind.like("followup_outreach%"), Timer.status == "pending"
                )
            )
        )
    assert pending == ["followup_outreach"]  # next year's; no batch left over


async def test_no_needs_is_an_answer_too(services, clock) -> None:
    clock.set(local(2026, 3, 1, 9, 0))
    await ensure_recurring(services)
    await completed_job(services, await add_customer_user(services, 311))
    clock.set(local(2026, 12, 1, 10, 0))
    await sweep(services)
    [mine] = [f for f in await all_followups(services) if f.kind == "outreach"]
    await press(services, 311, f"fu:{mine.id}:none")
    row = await the_followup(services, mine.id)
    assert (row.status, row.answer) == ("answered", "none")


# ---- who did not answer --------------------------------------------------------------------


async def test_supervisors_see_who_did_not_answer(services, clock) -> None:
    await onboard(services, 21, role="supervisor", name="Boss", skills=())
    answered = await asked(services, clock, telegram_id=301, customer="Happy Co")
    await press(services, 301, f"fu:{answered.id}:ok")
    silent = await asked(services, clock, telegram_id=302, customer="Silent Ltd")
    await completed_job(services, None, customer="Offline Co", contact_phone="13900139000")
    clock.advance(timedelta(days=1))
    await sweep(services)

    await say(services, 21, "/followups")
    text = (await texts_to(services, 21))[-1]
    assert "Follow-ups without an answer: 2" in text
    assert "Silent Ltd" in text and "Offline Co" in text and "Happy Co" not in text
    assert "+8613900139000" in text and "please call" in text
    assert silent.dispatch_id is not None

    for telegram_id in (301, 12345):  # customers and strangers may not
        await say(services, telegram_id, "/followups")
        assert "Silent Ltd" not in (await texts_to(services, telegram_id))[-1]


async def test_the_list_says_when_everyone_answered(services) -> None:
    await onboard(services, 21, role="supervisor", name="Boss", skills=())
    await say(services, 21, "/followups")
    assert "Every follow-up has been answered" in (await texts_to(services, 21))[-1]
