"""DOMAIN.md §6: report figures on a seeded data set, checked against values computed by hand;
reports on demand, in the reader's language, with a CSV; scheduled runs sent once."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select

from bot.bootstrap import build_services
from bot.core.clock import FakeClock
from bot.db.models import Customer, Dispatch, DispatchEvent, Outbox, Site, User
from bot.db.models.complaints import Complaint, ComplaintEvent
from bot.db.models.customer import Feedback, SignOff
from bot.db.models.supervision import MajorFault, ReportRun
from bot.flows import reports
from bot.scheduler.sweep import build_scheduler
from bot.services.errors import DomainError
from tests.conftest import outbox_rows, texts_to
from tests.helpers import new_staff, onboard, say

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUPERVISOR, SUPERVISOR_ZH, MANAGER, ENGINEER_CHAT, STRANGER = 21, 22, 31, 11, 99
FRIDAY_1600 = datetime(2026, 12, 4, 16, 0, tzinfo=SHANGHAI).astimezone(UTC)


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    """A local time (Asia/Shanghai) in late 2026, as UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def nov(day: int, hour: int, minute: int = 0) -> datetime:
    return at(day, hour, minute, month=11)


# ---- the seeded data set ----------------------------------------------------------------------
#
# Week 2026-W49 is Monday 30 Nov – Sunday 6 Dec; "now" is Friday 4 Dec 16:00 in Shanghai.
#
# job  engineer  window (local)        arrival            work report  status
# J1   A         Mon 30 Nov 09–12      10:00 in window    yes          signed_off   rating 5
# J2   A         Tue  1 Dec 09–12      12:30 late         yes (13:30)  awaiting_signoff  rating 4
# J3   A         Wed  2 Dec 09–12      09:30 in window    yes          closed
# J4   B         Wed  2 Dec 14–17      —  (missed)        no           contacted
# J5   B         Thu  3 Dec 09–12      09:45 in window    no           on_site
# J6   B         Thu  3 Dec 14–17      —                  no           cancelled
# J7   —         Fri  4 Dec 18–20      —  (not yet due)   no           unassigned
# J8   A         Sun 29 Nov 09–12      09:30 in window    yes          closed       rating 1
RATINGS = {"J1": 5, "J2": 4, "J8": 1}


