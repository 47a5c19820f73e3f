"""DOMAIN.md §1 steps 2–5: contact, ETA, on the way, arrival check-in, work report, /jobs.

Times: the fake clock starts at 2026-11-30 01:00 UTC (09:00 in Asia/Shanghai, the site's
time zone); the default window is 11:00–14:00 local (03:00–06:00 UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.bootstrap import build_services
from bot.core.enums import DispatchStatus
from bot.core.events import Kind
from bot.db.models import Conversation, Dispatch, DispatchEvent, Offer, Outbox, Timer, User
from bot.flows.job import parse_parts, parse_time
from bot.scheduler.sweep import sweep
from bot.services.context import Services
from bot.services.errors import DomainError
from bot.services.staff import Redeem, redeem_invite
from tests.conftest import outbox_rows
from tests.helpers import new_dispatch, new_staff, onboard, press, say, send_kind

ENG, OTHER, SUP, CUST = 11, 12, 21, 7001
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEAR = (31.2310, 121.4740)  # 73 m from the site
FAR = (31.2500, 121.4737)  # 2.2 km from the site


def local(hour: int, minute: int = 0, day: int = 30) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def from_minute(value: int | str) -> datetime:
    return datetime.fromtimestamp(int(value) * 60, tz=SHANGHAI)


@dataclass
class Job:
    id: int
    number: str
    engineer_id: int
    customer_id: int | None
    supervisor_id: int | None


# ---- reading the database -------------------------------------------------------------------


async def dispatch_of(services: Services, job: Job | int) -> Dispatch:
    async with services.uow() as uow:
        d = await uow.session.get(Dispatch, job if isinstance(job, int) else job.id)
        assert d is not None
        return d


async def history(services: Services, job: Job) -> list[DispatchEvent]:
    async with services.uow() as uow:
        return list(
            await uow.session.scalars(
                select(DispatchEvent)
                .where(DispatchEvent.dispatch_id == job.id)
                .order_by(DispatchEvent.id)
            )
        )


async def kinds(services: Services, job: Job) -> list[str]:
    return [e.kind for e in await history(services, job)]


async def event(services: Services, job: Job, kind: str) -> DispatchEvent:
    found = [e for e in await history(services, job) if e.kind == kind]
    assert len(found) == 1, (kind, [e.kind for e in await history(services, job)])
    return found[0]


async def timers_of(services: Services, job: Job) -> dict[str, list[Timer]]:
    async with services.uow() as uow:
        rows = await uow.session.scalars(
            select(Timer).where(Timer.subject == f"dispatch:{job.id}").order_by(Timer.id)
        )
        out: dict[str, list[Timer]] = {}
        for row in rows:
            out.setdefault(row.kind, []).append(row)
        return out


async def pending(services: Services, job: Job) -> dict[str, datetime]:
    return {
        kind: rows[-1].due_at
        for kind, rows in (await timers_of(services, job)).items()
        if rows[-1].status == "pending"
    }


async def conversation(services: Services, user_id: int) -> tuple[str, str, Any] | None:
    async with services.uow() as uow:
        row = await uow.session.get(Conversation, user_id)
        return None if row is None else (row.flow, row.step, row.data.get("dispatch_id"))


# ---- reading the outbox ---------------------------------------------------------------------


async def mark(services: Services) -> int:
    async with services.uow() as uow:
        return int(await uow.session.scalar(select(func.max(Outbox.id))) or 0)


async def messages(services: Services, chat_id: int, since: int = 0) -> list[Outbox]:
    return [
        r
        for r in await outbox_rows(services, chat_id)
        if r.id > since and r.method in ("sendMessage", "editMessageText")
    ]


async def texts(services: Services, chat_id: int, since: int = 0) -> list[str]:
    return [r.payload["text"] for r in await messages(services, chat_id, since)]


async def last(services: Services, chat_id: int) -> Outbox:
    rows = await messages(services, chat_id)
    assert rows, f"nothing sent to {chat_id}"
    return rows[-1]


async def answers(services: Services, chat_id: int, since: int = 0) -> list[str]:
    """The toasts/alerts shown for button presses (silent answers left out)."""
    return [
        r.payload["text"]
        for r in await outbox_rows(services, chat_id)
        if r.id > since and r.method == "answerCallbackQuery" and "text" in r.payload
    ]


def buttons(row: Outbox) -> list[str]:
    markup = row.payload.get("reply_markup") or {}
    return [b["callback_data"] for line in markup.get("inline_keyboard", []) for b in line]


def one_with(rows: list[Outbox], needle: str) -> Outbox:
    found = [r for r in rows if needle in r.payload["text"]]
    assert len(found) == 1, (needle, [r.payload["text"] for r in rows])
    return found[0]


# ---- driving the flow -------------------------------------------------------------------------


async def add_customer(services: Services, dispatch_id: int, chat_id: int = CUST) -> int:
    async with services.uow() as uow:
        user = User(
            role="customer",
            name="Li Na",
            telegram_id=chat_id,
            chat_id=chat_id,
            locale="en",
            active=True,
            on_duty=False,
            created_at=uow.clock.now(),
        )
        uow.session.add(user)
        await uow.session.flush()
        d = await uow.session.get(Dispatch, dispatch_id)
        assert d is not None
        d.customer_user_id = user.id
        await uow.commit()
        return user.id


async def staff(
    services: Services,
    telegram_id: int,
    role: str = "engineer",
    name: str = "Wang Wei",
    skills: tuple[str, ...] = ("repair",),
) -> int:
    """Like ``onboard`` (the invite is redeemed), without the welcome messages: faster."""
    new = await new_staff(services, role, name, skills)
    async with services.uow() as uow:
        result, user = await redeem_invite(
            uow, code=new.code, telegram_id=telegram_id, chat_id=telegram_id, language="en"
        )
        assert result is Redeem.OK and user is not None
        await uow.commit()
        return user.id


async def offer_id(services: Services, dispatch_id: int, engineer_id: int) -> int:
    async with services.uow() as uow:
        found = await uow.session.scalar(
            select(Offer.id).where(
                Offer.dispatch_id == dispatch_id, Offer.engineer_id == engineer_id
            )
        )
        assert found is not None
        return int(found)


async def accepted_job(
    services: Services,
    *,
    customer: bool = True,
    supervisor: bool = True,
    second_engineer: bool = False,
    **fields: Any,
) -> Job:
    """An engineer (ENG) who accepted a fresh dispatch; customer and supervisor in chat."""
    engineer_id = await staff(services, ENG)
    if second_engineer:
        await staff(services, OTHER, name="Zhao Lei")
    supervisor_id = (
        await staff(services, SUP, role="supervisor", name="Boss", skills=())
        if supervisor
        else None
    )
    dispatch = await new_dispatch(services, **fields)
    customer_id = await add_customer(services, dispatch.id) if customer else None
    await press(services, ENG, f"off:{await offer_id(services, dispatch.id, engineer_id)}:acc")
    return Job(dispatch.id, dispatch.number, engineer_id, customer_id, supervisor_id)


async def another_job(services: Services, job: Job, **fields: Any) -> Job:
    """A second dispatch accepted by the same engineer."""
    dispatch = await new_dispatch(services, address="1 Nanjing Road", **fields)
    await press(services, ENG, f"off:{await offer_id(services, dispatch.id, job.engineer_id)}:acc")
    return Job(dispatch.id, dispatch.number, job.engineer_id, None, job.supervisor_id)


async def contact(services: Services, job: Job, eta: datetime | None = None) -> None:
    await press(services, ENG, f"job:{job.id}:ctd")
    await press(services, ENG, f"job:{job.id}:eta:{minute_of(eta or local(11, 30))}")


async def arrive(services: Services, where: tuple[float, float] = NEAR, **fields: Any) -> None:
    await send_kind(services, ENG, Kind.LOCATION, latitude=where[0], longitude=where[1], **fields)


async def on_site(services: Services, clock: Any, **job_fields: Any) -> Job:
    job = await accepted_job(services, **job_fields)
    await contact(services, job)
    clock.set(local(11, 10))
    await arrive(services)
    return job


async def photo(services: Services, file_id: str, chat: int = ENG) -> None:
    await send_kind(services, chat, Kind.PHOTO, file_ids=(file_id,))


async def report_until(services: Services, job: Job, step: str) -> None:
    """Fill the report in order up to (not including) ``step``."""
    plan: list[tuple[str, Any]] = [
        ("outcome", lambda: press(services, ENG, f"job:{job.id}:out:fixed")),
        ("work", lambda: say(services, ENG, "Replaced the compressor relay")),
        ("parts", lambda: say(services, ENG, "Relay x 2\nFuse")),
        ("photos", lambda: photo(services, "photo-1")),
        ("photos_done", lambda: press(services, ENG, f"job:{job.id}:phd")),
        ("extra", lambda: press(services, ENG, f"job:{job.id}:noex")),
    ]
    for name, action in plan:
        if name == step:
            return
        await action()
    assert step == "confirm"


# ---- step 2: contact the customer -----------------------------------------------------------


async def test_accept_asks_to_call_the_customer_and_arms_the_contact_clock(services, clock) -> None:
    job = await accepted_job(services)
    d = await dispatch_of(services, job)
    assert d.status == "accepted" and d.engineer_id == job.engineer_id
    call = one_with(await messages(services, ENG), "Please call the customer now")
    assert "within 15 minutes (by 09:15)" in call.payload["text"]
    assert "Li Na +8613800138000" in call.payload["text"]
    assert "88 Century Avenue, Pudong" in call.payload["text"]
    assert buttons(call) == [f"job:{job.id}:ctd"]
    deadline = services.settings.contact_deadline
    assert await pending(services, job) == {
        "contact_reminder": clock.now() + deadline * 2 / 3,
        "contact_overdue": clock.now() + deadline,
    }
    told = await texts(services, CUST)
    assert len(told) == 1
    assert "Your job FB000001 has an engineer." in told[0]
    assert "Engineer: Wang Wei (staff ID E0001)" in told[0]
    assert "Promised arrival: 2026-11-30 11:00–14:00" in told[0]
    assert "+86" not in told[0]  # the engineer's phone is off by default
    accepted = await event(services, job, "accepted")
    assert (accepted.actor_id, accepted.from_status, accepted.to_status) == (
        job.engineer_id,
        "offered",
        "accepted",
    )
    assert accepted.at == clock.now()
    assert await conversation(services, job.engineer_id) == ("job", "contact", job.id)


async def test_accept_without_a_customer_in_chat_tells_nobody_else(services) -> None:
    job = await accepted_job(services, customer=False)
    assert (await dispatch_of(services, job)).status == "accepted"
    assert await texts(services, CUST) == []


async def test_reached_customer_offers_eta_buttons_inside_the_window(services, clock) -> None:
    job = await accepted_job(services)
    await press(services, ENG, f"job:{job.id}:ctd")
    ask = await last(services, ENG)
    assert "What ETA did you give the customer for job FB000001?" in ask.payload["text"]
    assert "inside the window 11:00–14:00" in ask.payload["text"]
    data = buttons(ask)
    assert all(b.startswith(f"job:{job.id}:eta:") for b in data)
    etas = [from_minute(b.rsplit(":", 1)[1]) for b in data]
    assert etas == [local(11), local(11, 30), local(12), local(12, 30)]
    d = await dispatch_of(services, job)
    assert all(d.window_start <= e <= d.window_end and e > clock.now() for e in etas)
    labels = [b["text"] for b in ask.payload["reply_markup"]["inline_keyboard"][0]]
    assert labels == ["ETA 11:00"]
    assert await conversation(services, job.engineer_id) == ("job", "eta_contact", job.id)
    assert d.status == "accepted"  # only the ETA confirms the contact


async def test_eta_buttons_start_a_quarter_hour_ahead_inside_an_open_window(
    services, clock
) -> None:
    job = await accepted_job(services)
    clock.set(local(13, 7))
    await press(services, ENG, f"job:{job.id}:ctd")
    etas = [from_minute(b.rsplit(":", 1)[1]) for b in buttons(await last(services, ENG))]
    assert etas == [local(13, 30), local(14)]
    clock.set(local(13, 50))  # less than 15 minutes left: the window end itself
    await press(services, ENG, f"job:{job.id}:ctd")
    etas = [from_minute(b.rsplit(":", 1)[1]) for b in buttons(await last(services, ENG))]
    assert etas == [local(14)]


async def test_eta_button_confirms_contact_and_moves_the_clocks_to_arrival(services, clock) -> None:
    job = await accepted_job(services)
    before = await timers_of(services, job)
    clock.advance(timedelta(minutes=4))
    await contact(services, job, local(11, 30))
    d = await dispatch_of(services, job)
    assert d.status == "contacted"
    assert d.eta == local(11, 30) and d.contacted_at == clock.now()
    after = await timers_of(services, job)
    for kind in ("contact_reminder", "contact_overdue"):
        assert [t.id for t in after[kind]] == [t.id for t in before[kind]]
        assert after[kind][0].status == "cancelled"
    lead = services.settings.arrival_reminder_lead
    assert await pending(services, job) == {
        "arrival_reminder": d.window_end - lead,
        "arrival_overdue": d.window_end,
    }
    told = await texts(services, CUST)
    assert "Job FB000001: your engineer expects to arrive at 11:30." in told[-1]
    assert "Wang Wei" in told[-1]
    contacted = await event(services, job, "customer_contacted")
    assert (contacted.actor_id, contacted.from_status, contacted.to_status) == (
        job.engineer_id,
        "accepted",
        "contacted",
    )
    assert contacted.data["eta"] == local(11, 30).astimezone(clock.now().tzinfo).isoformat()
    rows = await messages(services, ENG)
    saved = one_with(rows, "ETA 11:30 saved for job FB000001")
    assert buttons(saved) == [f"job:{job.id}:way"]
    share = rows[-1]
    assert "Use the button below to check in" in share.payload["text"]
    assert share.payload["reply_markup"]["keyboard"][0][0]["request_location"] is True
    assert await conversation(services, job.engineer_id) == ("job", "arrival", job.id)


async def test_typed_eta_inside_the_window_confirms_contact(services) -> None:
    job = await accepted_job(services)
    await press(services, ENG, f"job:{job.id}:ctd")
    await say(services, ENG, "12:45")  # site time (Asia/Shanghai), i.e. 04:45 UTC
    d = await dispatch_of(services, job)
    assert d.status == "contacted" and d.eta == local(12, 45)
    assert (await event(services, job, "customer_contacted")).data["eta"] == (
        "2026-11-30T04:45:00+00:00"
    )
    assert "expects to arrive at 12:45" in (await texts(services, CUST))[-1]


async def test_bad_etas_are_refused_and_change_nothing(services, clock) -> None:
    job = await accepted_job(services)
    await press(services, ENG, f"job:{job.id}:ctd")
    refusals = {
        "15:30": "The ETA must be inside the promised window 11:00–14:00.",
        "08:00": "That time has already passed. Please give a time in the future.",
        "soon": "Please write the time like 14:30, or tap one of the buttons.",
        "25:00": "Please write the time like 14:30, or tap one of the buttons.",
    }
    for typed, refusal in refusals.items():
        since = await mark(services)
        await say(services, ENG, typed)
        assert await texts(services, ENG, since) == [refusal], typed
    clock.set(local(12, 30))  # a time inside the window that has passed is "passed"
    since = await mark(services)
    await say(services, ENG, "11:30")
    assert await texts(services, ENG, since) == [refusals["08:00"]]
    # forged or outdated buttons are checked the same way
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:eta:{minute_of(local(15))}")
    await press(services, ENG, f"job:{job.id}:eta:{minute_of(local(11))}")
    await press(services, ENG, f"job:{job.id}:eta:notaminute")
    assert await answers(services, ENG, since) == [
        refusals["15:30"],
        refusals["08:00"],
        "This button is no longer valid.",
    ]
    d = await dispatch_of(services, job)
    assert d.status == "accepted" and d.eta is None and d.contacted_at is None
    assert "customer_contacted" not in await kinds(services, job)
    assert set(await pending(services, job)) == {"contact_reminder", "contact_overdue"}
    assert await conversation(services, job.engineer_id) == ("job", "eta_contact", job.id)
    assert len(await texts(services, CUST)) == 1  # only the assignment


async def test_contact_confirmed_after_the_window_takes_a_late_eta(services, clock) -> None:
    start = clock.now() + timedelta(minutes=30)
    job = await accepted_job(
        services,
        window_start=start.isoformat(),
        window_end=(start + timedelta(minutes=30)).isoformat(),
    )  # 09:30–10:00 local
    clock.set(local(10, 5))
    await sweep(services)  # contact reminder and overdue alert
    await press(services, ENG, f"job:{job.id}:ctd")
    ask = await last(services, ENG)
    assert "The customer is waiting for your new ETA" in ask.payload["text"]
    etas = [from_minute(b.rsplit(":", 1)[1]) for b in buttons(ask)]
    assert etas == [local(10, 30), local(10, 45), local(11), local(11, 15)]
    assert all(b.startswith(f"job:{job.id}:eta:") for b in buttons(ask))
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:eta:{minute_of(local(10, 45))}")
    d = await dispatch_of(services, job)
    assert d.status == "contacted" and d.eta == local(10, 45) and d.arrival["late"] is True
    assert "expects to arrive at 10:45" in (await texts(services, CUST))[-1]
    alert = one_with(await messages(services, SUP, since), "has not arrived")
    assert buttons(alert) == [f"job:{job.id}:nudge", f"job:{job.id}:reasg"]
    assert "late" in await kinds(services, job)
    assert await pending(services, job) == {}  # everyone knows already: no second alert


# ---- contact deadline: reminder, supervisor alert, supervisor actions ----------------------


async def test_contact_reminder_then_supervisor_alert_when_nobody_confirms(services, clock) -> None:
    job = await accepted_job(services)
    clock.advance(timedelta(minutes=9))
    assert await sweep(services) == 0
    clock.advance(timedelta(minutes=1))
    assert await sweep(services) == 1
    reminder = await last(services, ENG)
    assert (
        "Reminder: please call the customer of job FB000001 and confirm by 09:15"
        in (reminder.payload["text"])
    )
    assert buttons(reminder) == [f"job:{job.id}:ctd"] and reminder.priority == 0
    assert "contact_reminder_sent" in await kinds(services, job)
    before_sup = await mark(services)
    clock.advance(timedelta(minutes=5))
    assert await sweep(services) == 1
    alert = (await messages(services, SUP, before_sup))[-1]
    assert (
        "Wang Wei has not confirmed contact with the customer within 15 minutes"
        in (alert.payload["text"])
    )
    assert "Job FB000001" in alert.payload["text"] and "+8613800138000" in alert.payload["text"]
    assert buttons(alert) == [f"job:{job.id}:nudge", f"job:{job.id}:reasg"]
    assert alert.priority == 0
    overdue = await event(services, job, "contact_overdue")
    assert overdue.actor_id is None and overdue.at == clock.now()
    assert len(await texts(services, CUST)) == 1  # the customer is not bothered
    assert await sweep(services) == 0  # each fired once


async def test_nothing_fires_when_the_customer_is_contacted_in_time(services, clock) -> None:
    job = await accepted_job(services)
    clock.advance(timedelta(minutes=5))
    await contact(services, job)
    since = await mark(services)
    clock.advance(timedelta(minutes=20))
    assert await sweep(services) == 0
    assert await messages(services, ENG, since) == []
    assert await messages(services, SUP, since) == []
    timers = await timers_of(services, job)
    assert [t.status for t in timers["contact_reminder"] + timers["contact_overdue"]] == [
        "cancelled",
        "cancelled",
    ]


async def test_contact_reminder_is_skipped_when_contact_was_confirmed_meanwhile(
    services, clock
) -> None:
    """The timer fires (e.g. its cancel raced) but the job has moved on: it says nothing."""
    job = await accepted_job(services)
    await contact(services, job)
    async with services.uow() as uow:
        for t in await uow.session.scalars(select(Timer).where(Timer.kind.like("contact_%"))):
            t.status = "pending"
        await uow.commit()
    since = await mark(services)
    clock.advance(timedelta(minutes=15))
    assert await sweep(services) == 2
    assert await messages(services, ENG, since) == []
    assert await messages(services, SUP, since) == []
    assert "contact_overdue" not in await kinds(services, job)


async def test_supervisor_nudges_the_engineer(services, clock) -> None:
    job = await accepted_job(services)
    clock.advance(services.settings.contact_deadline)
    await sweep(services)
    await press(services, SUP, f"job:{job.id}:nudge")
    nudge = await last(services, ENG)
    assert (
        "Boss asks about job FB000001: please take the next step now (/jobs)."
        in (nudge.payload["text"])
    )
    assert nudge.priority == 0
    assert (
        "The engineer of job FB000001 has been reminded."
        in (await last(services, SUP)).payload["text"]
    )
    nudged = await event(services, job, "nudged")
    assert nudged.actor_id == job.supervisor_id
    assert (await dispatch_of(services, job)).status == "accepted"


async def test_supervisor_reassigns_and_picks_someone_else(services, clock) -> None:
    job = await accepted_job(services, second_engineer=True)
    other_id = await onboard_id(services, OTHER)
    clock.advance(services.settings.contact_deadline)
    await sweep(services)
    since = await mark(services)
    await press(services, SUP, f"job:{job.id}:reasg")
    d = await dispatch_of(services, job)
    assert d.status == "unassigned" and d.engineer_id is None and d.eta is None
    assert await pending(services, job) == {}
    taken = (await messages(services, ENG, since))[-1]
    assert "Job FB000001 has been reassigned by your supervisor" in taken.payload["text"]
    assert taken.payload["reply_markup"] == {"remove_keyboard": True}
    assert await conversation(services, job.engineer_id) is None
    pick = (await messages(services, SUP, since))[-1]
    assert "Nobody is left to offer this job to" in pick.payload["text"]
    assert buttons(pick) == [
        f"job:{job.id}:asg:{job.engineer_id}",
        f"job:{job.id}:asg:{other_id}",
    ]
    reassigned = await event(services, job, "reassigned")
    assert (reassigned.actor_id, reassigned.from_status, reassigned.to_status) == (
        job.supervisor_id,
        "accepted",
        "unassigned",
    )
    assert reassigned.data == {"engineer_id": job.engineer_id}
    # the old engineer's buttons are dead, a second reassign is refused
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:ctd")
    await press(services, SUP, f"job:{job.id}:reasg")
    assert await answers(services, ENG, since) == ["This job is not yours."]
    assert await answers(services, SUP, since) == [
        "This alert is no longer current: the job has moved on."
    ]
    # one tap offers it to the other engineer, who can take it from the start
    await press(services, SUP, f"job:{job.id}:asg:{other_id}")
    await press(services, OTHER, f"off:{await offer_id(services, job.id, other_id)}:acc")
    d = await dispatch_of(services, job)
    assert d.status == "accepted" and d.engineer_id == other_id
    assert set(await pending(services, job)) == {"contact_reminder", "contact_overdue"}


async def onboard_id(services: Services, telegram_id: int) -> int:
    async with services.uow() as uow:
        found = await uow.session.scalar(select(User.id).where(User.telegram_id == telegram_id))
        assert found is not None
        return int(found)


async def test_reassigning_one_job_leaves_the_engineers_other_job_alone(services, clock) -> None:
    first = await on_site(services, clock)
    second = await another_job(services, first)  # accepted at 11:10: contact by 11:25
    await press(services, ENG, f"job:{first.id}:open")
    assert await conversation(services, first.engineer_id) == ("job", "report_outcome", first.id)
    clock.advance(services.settings.contact_deadline)
    await sweep(services)
    await press(services, SUP, f"job:{second.id}:reasg")
    assert (await dispatch_of(services, second)).status == "unassigned"
    assert await conversation(services, first.engineer_id) == ("job", "report_outcome", first.id)
    await press(services, ENG, f"job:{first.id}:out:fixed")
    await say(services, ENG, "Replaced the relay")
    assert (await dispatch_of(services, first)).report["draft"]["work_done"] == "Replaced the relay"


async def test_engineers_cannot_press_supervisor_buttons(services, clock) -> None:
    job = await accepted_job(services)
    clock.advance(services.settings.contact_deadline)
    await sweep(services)
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:nudge")
    await press(services, ENG, f"job:{job.id}:reasg")
    assert await answers(services, ENG, since) == ["Sorry, this is not available to you."] * 2
    assert (await dispatch_of(services, job)).status == "accepted"
    assert "nudged" not in await kinds(services, job)
    assert "reassigned" not in await kinds(services, job)


async def test_supervisors_cannot_act_on_the_engineers_steps(services) -> None:
    job = await accepted_job(services)
    since = await mark(services)
    await press(services, SUP, f"job:{job.id}:ctd")
    assert await answers(services, SUP, since) == ["Sorry, this is not available to you."]
    assert (await dispatch_of(services, job)).status == "accepted"


# ---- step 3: on my way ------------------------------------------------------------------------


async def test_on_my_way_asks_a_fresh_eta_and_tells_the_customer(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job, local(12))
    clock.set(local(10, 40))
    await press(services, ENG, f"job:{job.id}:way")
    ask = await last(services, ENG)
    assert "What ETA did you give the customer" in ask.payload["text"]
    data = buttons(ask)
    assert data == [
        f"job:{job.id}:omw:{minute_of(t)}"
        for t in (local(11), local(11, 30), local(12), local(12, 30))
    ]
    assert await conversation(services, job.engineer_id) == ("job", "eta_omw", job.id)
    await press(services, ENG, data[1])
    d = await dispatch_of(services, job)
    assert d.status == "en_route" and d.eta == local(11, 30)
    assert (
        "Wang Wei is on the way for job FB000001. Expected arrival: 11:30."
        in (await texts(services, CUST))[-1]
    )
    omw = await event(services, job, "on_my_way")
    assert (omw.actor_id, omw.from_status, omw.to_status) == (
        job.engineer_id,
        "contacted",
        "en_route",
    )
    assert await conversation(services, job.engineer_id) == ("job", "arrival", job.id)
    # a second "on my way" (typed this time) updates the ETA and stays en route
    await press(services, ENG, f"job:{job.id}:way")
    await say(services, ENG, "11:45")
    d = await dispatch_of(services, job)
    assert d.status == "en_route" and d.eta == local(11, 45)
    assert (await kinds(services, job)).count("on_my_way") == 2


async def test_on_my_way_is_refused_before_the_customer_was_contacted(services) -> None:
    job = await accepted_job(services)
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:way")
    await press(services, ENG, f"job:{job.id}:omw:{minute_of(local(11, 30))}")
    assert (
        await answers(services, ENG, since)
        == [
            "Job FB000001 cannot do that now (it is accepted).",
        ]
        * 2
    )
    assert (await dispatch_of(services, job)).status == "accepted"


# ---- step 4: arrival check-in -----------------------------------------------------------------


async def test_location_on_site_checks_in_with_distance_and_window(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(11, 10))
    since = await mark(services)
    await arrive(services, NEAR)
    d = await dispatch_of(services, job)
    assert d.status == "on_site" and d.arrived_at == clock.now()
    assert d.arrival["distance_m"] == 73 and d.arrival["in_window"] is True
    assert d.arrival["verified"] is True and d.arrival["auto"] is False
    assert (d.arrival["latitude"], d.arrival["longitude"]) == NEAR
    arrived = await event(services, job, "arrived")
    assert (arrived.actor_id, arrived.from_status, arrived.to_status) == (
        job.engineer_id,
        "contacted",
        "on_site",
    )
    assert (arrived.latitude, arrived.longitude) == NEAR and arrived.at == clock.now()
    assert arrived.data["distance_m"] == 73 and arrived.data["in_window"] is True
    timers = await timers_of(services, job)
    assert timers["arrival_reminder"][-1].status == "cancelled"
    assert timers["arrival_overdue"][-1].status == "cancelled"
    sent = await messages(services, ENG, since)
    checked = one_with(sent, "Checked in for job FB000001 at 11:10.")
    text = checked.payload["text"]
    assert "You arrived inside the promised window." in text
    assert "Distance from the site: 73 m." in text and "⚠️" not in text
    assert "Please show your staff ID to the customer." in text
    assert checked.payload["reply_markup"] == {"remove_keyboard": True}
    outcome = sent[-1]
    assert "Work report for job FB000001" in outcome.payload["text"]
    assert buttons(outcome) == [
        f"job:{job.id}:out:{o}" for o in ("fixed", "needs_parts", "return_visit", "cannot_fix")
    ]
    told = (await texts(services, CUST))[-1]
    assert "Your engineer has arrived for job FB000001." in told
    assert "Name: Wang Wei — staff ID E0001." in told
    assert await conversation(services, job.engineer_id) == ("job", "report_outcome", job.id)


async def test_far_away_location_warns_but_still_checks_in(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)  # still 09:00: before the window
    await arrive(services, FAR)
    d = await dispatch_of(services, job)
    assert d.status == "on_site"
    assert d.arrival["distance_m"] == 2179 and d.arrival["in_window"] is False
    checked = one_with(await messages(services, ENG), "Checked in for job")
    assert "more than 500 m from the site. The check-in is kept" in checked.payload["text"]
    assert "You arrived outside the promised window; this is recorded." in checked.payload["text"]
    assert (await event(services, job, "arrived")).data["in_window"] is False


async def test_typed_address_checks_in_unverified(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(11, 5))
    await say(services, ENG, "88 Century Avenue, gate 3")
    d = await dispatch_of(services, job)
    assert d.status == "on_site"
    assert d.arrival["verified"] is False and d.arrival["distance_m"] is None
    assert d.arrival["typed_address"] == "88 Century Avenue, gate 3"
    checked = one_with(await messages(services, ENG), "Checked in for job")
    assert "it is not verified" in checked.payload["text"]
    arrived = await event(services, job, "arrived")
    assert arrived.latitude is None and arrived.data["verified"] is False
    assert arrived.data["typed_address"] == "88 Century Avenue, gate 3"


async def test_typed_arrival_refuses_empty_or_overlong_text(services) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    since = await mark(services)
    await say(services, ENG, "   ")
    await say(services, ENG, "x" * 501)
    assert await texts(services, ENG, since) == [
        "That was empty. Please write something.",
        "That is too long: at most 500 characters, please.",
    ]
    assert (await dispatch_of(services, job)).status == "contacted"


async def test_live_location_follows_the_trip_then_checks_in_automatically(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(10, 50))
    since = await mark(services)
    await arrive(services, FAR, live=True)
    d = await dispatch_of(services, job)
    assert d.status == "en_route" and d.eta == local(10, 55)  # 2.2 km at 30 km/h
    assert "Following your live location for job FB000001" in (await texts(services, ENG, since))[0]
    cust = await texts(services, CUST, since)
    assert cust == [
        "🚗 Wang Wei is on the way for job FB000001. Expected arrival: 10:55.",
    ]
    live = await event(services, job, "on_my_way")
    assert live.data["live"] is True and live.to_status == "en_route"
    # updates are throttled: one customer message per 5 minutes at most
    clock.advance(timedelta(minutes=2))
    await arrive(services, (31.2400, 121.4737), live=True, edited=True)
    assert len(await texts(services, CUST, since)) == 1
    clock.advance(timedelta(minutes=3))
    await arrive(services, (31.2400, 121.4737), live=True, edited=True)
    cust = await texts(services, CUST, since)
    assert len(cust) == 2 and "Expected arrival: 10:58." in cust[-1]
    assert "live_eta" in await kinds(services, job)
    assert len(await texts(services, ENG, since)) == 1  # the engineer is not spammed
    # entering the radius checks in, with an undo button
    clock.advance(timedelta(minutes=1))
    await arrive(services, NEAR, live=True, edited=True)
    d = await dispatch_of(services, job)
    assert d.status == "on_site" and d.arrival["auto"] is True
    assert d.arrival["previous_status"] == "en_route"
    checked = one_with(await messages(services, ENG, since), "checked in automatically at 10:56")
    assert checked.payload["reply_markup"] == {"remove_keyboard": True}
    undo = one_with(await messages(services, ENG, since), "Undo it here")
    assert buttons(undo) == [f"job:{job.id}:undo"]
    arrived = await event(services, job, "arrived")
    assert arrived.data["auto"] is True and (arrived.latitude, arrived.longitude) == NEAR
    # later updates of the same live location do nothing
    before = await mark(services)
    clock.advance(timedelta(minutes=10))
    await arrive(services, NEAR, live=True, edited=True)
    assert await outbox_rows_since(services, before) == []


async def outbox_rows_since(services: Services, since: int) -> list[Outbox]:
    return [r for r in await outbox_rows(services) if r.id > since]


async def test_undo_an_automatic_check_in(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(11, 20))
    await arrive(services, FAR, live=True)
    clock.advance(timedelta(minutes=1))
    await arrive(services, NEAR, live=True, edited=True)
    assert (await dispatch_of(services, job)).status == "on_site"
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:undo")
    d = await dispatch_of(services, job)
    assert d.status == "en_route" and d.arrived_at is None and d.report == {}
    undone = await event(services, job, "checkin_undone")
    assert (undone.from_status, undone.to_status, undone.actor_id) == (
        "on_site",
        "en_route",
        job.engineer_id,
    )
    assert set(await pending(services, job)) == {"arrival_reminder", "arrival_overdue"}
    sent = await texts(services, ENG, since)
    assert "Check-in for job FB000001 undone." in sent[0]
    told = await texts(services, CUST, since)
    assert any("has not arrived yet" in text for text in told)  # the customer is corrected
    assert await conversation(services, job.engineer_id) == ("job", "arrival", job.id)
    # the live location still at the site does not check in again at once...
    clock.advance(timedelta(minutes=1))
    await arrive(services, NEAR, live=True, edited=True)
    assert (await dispatch_of(services, job)).status == "en_route"
    # ...but after leaving and coming back it does
    clock.advance(timedelta(minutes=1))
    await arrive(services, FAR, live=True, edited=True)
    clock.advance(timedelta(minutes=1))
    await arrive(services, NEAR, live=True, edited=True)
    assert (await dispatch_of(services, job)).status == "on_site"
    # a plain location is an explicit check-in at any time
    await press(services, ENG, f"job:{job.id}:undo")
    await arrive(services, NEAR)
    d = await dispatch_of(services, job)
    assert d.status == "on_site" and d.arrival["auto"] is False


async def test_undo_after_the_window_ended_raises_the_late_alert(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(13, 58))
    await arrive(services, NEAR, live=True)  # automatic check-in two minutes before the end
    clock.set(local(14, 5))
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:undo")
    assert await pending(services, job) == {"arrival_overdue": clock.now()}
    assert await sweep(services) == 1
    assert "has not arrived" in (await texts(services, SUP, since))[-1]
    assert "running late" in (await texts(services, CUST, since))[-1]
    assert (await dispatch_of(services, job)).arrival["late"] is True
    # checked in and undone once more: everyone knows already, no second alert
    clock.advance(timedelta(minutes=1))
    await arrive(services, FAR, live=True, edited=True)
    clock.advance(timedelta(minutes=1))
    await arrive(services, NEAR, live=True, edited=True)
    assert (await dispatch_of(services, job)).status == "on_site"
    await press(services, ENG, f"job:{job.id}:undo")
    assert (await dispatch_of(services, job)).status == "en_route"
    assert await pending(services, job) == {}
    assert await sweep(services) == 0
    assert (await kinds(services, job)).count("late") == 1


async def test_undo_is_refused_once_the_report_started_or_when_checked_in_by_hand(
    services, clock
) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(11, 20))
    await arrive(services, NEAR, live=True)  # inside the radius at once: automatic
    assert (await dispatch_of(services, job)).arrival["auto"] is True
    await press(services, ENG, f"job:{job.id}:out:fixed")
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:undo")
    assert await answers(services, ENG, since) == ["This check-in cannot be undone any more."]
    assert (await dispatch_of(services, job)).status == "on_site"
    assert "checkin_undone" not in await kinds(services, job)
    # a manual check-in has no undo
    second = await another_job(services, job)
    await contact(services, second, local(13, 30))  # its window is 13:20–16:20
    await arrive(services, NEAR)
    since = await mark(services)
    await press(services, ENG, f"job:{second.id}:undo")
    assert await answers(services, ENG, since) == ["This check-in cannot be undone any more."]


async def test_location_without_a_job_waiting_for_it(services) -> None:
    job = await accepted_job(services)  # accepted, not contacted yet
    since = await mark(services)
    await arrive(services, NEAR)
    assert await texts(services, ENG, since) == [
        "Thanks, but no job of yours is waiting for a check-in. Open one with /jobs first."
    ]
    await arrive(services, NEAR, live=True, edited=True)  # silent for live updates
    assert len(await texts(services, ENG, since)) == 1
    assert (await dispatch_of(services, job)).status == "accepted"


async def test_locations_from_non_engineers_are_not_check_ins(services) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    for chat in (SUP, CUST, 555):
        since = await mark(services)
        await send_kind(services, chat, Kind.LOCATION, latitude=NEAR[0], longitude=NEAR[1])
        assert len(await texts(services, chat, since)) == 1, chat
        since = await mark(services)
        await send_kind(
            services,
            chat,
            Kind.LOCATION,
            latitude=NEAR[0],
            longitude=NEAR[1],
            live=True,
            edited=True,
        )
        assert await texts(services, chat, since) == []
    assert (await dispatch_of(services, job)).status == "contacted"
    assert "arrived" not in await kinds(services, job)


async def test_live_updates_after_a_check_in_do_not_move_another_job(services, clock) -> None:
    """The live location of job A keeps coming after A's check-in; job B is not 'on the way'."""
    first = await accepted_job(services)
    second = await another_job(services, first)
    await contact(services, second)
    await contact(services, first)
    clock.set(local(10, 50))
    await arrive(services, FAR, live=True)  # conversation is on the first job
    clock.advance(timedelta(minutes=1))
    await arrive(services, NEAR, live=True, edited=True)
    assert (await dispatch_of(services, first)).status == "on_site"
    for _ in range(2):
        clock.advance(timedelta(minutes=6))
        await arrive(services, NEAR, live=True, edited=True)
    assert (await dispatch_of(services, second)).status == "contacted"
    assert "live_eta" not in await kinds(services, second)