async def seed(services) -> dict[str, Any]:
    a = (await new_staff(services, "engineer", "Wang Wei")).user
    b = (await new_staff(services, "engineer", "Chen Jie")).user
    owner = (await onboard(services, SUPERVISOR, "supervisor", "Zhou Min", ())).user
    jobs: dict[str, int] = {}
    async with services.uow() as uow:
        customer = Customer(name="Acme Foods", created_at=nov(1, 9))
        uow.session.add(customer)
        await uow.session.flush()
        site = Site(customer_id=customer.id, address="88 Century Avenue")
        uow.session.add(site)
        await uow.session.flush()

        def job(
            name: str,
            engineer: User | None,
            start: datetime,
            status: str,
            *,
            arrived: datetime | None = None,
            in_window: bool | None = None,
            reported: datetime | None = None,
        ) -> Dispatch:
            d = Dispatch(
                number=f"FB00000{name[1]}",
                customer_id=customer.id,
                site_id=site.id,
                contact_name="Li Na",
                contact_phone="+8613800138000",
                equipment_model="CH-200",
                quantity=1,
                serials=[],
                service_type="repair",
                window_start=start,
                window_end=start + timedelta(hours=3 if name != "J7" else 2),
                status=status,
                engineer_id=engineer.id if engineer else None,
                source="api",
                arrival={"in_window": in_window} if arrived else {},
                arrived_at=arrived,
                report={},
                reported_at=reported,
                created_at=nov(28, 9),
            )
            uow.session.add(d)
            return d

        seeded = [
            job(
                "J1",
                a,
                nov(30, 9),
                "signed_off",
                arrived=nov(30, 10),
                in_window=True,
                reported=nov(30, 11),
            ),
            job(
                "J2",
                a,
                at(1, 9),
                "awaiting_signoff",
                arrived=at(1, 12, 30),
                in_window=False,
                reported=at(1, 13, 30),
            ),
            job(
                "J3",
                a,
                at(2, 9),
                "closed",
                arrived=at(2, 9, 30),
                in_window=True,
                reported=at(2, 11),
            ),
            job("J4", b, at(2, 14), "contacted"),
            job("J5", b, at(3, 9), "on_site", arrived=at(3, 9, 45), in_window=True),
            job("J6", b, at(3, 14), "cancelled"),
            job("J7", None, at(4, 18), "unassigned"),
            job(
                "J8",
                a,
                nov(29, 9),
                "closed",
                arrived=nov(29, 9, 30),
                in_window=True,
                reported=nov(29, 11),
            ),
        ]
        await uow.session.flush()
        for name, d in zip(("J1", "J2", "J3", "J4", "J5", "J6", "J7", "J8"), seeded, strict=True):
            jobs[name] = d.id
        uow.session.add_all(
            [
                DispatchEvent(
                    dispatch_id=jobs["J2"], at=at(1, 9, 30), kind="contact_overdue", data={}
                ),
                DispatchEvent(
                    dispatch_id=jobs["J8"], at=nov(29, 9, 20), kind="contact_overdue", data={}
                ),
            ]
        )

        def complaint(
            number: str,
            engineer: User | None,
            created: datetime,
            status: str,
            *breaches: tuple[datetime, int, str],
            **fields: Any,
        ) -> None:
            c = Complaint(
                number=number,
                status=status,
                category=fields.pop("category", "other"),
                source="chat",
                engineer_id=engineer.id if engineer else None,
                created_at=created,
                updated_at=created,
                meta={},
                attachments=[],
                **fields,
            )
            uow.session.add(c)
            pending.append((c, breaches))

        pending: list[tuple[Complaint, tuple[tuple[datetime, int, str], ...]]] = []
        # C1: nobody took it in time on Monday (response breach); closed on Tuesday.
        complaint(
            "TS000001",
            a,
            nov(30, 10),
            "closed",
            (nov(30, 10, 30), 1, "response"),
            (nov(30, 11, 30), 2, "response"),
            category="late_no_show",
            response_due=nov(30, 10, 30),
            closed_at=at(1, 9),
        )
        # C2: taken, not resolved by Thursday 09:00 (resolution breach, past due now).
        complaint(
            "TS000002",
            b,
            at(2, 9),
            "open",
            (at(3, 9), 1, "resolution"),
            category="quality",
            owner_id=owner.id,
            response_due=at(2, 9, 30),
            resolution_due=at(3, 9),
        )
        # C3: from the week before; "not solved" on Monday (an escalation, not a breach);
        # closed on Tuesday.
        complaint(
            "TS000003",
            a,
            nov(29, 10),
            "closed",
            (nov(30, 12), 1, "not_solved"),
            closed_at=at(1, 10),
        )
        # C4: Thursday, nobody has taken it yet; its deadlines are still ahead.
        complaint("TS000004", a, at(3, 15), "new", response_due=at(5, 10), resolution_due=at(6, 10))
        # C5: Friday, paused waiting for the customer: its clock stands, not past due.
        complaint("TS000005", None, at(4, 9), "waiting", resolution_due=at(4, 10))
        await uow.session.flush()
        for c, breaches in pending:
            for when, level, reason in breaches:
                uow.session.add(
                    ComplaintEvent(
                        complaint_id=c.id,
                        at=when,
                        kind="escalated",
                        data={"level": level, "reason": reason},
                    )
                )

        for number, reported, closed in (
            ("MF000001", nov(29, 8), at(2, 12)),
            ("MF000002", at(1, 11), None),
        ):
            uow.session.add(
                MajorFault(
                    number=number,
                    status="closed" if closed else "open",
                    occurred_at=reported,
                    place="Cold store",
                    symptoms="Stopped",
                    plan="Repair",
                    reported_by=owner.id,
                    reported_at=reported,
                    updated_at=reported,
                    closed_at=closed,
                    analysis={},
                )
            )
        await uow.commit()
    return {"a": a, "b": b, "jobs": jobs}


@pytest.fixture
def ratings() -> dict[str, int]:
    """Feedback ratings (客户服务回馈单) to seed, by job."""
    return dict(RATINGS)


async def seeded(services, ratings: dict[str, int]) -> dict[str, Any]:
    services.clock.set(FRIDAY_1600)
    data = await seed(services)
    async with services.uow() as uow:
        customer = User(
            role="customer", name="Li Na", active=True, on_duty=False, created_at=nov(1, 9)
        )
        uow.session.add(customer)
        await uow.session.flush()
        for name, value in ratings.items():
            uow.session.add(
                Feedback(
                    dispatch_id=data["jobs"][name],
                    customer_user_id=customer.id,
                    rating=value,
                    created_at=FRIDAY_1600,
                )
            )
        for name, status in (("J1", "confirmed"), ("J2", "rejected"), ("J3", "confirmed")):
            uow.session.add(
                SignOff(
                    dispatch_id=data["jobs"][name],
                    method="telegram",
                    status=status,
                    locale="en",
                    text="work order",
                    text_sha256="0" * 64,
                    created_at=FRIDAY_1600,
                )
            )
        await uow.commit()
    return data


async def figures(services, kind: str, period: str = "") -> reports.Figures:
    async with services.uow() as uow:
        when = reports.parse_period(kind, period, uow.clock.now(), "Asia/Shanghai")
        return await reports.gather(uow, when)


# ---- periods ----------------------------------------------------------------------------------


def test_periods_are_calendar_periods_in_the_organisations_time_zone() -> None:
    tz = "Asia/Shanghai"
    week = reports.period_of("weekly", date(2026, 12, 4), tz)
    assert week.key == "2026-W49" and week.first_day == date(2026, 11, 30)
    assert week.start == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    assert week.end == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    month = reports.period_of("monthly", date(2024, 2, 10), tz)
    assert (month.key, month.last_day) == ("2024-02", date(2024, 2, 29))
    assert reports.period_of("weekly", date(2027, 1, 1), tz).key == "2026-W53"
    # what a scheduled run covers: yesterday, this week, last month
    assert reports.default_period("daily", FRIDAY_1600, tz).key == "2026-12-03"
    assert reports.default_period("weekly", FRIDAY_1600, tz).key == "2026-W49"
    assert reports.default_period("monthly", FRIDAY_1600, tz).key == "2026-11"
    early = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)  # 1 Jan 2027 01:00 local
    assert reports.default_period("monthly", early, tz).key == "2026-12"
    assert reports.parse_period("weekly", "2026-12-02", FRIDAY_1600, tz).key == "2026-W49"
    assert reports.parse_period("monthly", "2026-9", FRIDAY_1600, tz).key == "2026-09"


@pytest.mark.parametrize(
    ("kind", "text", "template"),
    [
        ("daily", "yesterday-ish", "rep_err_period"),
        ("daily", "2026-02-30", "rep_err_period"),
        ("weekly", "2026-W60", "rep_err_period"),
        ("monthly", "2026-13", "rep_err_period"),
        ("monthly", "11/2026", "rep_err_period"),
        ("daily", "2026-12-05", "rep_err_future"),
        ("monthly", "2027-01", "rep_err_future"),
    ],
)
def test_bad_periods_are_refused(kind: str, text: str, template: str) -> None:
    with pytest.raises(DomainError) as err:
        reports.parse_period(kind, text, FRIDAY_1600, "Asia/Shanghai")
    assert err.value.template == template