# ---- arrival deadline ------------------------------------------------------------------------


async def test_arrival_reminder_then_late_alert_and_a_new_eta(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    d = await dispatch_of(services, job)
    clock.set(d.window_end - timedelta(minutes=31))
    assert await sweep(services) == 0
    clock.set(d.window_end - services.settings.arrival_reminder_lead)
    assert await sweep(services) == 1
    reminder = await last(services, ENG)
    assert (
        "the window for job FB000001 ends at 14:00 and you have not checked in"
        in (reminder.payload["text"])
    )
    assert reminder.priority == 0 and "arrival_reminder_sent" in await kinds(services, job)
    since = await mark(services)
    clock.set(d.window_end)
    assert await sweep(services) == 1
    alert = (await messages(services, SUP, since))[-1]
    assert "Wang Wei has not arrived and the promised window is over" in alert.payload["text"]
    assert buttons(alert) == [f"job:{job.id}:nudge", f"job:{job.id}:reasg"]
    assert alert.priority == 0
    assert (await texts(services, CUST, since)) == [
        "We are sorry: Wang Wei is running late for job FB000001. They will send you a new"
        " arrival time shortly."
    ]
    sent = await messages(services, ENG, since)
    assert "The window for job FB000001 is over" in sent[0].payload["text"]
    ask = sent[-1]
    assert "The customer is waiting for your new ETA" in ask.payload["text"]
    etas = [from_minute(b.rsplit(":", 1)[1]) for b in buttons(ask)]
    assert etas == [local(14, 15), local(14, 30), local(14, 45), local(15)]  # after the window
    assert all(b.startswith(f"job:{job.id}:leta:") for b in buttons(ask))
    late = await event(services, job, "late")
    assert late.at == clock.now() and (await dispatch_of(services, job)).arrival["late"] is True
    assert await conversation(services, job.engineer_id) == ("job", "eta_late", job.id)
    since = await mark(services)
    await press(services, ENG, buttons(ask)[1])
    d = await dispatch_of(services, job)
    assert d.eta == local(14, 30) and d.status == "contacted"
    assert await texts(services, CUST, since) == [
        "Wang Wei has given a new arrival time for job FB000001: 14:30. We apologise for the delay."
    ]
    new_eta = await event(services, job, "new_eta")
    assert new_eta.actor_id == job.engineer_id and new_eta.to_status is None
    assert await sweep(services) == 0
    # typed late ETAs work too, also through "on my way" which now offers late times
    await press(services, ENG, f"job:{job.id}:way")
    ask = await last(services, ENG)
    assert buttons(ask) and all(
        from_minute(b.rsplit(":", 1)[1]) > d.window_end for b in buttons(ask)
    )
    await say(services, ENG, "14:50")
    d = await dispatch_of(services, job)
    assert d.status == "en_route" and d.eta == local(14, 50)
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:way")
    await say(services, ENG, "23:30")  # late ETAs may be hours after the window
    d = await dispatch_of(services, job)
    assert d.eta == local(23, 30)
    await press(services, ENG, f"job:{job.id}:way")
    await say(services, ENG, "13:00")
    assert (await texts(services, ENG, since))[-1] == (
        "That time has already passed. Please give a time in the future."
    )


async def test_late_arrival_is_still_checked_in_and_marked_outside_the_window(
    services, clock
) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    clock.set(local(14, 20))
    await sweep(services)
    await arrive(services, NEAR)
    d = await dispatch_of(services, job)
    assert d.status == "on_site" and d.arrival["in_window"] is False and d.arrival["late"] is True


async def test_late_alert_does_not_take_over_another_jobs_report(services, clock) -> None:
    first = await accepted_job(services)
    later = clock.now() + timedelta(minutes=30)
    second = await another_job(
        services,
        first,
        window_start=later.isoformat(),
        window_end=(later + timedelta(hours=1)).isoformat(),
    )  # 09:30–10:30 local
    await contact(services, second, local(10))
    await contact(services, first)
    clock.set(local(10, 0))
    await arrive(services, NEAR)  # the conversation is on the first job
    await press(services, ENG, f"job:{first.id}:out:fixed")
    clock.set(local(10, 30))
    await sweep(services)
    late = await last(services, ENG)
    assert buttons(late) and all(b.startswith(f"job:{second.id}:leta:") for b in buttons(late))
    assert await conversation(services, first.engineer_id) == ("job", "report_work", first.id)
    await say(services, ENG, "Cleaned the condenser")
    assert (await dispatch_of(services, first)).report["draft"]["work_done"] == (
        "Cleaned the condenser"
    )
    await press(services, ENG, buttons(late)[0])
    assert (await dispatch_of(services, second)).eta == local(10, 45)


# ---- step 5: the work report ------------------------------------------------------------------


async def test_full_report_with_parts_photos_and_extra_work(services, clock) -> None:
    job = await on_site(services, clock)
    await press(services, ENG, f"job:{job.id}:out:fixed")
    ask = await last(services, ENG)
    assert "Describe the work you did" in ask.payload["text"]
    await say(services, ENG, "  Replaced the compressor relay  ")
    ask = await last(services, ENG)
    assert "Which parts did you use?" in ask.payload["text"]
    assert buttons(ask) == [f"job:{job.id}:nopa"]
    await say(services, ENG, "Relay x 2\nFuse")
    ask = await last(services, ENG)
    assert "Send photos of the work (up to 20)" in ask.payload["text"]
    assert buttons(ask) == [f"job:{job.id}:phd"]
    for n in range(1, 4):
        await photo(services, f"photo-{n}")
        saved = await last(services, ENG)
        assert f"Photo {n} saved." in saved.payload["text"]
        assert buttons(saved) == [f"job:{job.id}:phd"]
    await press(services, ENG, f"job:{job.id}:phd")
    ask = await last(services, ENG)
    assert "extra work on site" in ask.payload["text"]
    assert buttons(ask) == [f"job:{job.id}:noex"]
    await say(services, ENG, "The fan belt is worn and should be replaced")
    confirm = await last(services, ENG)
    text = confirm.payload["text"]
    assert "Please check the report for job FB000001:" in text
    assert "Outcome: fixed" in text and "Work done: Replaced the compressor relay" in text
    assert "Parts: Relay × 2; Fuse × 1" in text and "Photos: 3" in text
    assert "The fan belt is worn and should be replaced" in text
    assert buttons(confirm) == [f"job:{job.id}:sub", f"job:{job.id}:redo"]
    d = await dispatch_of(services, job)
    assert d.status == "on_site" and d.report["step"] == "confirm"
    clock.advance(timedelta(minutes=40))
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:sub")
    d = await dispatch_of(services, job)
    assert d.status == "awaiting_signoff" and d.reported_at == clock.now()
    assert d.report == {
        "final": {
            "outcome": "fixed",
            "work_done": "Replaced the compressor relay",
            "parts": [{"name": "Relay", "quantity": 2}, {"name": "Fuse", "quantity": 1}],
            "photos": ["photo-1", "photo-2", "photo-3"],
            "extra_work": "The fan belt is worn and should be replaced",
            "submitted_at": clock.now().isoformat(),
        }
    }
    submitted = await event(services, job, "report_submitted")
    assert (submitted.actor_id, submitted.from_status, submitted.to_status) == (
        job.engineer_id,
        "on_site",
        "awaiting_signoff",
    )
    assert submitted.data == {"outcome": "fixed", "parts": 2, "photos": 3}
    done = one_with(await messages(services, ENG, since), "Report for job FB000001 submitted")
    assert "follow-up" not in done.payload["text"]
    assert await conversation(services, job.engineer_id) is None
    extra = one_with(await messages(services, CUST, since), "the engineer found more work")
    assert extra.payload["text"] == (
        "During job FB000001 the engineer found more work that needs your approval before it"
        " is done:\nThe fan belt is worn and should be replaced"
    )
    async with services.uow() as uow:
        children = await uow.session.scalar(
            select(func.count()).select_from(Dispatch).where(Dispatch.parent_id == job.id)
        )
    assert children == 0


@pytest.mark.parametrize("outcome", ["needs_parts", "return_visit"])
async def test_needs_parts_or_return_visit_creates_a_linked_follow_up(
    services, clock, outcome
) -> None:
    job = await on_site(services, clock)
    await press(services, ENG, f"job:{job.id}:out:{outcome}")
    await say(services, ENG, "Compressor is dead")
    await press(services, ENG, f"job:{job.id}:nopa")
    await press(services, ENG, f"job:{job.id}:phd")
    await press(services, ENG, f"job:{job.id}:noex")
    confirm = await last(services, ENG)
    assert "Parts: none" in confirm.payload["text"] and "Photos: 0" in confirm.payload["text"]
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:sub")
    parent = await dispatch_of(services, job)
    assert parent.status == "awaiting_signoff"
    assert parent.report["final"]["parts"] == [] and parent.report["final"]["extra_work"] == ""
    async with services.uow() as uow:
        child = await uow.session.scalar(select(Dispatch).where(Dispatch.parent_id == job.id))
    assert child is not None and child.number == "FB000002"
    assert child.status == "offered" and child.source == "follow_up"
    assert child.requested_engineer_id == job.engineer_id
    assert child.customer_user_id == job.customer_id
    assert (child.window_start, child.window_end) == (
        parent.window_start + timedelta(days=1),
        parent.window_end + timedelta(days=1),
    )
    assert child.serials == parent.serials and child.contact_phone == parent.contact_phone
    created = await history(services, Job(child.id, child.number, job.engineer_id, None, None))
    assert [e.kind for e in created] == ["created", "offered"]
    assert created[0].data["parent"] == "FB000001" and created[0].data["reason"] == outcome
    follow = await event(services, job, "follow_up_created")
    assert follow.data == {"child": "FB000002"}
    sent = await messages(services, ENG, since)
    submitted = one_with(sent, "Report for job FB000001 submitted")
    offer = one_with(sent, "New job offered to you")
    assert sent.index(submitted) < sent.index(offer)  # the confirmation comes first
    assert (
        "A follow-up job FB000002 has been created and offered to you."
        in (submitted.payload["text"])
    )
    assert "FB000002" in offer.payload["text"]
    new_offer = await offer_id(services, child.id, job.engineer_id)
    assert buttons(offer) == [f"off:{new_offer}:acc", f"off:{new_offer}:dec"]
    assert not [t for t in await texts(services, CUST, since) if "found more work" in t]
    await press(services, ENG, f"off:{new_offer}:acc")  # the same engineer takes it on
    assert (await dispatch_of(services, child.id)).status == "accepted"
    assert "Your job FB000002 has an engineer." in (await texts(services, CUST, since))[-1]


async def test_redo_starts_the_report_again(services, clock) -> None:
    job = await on_site(services, clock)
    await report_until(services, job, "confirm")
    await press(services, ENG, f"job:{job.id}:redo")
    d = await dispatch_of(services, job)
    assert d.status == "on_site" and d.report == {"draft": {}, "step": "outcome"}
    ask = await last(services, ENG)
    assert "First: what is the outcome?" in ask.payload["text"]
    assert len(buttons(ask)) == 4
    assert await conversation(services, job.engineer_id) == ("job", "report_outcome", job.id)
    await press(services, ENG, f"job:{job.id}:out:cannot_fix")
    assert (await dispatch_of(services, job)).report["draft"] == {"outcome": "cannot_fix"}


async def test_report_refuses_bad_input(services, clock) -> None:
    job = await on_site(services, clock)
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:sub")  # before the confirmation step
    await press(services, ENG, f"job:{job.id}:nopa")  # wrong step
    await press(services, ENG, f"job:{job.id}:out:excellent")  # not an outcome
    assert await answers(services, ENG, since) == ["This button is no longer valid."] * 3
    await press(services, ENG, f"job:{job.id}:out:fixed")
    since = await mark(services)
    await say(services, ENG, "   ")
    await say(services, ENG, "x" * 2001)
    assert await texts(services, ENG, since) == [
        "That was empty. Please write something.",
        "That is too long: at most 2000 characters, please.",
    ]
    await say(services, ENG, "y" * 2000)  # exactly the limit is fine
    since = await mark(services)
    for bad in ("x 2", "Relay x 0", "Relay x 100000", " \n - \n"):
        await say(services, ENG, bad)
    await say(services, ENG, "\n".join(f"Part {n}" for n in range(31)))
    assert await texts(services, ENG, since) == [
        "Please list the parts one per line as “name x quantity”, for example: Compressor relay x 2"
    ] * 4 + ["That is more than the limit of 30."]
    await say(services, ENG, "Relay × 2\n- Fuse*3")
    d = await dispatch_of(services, job)
    assert d.report["draft"]["parts"] == [
        {"name": "Relay", "quantity": 2},
        {"name": "Fuse", "quantity": 3},
    ]
    for n in range(20):
        await photo(services, f"p{n}")
    since = await mark(services)
    await photo(services, "p20")
    assert await texts(services, ENG, since) == ["That is more than the limit of 20."]
    assert len((await dispatch_of(services, job)).report["draft"]["photos"]) == 20
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:sub")  # still before confirmation
    assert await answers(services, ENG, since) == ["This button is no longer valid."]
    assert (await dispatch_of(services, job)).status == "on_site"
    assert "report_submitted" not in await kinds(services, job)


async def test_photo_when_no_job_is_open(services, clock) -> None:
    job = await on_site(services, clock)
    await report_until(services, job, "confirm")
    await press(services, ENG, f"job:{job.id}:sub")
    await onboard(services, OTHER, name="Zhao Lei")  # never had a job
    for chat in (ENG, OTHER):
        since = await mark(services)
        await photo(services, "stray-photo", chat)
        assert await texts(services, chat, since) == [
            "Thanks, but no job is waiting for photos. Open a job with /jobs first."
        ]
    assert (await dispatch_of(services, job)).report["final"]["photos"] == ["photo-1"]


async def test_double_taps_act_once(services, clock) -> None:
    job = await accepted_job(services)
    await press(services, ENG, f"job:{job.id}:ctd")
    eta = f"job:{job.id}:eta:{minute_of(local(11, 30))}"
    since = await mark(services)
    await press(services, ENG, eta)
    await press(services, ENG, eta)
    assert (await kinds(services, job)).count("customer_contacted") == 1
    assert await answers(services, ENG, since) == [
        "Job FB000001 cannot do that now (it is customer contacted)."
    ]
    assert len(await texts(services, CUST, since)) == 1
    clock.set(local(11, 10))
    await arrive(services)
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:out:fixed")
    await press(services, ENG, f"job:{job.id}:out:fixed")
    assert await answers(services, ENG, since) == ["This button is no longer valid."]
    await say(services, ENG, "Done")
    await press(services, ENG, f"job:{job.id}:nopa")
    await press(services, ENG, f"job:{job.id}:phd")
    await press(services, ENG, f"job:{job.id}:noex")
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:sub")
    await press(services, ENG, f"job:{job.id}:sub")
    assert (await kinds(services, job)).count("report_submitted") == 1
    assert await answers(services, ENG, since) == [
        "Job FB000001 cannot do that now (it is awaiting sign-off)."
    ]


# ---- /jobs and resuming -----------------------------------------------------------------------


async def test_jobs_lists_open_jobs_with_the_next_step(services, clock) -> None:
    first = await on_site(services, clock)
    await press(services, ENG, f"job:{first.id}:out:fixed")
    second = await another_job(services, first)
    since = await mark(services)
    await say(services, ENG, "/jobs")
    listing = (await messages(services, ENG, since))[-1]
    text = listing.payload["text"]
    assert "Your open jobs:" in text
    assert "FB000001</b> · Acme Foods · 2026-11-30 11:00–14:00" in text
    assert "Next: write the work report" in text
    assert "FB000002</b>" in text and "Next: call the customer and give an ETA (by 11:25)" in text
    assert buttons(listing) == [f"job:{first.id}:open", f"job:{second.id}:open"]
    assert [
        b["text"] for row in listing.payload["reply_markup"]["inline_keyboard"] for b in row
    ] == [
        "Open FB000001",
        "Open FB000002",
    ]


async def test_jobs_with_nothing_open(services) -> None:
    await onboard(services, ENG)
    await say(services, ENG, "/jobs")
    assert (await texts(services, ENG))[-1] == "You have no open jobs."
    await onboard(services, SUP, role="supervisor", name="Boss", skills=())
    await say(services, SUP, "/jobs")
    assert (await texts(services, SUP))[-1] == "Sorry, this is not available to you."


async def test_open_resumes_each_step(services, clock) -> None:
    job = await accepted_job(services)
    await press(services, ENG, f"job:{job.id}:open")
    resumed = await last(services, ENG)
    assert "Please call the customer now" in resumed.payload["text"]
    assert buttons(resumed) == [f"job:{job.id}:ctd"]
    await contact(services, job)
    await say(services, ENG, "/cancel")
    assert await conversation(services, job.engineer_id) is None
    await press(services, ENG, f"job:{job.id}:open")
    rows = await messages(services, ENG)
    assert "Job FB000001: next, go to the site." in rows[-2].payload["text"]
    assert buttons(rows[-2]) == [f"job:{job.id}:way"]
    assert await conversation(services, job.engineer_id) == ("job", "arrival", job.id)
    clock.set(local(11, 10))
    await arrive(services)
    await report_until(services, job, "confirm")
    await press(services, ENG, f"job:{job.id}:sub")
    await press(services, ENG, f"job:{job.id}:open")
    assert "waiting for the customer's sign-off" in (await last(services, ENG)).payload["text"]


async def test_open_resumes_mid_report_also_after_a_restart(services, clock, make_settings) -> None:
    job = await on_site(services, clock)
    await report_until(services, job, "parts")
    await say(services, ENG, "/jobs")  # leaves the conversation where it is
    restarted = build_services(make_settings(), clock=clock)
    try:
        since = await mark(restarted)
        await press(restarted, ENG, f"job:{job.id}:open")
        ask = (await messages(restarted, ENG, since))[-1]
        assert "Which parts did you use?" in ask.payload["text"]
        assert buttons(ask) == [f"job:{job.id}:nopa"]
        assert await conversation(restarted, job.engineer_id) == ("job", "report_parts", job.id)
        await say(restarted, ENG, "Relay x 2\nFuse")
        await photo(restarted, "photo-after-restart")
        d = await dispatch_of(restarted, job)
        assert d.report["step"] == "photos"
        assert d.report["draft"]["work_done"] == "Replaced the compressor relay"
        assert d.report["draft"]["photos"] == ["photo-after-restart"]
    finally:
        await restarted.sessionmaker.kw["bind"].dispose()


# ---- refusals ---------------------------------------------------------------------------------


async def test_another_engineer_cannot_touch_this_job(services, clock) -> None:
    job = await accepted_job(services, second_engineer=True)
    stranger_presses = [
        f"job:{job.id}:ctd",
        f"job:{job.id}:eta:{minute_of(local(11, 30))}",
        f"job:{job.id}:way",
        f"job:{job.id}:open",
        f"job:{job.id}:out:fixed",
        f"job:{job.id}:sub",
        f"job:{job.id}:undo",
    ]
    since = await mark(services)
    for data in stranger_presses:
        await press(services, OTHER, data)
    assert await answers(services, OTHER, since) == ["This job is not yours."] * len(
        stranger_presses
    )
    await contact(services, job)
    since = await mark(services)
    await send_kind(services, OTHER, Kind.LOCATION, latitude=NEAR[0], longitude=NEAR[1])
    assert "no job of yours is waiting" in (await texts(services, OTHER, since))[0]
    d = await dispatch_of(services, job)
    assert d.status == "contacted" and d.engineer_id == job.engineer_id
    assert [e.actor_id for e in await history(services, job) if e.actor_id] == [job.engineer_id] * 2


async def test_stale_buttons_after_the_job_moved_on(services, clock) -> None:
    job = await accepted_job(services)
    await contact(services, job)
    since = await mark(services)
    await press(services, ENG, f"job:{job.id}:ctd")
    await press(services, ENG, f"job:{job.id}:out:fixed")
    await press(services, ENG, f"job:{job.id}:eta:{minute_of(local(11, 45))}")
    await press(services, ENG, f"job:{job.id}:leta:{minute_of(local(11, 30))}")  # not late
    await press(services, ENG, f"job:{job.id}:fly")
    assert await answers(services, ENG, since) == [
        "Job FB000001 cannot do that now (it is customer contacted).",
        "Job FB000001 cannot do that now (it is customer contacted).",
        "Job FB000001 cannot do that now (it is customer contacted).",
        "This button is no longer valid.",
        "This button is no longer valid.",
    ]
    d = await dispatch_of(services, job)
    assert d.eta == local(11, 30)
    assert "new_eta" not in await kinds(services, job)
    assert (await dispatch_of(services, job)).status == "contacted"


async def test_buttons_and_text_on_a_finished_job(services, clock) -> None:
    job = await accepted_job(services)
    for status in ("signed_off", "closed", "cancelled"):
        async with services.uow() as uow:
            d = await uow.session.get(Dispatch, job.id)
            assert d is not None
            d.status = status
            await uow.commit()
        since = await mark(services)
        await press(services, ENG, f"job:{job.id}:open")
        await press(services, ENG, f"job:{job.id}:ctd")
        finished = "Job FB000001 is finished; nothing more to do on it."
        assert await answers(services, ENG, since) == [finished] * 2
        await say(services, ENG, "hello")  # the conversation still points at it
        assert await texts(services, ENG, since) == [finished]
        assert (await dispatch_of(services, job)).status == status
    assert await kinds(services, job) == ["created", "offered", "accepted"]


async def test_free_text_where_a_button_is_expected(services, clock) -> None:
    job = await accepted_job(services)
    since = await mark(services)
    await say(services, ENG, "I called her")
    rows = await messages(services, ENG, since)
    assert rows[0].payload["text"] == "Please use the buttons for this step."
    assert buttons(rows[-1]) == [f"job:{job.id}:ctd"]
    assert (await dispatch_of(services, job)).status == "accepted"
    await contact(services, job)
    clock.set(local(11, 10))
    await arrive(services)
    since = await mark(services)
    await say(services, ENG, "fixed it")
    rows = await messages(services, ENG, since)
    assert rows[0].payload["text"] == "Please use the buttons for this step."
    assert buttons(rows[-1])[0] == f"job:{job.id}:out:fixed"
    assert (await dispatch_of(services, job)).report["draft"] == {}
    await report_until(services, job, "photos")
    since = await mark(services)
    await say(services, ENG, "that's all")
    rows = await messages(services, ENG, since)
    assert rows[0].payload["text"] == "Please use the buttons for this step."
    assert buttons(rows[-1]) == [f"job:{job.id}:phd"]
    assert (await dispatch_of(services, job)).report["step"] == "photos"


# ---- the history --------------------------------------------------------------------------------


async def test_every_step_is_in_the_history(services, clock) -> None:
    job = await accepted_job(services)
    clock.advance(timedelta(minutes=3))
    await contact(services, job)
    clock.set(local(10, 30))
    await press(services, ENG, f"job:{job.id}:way")
    await press(services, ENG, f"job:{job.id}:omw:{minute_of(local(11))}")
    clock.set(local(11, 2))
    await arrive(services, NEAR)
    await report_until(services, job, "confirm")
    clock.set(local(12))
    await press(services, ENG, f"job:{job.id}:sub")
    rows = await history(services, job)
    rows = rows[: [e.kind for e in rows].index("report_submitted") + 1]  # sign-off follows
    assert [(e.kind, e.from_status, e.to_status) for e in rows] == [
        ("created", "new", None),
        ("offered", "new", "offered"),
        ("accepted", "offered", "accepted"),
        ("customer_contacted", "accepted", "contacted"),
        ("on_my_way", "contacted", "en_route"),
        ("arrived", "en_route", "on_site"),
        ("report_submitted", "on_site", "awaiting_signoff"),
    ]
    assert [e.actor_id for e in rows[2:]] == [job.engineer_id] * 5
    assert [e.at.astimezone(SHANGHAI).strftime("%H:%M") for e in rows[2:]] == [
        "09:00",
        "09:03",
        "10:30",
        "11:02",
        "12:00",
    ]
    assert (rows[5].latitude, rows[5].longitude) == NEAR
    assert all(e.latitude is None for e in rows if e.kind != "arrived")
    d = await dispatch_of(services, job)
    assert d.status == DispatchStatus.AWAITING_SIGNOFF


# ---- parsing ------------------------------------------------------------------------------------


def test_parse_parts() -> None:
    assert parse_parts("Relay x 2\nFuse") == [
        {"name": "Relay", "quantity": 2},
        {"name": "Fuse", "quantity": 1},
    ]
    assert parse_parts("• Box\n\n  Cable 5m X3 \n- Fuse*4\nValve × 1\nBolt M8x20\nRelay x2") == [
        {"name": "Box", "quantity": 1},
        {"name": "Cable 5m", "quantity": 3},
        {"name": "Fuse", "quantity": 4},
        {"name": "Valve", "quantity": 1},
        {"name": "Bolt M8x20", "quantity": 1},
        {"name": "Relay", "quantity": 2},
    ]
    bad_lines = ("", "x 2", "2", "Relay x 0", "Relay x -1", "Relay x 10000", "R x " + "9" * 50)
    for bad in (*bad_lines, "a" * 201):
        with pytest.raises(DomainError):
            parse_parts(bad)


def test_parse_time_picks_the_sensible_day() -> None:
    from types import SimpleNamespace

    window = SimpleNamespace(window_start=local(11), window_end=local(14))
    now = local(9).astimezone(ZoneInfo("UTC"))
    tz = "Asia/Shanghai"
    for typed in ("12:45", "1245", "12点45", "12.45", " 12：45 "):
        assert parse_time(typed, window, now, tz) == local(12, 45), typed  # type: ignore[arg-type]
    assert parse_time("12", window, now, tz) == local(12)  # type: ignore[arg-type]
    assert parse_time("8:00", window, now, tz) == local(8)  # type: ignore[arg-type]
    assert parse_time("23:10", window, now, tz) == local(23, 10)  # type: ignore[arg-type]
    assert parse_time("noon", window, now, tz) is None  # type: ignore[arg-type]
    assert parse_time("24:00", window, now, tz) is None  # type: ignore[arg-type]
    late = local(18, 30)  # after the window: past the midnight means tomorrow
    tomorrow_1am = datetime(2026, 12, 1, 1, 0, tzinfo=SHANGHAI)
    assert parse_time("01:00", window, late, tz) == tomorrow_1am  # type: ignore[arg-type]
    assert parse_time("18:00", window, late, tz) == local(18)  # type: ignore[arg-type]