# ---- figures against hand-computed values -----------------------------------------------------


async def test_weekly_figures_match_the_hand_computed_values(services, ratings) -> None:
    await seeded(services, ratings)
    f = await figures(services, "weekly")
    t = f.total
    assert f.period.key == "2026-W49" and f.until == FRIDAY_1600
    assert (t.jobs, t.cancelled, t.done, t.open) == (6, 1, 3, 3)
    assert (t.arrived, t.on_time, t.late, t.missed) == (4, 3, 1, 1)
    assert t.on_time_rate == 75  # 3 of 4 arrivals
    assert (t.signed_off, t.signoff_rate) == (2, 67)  # 2 of 3 done
    assert t.average_rating == 4.5  # (5 + 4) / 2
    assert f.contact_missed == 1
    assert (f.complaints_opened, f.complaints_closed, f.complaints_open) == (4, 2, 3)
    assert f.sla_breaches == 2  # C1 not taken in time, C2 not resolved in time
    assert [c.number for c in f.complaints_past_due] == ["TS000002"]
    assert f.complaints_past_due[0].owner == "Zhou Min"
    assert f.faults_opened == ["MF000002"] and f.faults_closed == ["MF000001"]
    assert f.faults_open == ["MF000002"]
    wang, chen = f.engineers
    assert (wang.name, wang.jobs, wang.done, wang.arrived, wang.on_time) == ("Wang Wei", 3, 3, 3, 2)
    assert (wang.on_time_rate, wang.signed_off, wang.signoff_rate) == (67, 2, 67)
    assert (wang.average_rating, wang.complaints) == (4.5, 2)
    assert (chen.name, chen.jobs, chen.done, chen.arrived, chen.on_time) == ("Chen Jie", 2, 0, 1, 1)
    assert (chen.on_time_rate, chen.missed, chen.signoff_rate) == (100, 1, None)
    assert (chen.average_rating, chen.complaints, chen.cancelled) == (None, 1, 1)
    assert [(e.kind, e.number) for e in f.escalations] == [
        ("signoff_overdue", "FB000002"),
        ("late", "FB000004"),
        ("unassigned", "FB000007"),
    ]


async def test_the_figures_read_jobs_as_plain_rows(services, ratings) -> None:
    """A month of a large company is tens of thousands of jobs (and more are open): loading
    each as a whole ORM object held the database, on SQLite the whole bot, for seconds."""
    await seeded(services, ratings)
    loaded: list[int] = []

    def on_load(job: Dispatch, _context: Any) -> None:
        loaded.append(job.id)

    event.listen(Dispatch, "load", on_load)
    try:
        async with services.uow() as uow:
            week = reports.parse_period("weekly", "", uow.clock.now(), "Asia/Shanghai")
            f = await reports.gather(uow, week)
    finally:
        event.remove(Dispatch, "load", on_load)
    assert (f.total.jobs, len(f.escalations)) == (6, 3)
    assert loaded == []


async def test_daily_digest_figures_for_a_given_day(services, ratings) -> None:
    await seeded(services, ratings)
    f = await figures(services, "daily", "2026-12-02")
    t = f.total
    assert (t.jobs, t.done, t.open, t.arrived, t.on_time, t.missed) == (2, 1, 1, 1, 1, 1)
    assert [(j.number, j.missed) for j in f.jobs] == [("FB000003", False), ("FB000004", True)]
    assert (f.complaints_opened, f.complaints_open, f.contact_missed) == (1, 3, 0)
    assert [c.number for c in f.complaints_past_due] == ["TS000002"]
    # by default: yesterday (Thursday)
    thursday = await figures(services, "daily")
    assert thursday.period.key == "2026-12-03"
    assert (thursday.total.jobs, thursday.total.cancelled, thursday.total.open) == (1, 1, 1)


async def test_monthly_figures_for_last_month(services, ratings) -> None:
    await seeded(services, ratings)
    f = await figures(services, "monthly")
    t = f.total
    assert f.period.key == "2026-11"
    assert (t.jobs, t.done, t.arrived, t.on_time, t.signed_off) == (2, 2, 2, 2, 2)
    assert (t.on_time_rate, t.signoff_rate, t.average_rating) == (100, 100, 3.0)  # (5 + 1) / 2
    assert (f.complaints_opened, f.complaints_closed, f.sla_breaches) == (2, 0, 1)
    assert f.complaint_categories == {"late_no_show": 1, "other": 1}
    assert f.faults_opened == ["MF000001"] and f.faults_closed == []
    assert f.contact_missed == 1


async def test_rates_round_half_up_and_no_data_gives_no_rate() -> None:
    assert reports.rate(1, 8) == 13  # 12.5
    assert reports.rate(2, 3) == 67
    assert reports.rate(0, 0) is None
    assert reports.Tally(ratings=[4, 5, 5]).average_rating == 4.7


async def test_sign_off_and_rating_rows_of_the_customer_area(services, ratings) -> None:
    data = await seeded(services, ratings)
    jobs = data["jobs"]
    async with services.uow() as uow:
        ids = list(jobs.values())
        assert await reports.signed_off_hook(uow, ids) == {jobs["J1"], jobs["J3"]}  # not J2
        assert await reports.ratings_hook(uow, ids) == {jobs["J1"]: 5, jobs["J2"]: 4, jobs["J8"]: 1}
        assert await reports.ratings_hook(uow, []) == {}


# ---- on demand --------------------------------------------------------------------------------


def csv_of(row: Outbox) -> list[list[str]]:
    raw = base64.b64decode(row.payload["document_b64"])
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets read UTF-8
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


async def test_weekly_report_on_demand_with_csv_per_engineer(services, ratings) -> None:
    await seeded(services, ratings)
    await say(services, SUPERVISOR, "/report weekly")
    message, document = (await outbox_rows(services, SUPERVISOR))[-2:]
    text = message.payload["text"]
    assert "Weekly report 2026-W49 (2026-11-30 – 2026-12-06)" in text
    assert "So far: up to 2026-12-04 16:00" in text
    assert "Jobs: 6 (work done 3, still open 3, cancelled 1)" in text
    assert "On-time arrival rate: 75% (3 of 4 arrivals)" in text
    assert "Sign-off rate: 67% (2 of 3 jobs done)" in text
    assert "Average rating: 4.5 (2 ratings)" in text
    assert "Complaints: 4 opened, 2 closed; 3 open now" in text
    assert "SLA breaches: 2" in text
    assert (
        "• Wang Wei (E0001): 3 jobs · on time 67% · signed off 67% · ★ 4.5 · complaints 2" in text
    )
    assert "• Chen Jie (E0002): 2 jobs · on time 100% · signed off — · ★ — · complaints 1" in text
    assert document.method == "sendDocument" and document.chat_id == SUPERVISOR
    assert document.payload["caption"] == "CSV: weekly report 2026-W49"
    assert document.payload["document_name"] == "fieldbot-weekly-2026-W49.csv"
    rows = csv_of(document)
    assert rows[0] == [
        "Engineer",
        "Staff ID",
        "Jobs",
        "Work done",
        "Arrivals",
        "Arrived on time",
        "On-time arrival rate",
        "No arrival after the window",
        "Signed off",
        "Sign-off rate",
        "Average rating",
        "Complaints",
    ]
    assert rows[1] == ["Wang Wei", "E0001", "3", "3", "3", "2", "67%", "0", "2", "67%", "4.5", "2"]
    assert rows[2] == ["Chen Jie", "E0002", "2", "0", "1", "1", "100%", "1", "0", "", "", "1"]
    assert rows[3] == ["Total", "", "6", "3", "4", "3", "75%", "1", "2", "67%", "4.5", "4"]


async def test_daily_digest_on_demand_lists_late_jobs_and_what_is_unresolved(
    services, ratings
) -> None:
    await seeded(services, ratings)
    await say(services, SUPERVISOR, "/report daily 2026-12-02")
    message, document = (await outbox_rows(services, SUPERVISOR))[-2:]
    text = message.payload["text"]
    assert "Daily digest for the morning meeting: 2026-12-02" in text
    assert "Jobs of the day: 2 (work done 1, still open 1, cancelled 0)" in text
    assert "Late arrivals and no-shows: 1" in text
    assert "• FB000004 · Acme Foods · Chen Jie · no arrival (window ended 2026-12-02 17:00)" in text
    assert "1 new that day; 3 open now, 1 of them past due" in text
    assert "• TS000002 — due 2026-12-03 09:00 · owner Zhou Min" in text
    assert "• FB000002 — sign-off overdue · Wang Wei" in text
    assert "• FB000004 — window over, no check-in · Chen Jie" in text
    assert "• FB000007 — waiting for an engineer" in text
    assert "Major faults open: MF000002" in text
    rows = csv_of(document)
    assert rows[0][:3] == ["Job", "Customer", "Service type"]
    assert rows[1] == [
        "FB000003",
        "Acme Foods",
        "repair",
        "Wang Wei",
        "2026-12-02 09:00",
        "2026-12-02 12:00",
        "closed",
        "2026-12-02 09:30",
        "yes",
        "",
    ]
    assert rows[2][0] == "FB000004" and rows[2][6] == "customer contacted"
    assert rows[2][8] == "no arrival"


async def test_monthly_report_on_demand(services, ratings) -> None:
    await seeded(services, ratings)
    await onboard(services, MANAGER, "manager", "Liu Yang", ())
    await say(services, MANAGER, "/report monthly")
    message, document = (await outbox_rows(services, MANAGER))[-2:]
    text = message.payload["text"]
    assert "Monthly service supervision report 2026-11 (2026-11-01 – 2026-11-30)" in text
    assert "So far" not in text
    assert "Major faults: 1 reported, 0 closed; open now: MF000002" in text
    assert "Complaints by category: late or no-show 1, other 1" in text
    assert csv_of(document)[-1][:3] == ["Total", "", "2"]


async def test_reports_are_for_supervisors_and_managers_only(services, ratings) -> None:
    await seeded(services, ratings)
    await onboard(services, ENGINEER_CHAT, "engineer", "Wu Bo")
    await say(services, ENGINEER_CHAT, "/report weekly")
    assert (await texts_to(services, ENGINEER_CHAT))[-1] == "Sorry, this is not available to you."
    await say(services, STRANGER, "/report weekly")
    from tests.helpers import press

    await press(services, ENGINEER_CHAT, "rep:0:weekly")
    for chat in (ENGINEER_CHAT, STRANGER):
        rows = await outbox_rows(services, chat)
        assert not [r for r in rows if r.method == "sendDocument"]
        assert "Jobs:" not in " ".join(r.payload.get("text", "") for r in rows)


async def test_bad_report_requests_get_a_polite_reply_and_send_nothing(services, ratings) -> None:
    await seeded(services, ratings)
    for request, answer in (
        ("/report yearly", "Write /report daily, /report weekly or /report monthly"),
        ("/report weekly 2026-W49 extra", "Write /report daily"),
        ("/report weekly 2026-W77", "Write it like 2026-W48"),
        ("/report monthly 2027-03", "that period has not begun"),
    ):
        await say(services, SUPERVISOR, request)
        assert answer in (await texts_to(services, SUPERVISOR))[-1]
    assert not [r for r in await outbox_rows(services, SUPERVISOR) if r.method == "sendDocument"]
    await say(services, SUPERVISOR, "/report")
    choose = (await outbox_rows(services, SUPERVISOR))[-1]
    labels = [b["text"] for row in choose.payload["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["Daily", "Weekly", "Monthly"]
    from tests.helpers import press

    await press(services, SUPERVISOR, "rep:0:daily")
    assert (await outbox_rows(services, SUPERVISOR))[-1].method == "sendDocument"


async def test_each_reader_gets_the_csv_in_their_own_language(services, ratings) -> None:
    await seeded(services, ratings)
    await onboard(services, SUPERVISOR_ZH, "supervisor", "Qian Hui", (), language="zh-hans")
    await onboard(services, MANAGER, "manager", "Liu Yang", ())
    async with services.uow() as uow:
        period = reports.parse_period("daily", "2026-12-02", uow.clock.now(), "Asia/Shanghai")
        readers = await reports.audience(uow, "weekly")
        assert [r.name for r in readers] == ["Zhou Min", "Qian Hui", "Liu Yang"]
        assert await reports.send_report(uow, period, readers, urgent=False) == 3
        await uow.commit()
    docs = {r.chat_id: csv_of(r) for r in await outbox_rows(services) if r.method == "sendDocument"}
    assert docs[SUPERVISOR] == docs[MANAGER]
    assert docs[SUPERVISOR][0][1] == "Customer" and docs[SUPERVISOR][1][2] == "repair"
    assert docs[SUPERVISOR_ZH][0][1] == "客户" and docs[SUPERVISOR_ZH][1][2] == "维修"
    assert docs[SUPERVISOR_ZH][2][6] == "已联系客户"


# ---- scheduled runs ---------------------------------------------------------------------------


async def report_runs(services) -> list[ReportRun]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(ReportRun).order_by(ReportRun.id)))


async def documents(services) -> int:
    async with services.uow() as uow:
        stmt = select(func.count()).select_from(Outbox).where(Outbox.method == "sendDocument")
        return int(await uow.session.scalar(stmt) or 0)


async def test_two_workers_send_a_scheduled_report_once(services, ratings, make_settings) -> None:
    await seeded(services, ratings)
    await onboard(services, MANAGER, "manager", "Liu Yang", ())
    other = build_services(make_settings(), clock=services.clock)  # a second worker process
    try:
        results = await asyncio.gather(
            reports.run_scheduled(services, "weekly"),
            reports.run_scheduled(other, "weekly"),
            reports.run_scheduled(services, "weekly"),
        )
    finally:
        await other.sessionmaker.kw["bind"].dispose()
    assert sorted(results) == [False, False, True]
    [run] = await report_runs(services)
    assert (run.kind, run.period, run.recipients) == ("weekly", "2026-W49", 2)
    assert await documents(services) == 2  # the supervisor's and the manager's, once each
    assert len([t for t in await texts_to(services, MANAGER) if "Weekly report" in t]) == 1


async def test_scheduled_reports_go_to_their_readers_and_wait_for_day_time(
    make_settings, db_url, ratings
) -> None:
    from tests.conftest import reset_database

    await reset_database(db_url)
    clock = FakeClock(datetime(2026, 12, 4, 13, 0, tzinfo=UTC))  # 21:00 in Shanghai
    services = build_services(make_settings(quiet_hours="21:00-08:00"), clock=clock)
    try:
        await seed(services)
        await onboard(services, MANAGER, "manager", "Liu Yang", ())
        assert await reports.run_scheduled(services, "monthly")
        assert await reports.run_scheduled(services, "daily")
        rows = [
            r
            for r in await outbox_rows(services)
            if r.method in ("sendMessage", "sendDocument") and r.created_at == clock.now()
        ]
        monthly = [r for r in rows if "Monthly" in r.payload.get("text", "")]
        assert [r.chat_id for r in monthly] == [MANAGER]
        daily = [r for r in rows if "Daily digest" in r.payload.get("text", "")]
        assert [r.chat_id for r in daily] == [SUPERVISOR]
        morning = datetime(2026, 12, 5, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
        docs = [r for r in rows if r.method == "sendDocument"]
        assert len(docs) == 2
        assert {r.not_before for r in monthly + daily + docs} == {morning}
    finally:
        await services.sessionmaker.kw["bind"].dispose()


async def test_a_run_missed_while_down_is_sent_on_start_once(services, ratings) -> None:
    await seeded(services, ratings)
    assert await reports.catch_up(services) == []  # never sent before: nothing to catch up
    services.clock.set(datetime(2026, 12, 4, 0, 30, tzinfo=UTC))  # Friday 08:30 local
    assert await reports.run_scheduled(services, "daily")
    services.clock.set(datetime(2026, 12, 6, 2, 0, tzinfo=UTC))  # Sunday 10:00: down since
    assert await reports.catch_up(services) == ["daily"]
    assert [r.period for r in await report_runs(services)] == ["2026-12-03", "2026-12-05"]
    assert await reports.catch_up(services) == []
    assert len(await report_runs(services)) == 2


async def test_the_catch_up_runs_even_when_the_start_keeps_the_loop_busy(
    services, monkeypatch
) -> None:
    """APScheduler drops a job that starts more than its grace time late (1 s by default): a
    start that holds the event loop (a large outbox write, a slow disk) must not lose the
    reports that fell while the bot was down."""
    ran = asyncio.Event()

    async def catch_up(_services: Any) -> list[str]:
        ran.set()
        return []

    monkeypatch.setattr(reports, "catch_up", catch_up)
    scheduler = build_scheduler(services)
    scheduler.start()
    try:
        time.sleep(1.5)  # noqa: ASYNC251 -- on purpose: the job, due at start, is now late
        await asyncio.wait_for(ran.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)


async def test_reports_are_cron_jobs_in_the_organisations_time_zone(make_settings, clock) -> None:
    services = build_services(make_settings(report_daily_cron="off"), clock=clock)
    try:
        scheduler = build_scheduler(services)
        assert scheduler.get_job("report-daily") is None
        weekly = scheduler.get_job("report-weekly").trigger
        monthly = scheduler.get_job("report-monthly").trigger
        assert weekly.get_next_fire_time(None, clock.now()) == datetime(
            2026, 12, 4, 16, 0, tzinfo=SHANGHAI
        )
        assert monthly.get_next_fire_time(None, clock.now()) == datetime(
            2026, 12, 1, 9, 0, tzinfo=SHANGHAI
        )
        assert scheduler.get_job("report-catch-up") is not None
    finally:
        await services.sessionmaker.kw["bind"].dispose()


def test_report_times_are_crontab_settings(make_settings) -> None:
    settings = make_settings(report_weekly_cron="0 16 * * 5", report_daily_cron="0 9 * * 1-5")
    assert settings.report_weekly_cron == "0 16 * * fri"  # crontab counts Sunday as 0
    assert settings.report_daily_cron == "0 9 * * mon-fri"
    from bot.config import SettingsError

    with pytest.raises(SettingsError, match="REPORT_MONTHLY_CRON"):
        make_settings(report_monthly_cron="at nine")


def test_cli_report_show_prints_the_figures(services, monkeypatch, db_url, tmp_path) -> None:
    from click.testing import CliRunner

    from bot.cli import main as cli

    monkeypatch.setenv("DATABASE_URL", db_url)
    out = CliRunner().invoke(
        cli, ["report", "show", "monthly", "2020-01", "--csv", str(tmp_path / "m.csv")]
    )
    assert out.exit_code == 0, out.output
    assert "Monthly service supervision report 2020-01" in out.output and "<b>" not in out.output
    assert (tmp_path / "m.csv").read_text(encoding="utf-8-sig").startswith("Engineer,Staff ID")
    bad = CliRunner().invoke(cli, ["report", "show", "weekly", "soon"])
    assert bad.exit_code == 1 and "error: period" in bad.output
