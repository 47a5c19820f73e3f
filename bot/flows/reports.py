"""Reports (DOMAIN.md §6): the daily digest (晨会), the weekly report (周例会) and the monthly
service supervision report (服务监督报告), as a chat message with the figures plus a CSV, both
in the reader's language.

Periods are calendar periods in ``TIMEZONE`` (``Period``): a day (``2026-11-30``), an ISO week
Monday–Sunday (``2026-W48``) or a month (``2026-11``). A scheduled run (cron settings
``REPORT_*_CRON``) and ``/report KIND`` without a period cover the same one: yesterday for the
daily digest, the current week up to now for the weekly report (it runs on Friday afternoon),
the previous month for the monthly report.

The figures, all from the database:

- *jobs*: dispatches whose window starts in the period, not cancelled; *done*: work reported;
  *open*: still before the work report; *cancelled* apart.
- *arrivals*: jobs checked in; *on time*: checked in inside the promised window
  (``arrival["in_window"]``); on-time rate = on time / arrivals. *Late arrivals* are check-ins
  outside the window; *missed* are jobs whose window is over without a check-in.
- *signed off*: jobs in ``signed_off``/``closed`` or with a confirmed sign-off row (in chat or
  on paper); sign-off rate = signed off / done. *Average rating*: the customers' feedback
  ratings (1–5) of the jobs.
- *15-minute contact missed*: ``contact_overdue`` history rows in the period.
- *complaints*: opened in the period; closed in the period; open now (not closed, resolved
  ones waiting for the call-back included); past due now (by the complaints area's breach
  rules, see ``_past_due``). *SLA breaches*: first-response and resolution deadlines missed in
  the period, as the complaints area escalated them (each breach once).
- *major faults*: reported, closed in the period, open now.
- per engineer: the same job figures for the jobs each engineer held, and complaints about them.

A scheduled report is sent once per (kind, period) even with several workers: the run claims
a ``report_runs`` row with that unique key in the same transaction that queues the messages.
A run missed while the bot was down is sent on start (``catch_up``), once a first run of that
kind exists.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.config import Settings
from bot.core.callbacks import cb
from bot.core.enums import OPEN_DISPATCH_STATUSES, DispatchStatus, Priority, Role
from bot.core.messages import Button, Msg
from bot.db.models import Customer, Dispatch, DispatchEvent, User
from bot.db.models.complaints import Complaint, ComplaintEvent
from bot.db.models.customer import Feedback, SignOff
from bot.db.models.supervision import MajorFault, ReportRun
from bot.flows import complaints
from bot.services.context import Services
from bot.services.errors import DomainError
from bot.services.report_files import csv_bytes, queue_document
from bot.services.staff import staff_with_role
from bot.services.uow import UnitOfWork

DAILY, WEEKLY, MONTHLY = "daily", "weekly", "monthly"
KINDS = (DAILY, WEEKLY, MONTHLY)
ALIASES = {
    "day": DAILY,
    "d": DAILY,
    "日报": DAILY,
    "晨会": DAILY,
    "week": WEEKLY,
    "w": WEEKLY,
    "周报": WEEKLY,
    "周例会": WEEKLY,
    "month": MONTHLY,
    "m": MONTHLY,
    "月报": MONTHLY,
}
EXAMPLES = {DAILY: "2026-11-30", WEEKLY: "2026-W48", MONTHLY: "2026-11"}
DONE_STATUSES = frozenset(
    {DispatchStatus.AWAITING_SIGNOFF, DispatchStatus.SIGNED_OFF, DispatchStatus.CLOSED}
)
SIGNED_STATUSES = frozenset({DispatchStatus.SIGNED_OFF, DispatchStatus.CLOSED})
NOT_ARRIVED = OPEN_DISPATCH_STATUSES - {DispatchStatus.ON_SITE}  # missed once the window ends
CHAT_ROWS = 25  # rows listed in the chat message; the CSV has them all
CATCH_UP = {DAILY: timedelta(days=2), WEEKLY: timedelta(days=8), MONTHLY: timedelta(days=32)}


# ---- periods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A calendar period in the organisation's zone: [start, end) as UTC instants."""

    kind: str
    key: str
    first_day: date
    last_day: date
    start: datetime
    end: datetime


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def period_of(kind: str, day: date, tz: str) -> Period:
    """The period of ``kind`` that contains the local date ``day``."""
    zone = ZoneInfo(tz)
    if kind == DAILY:
        first, last, key = day, day, day.isoformat()
    elif kind == WEEKLY:
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=6)
        year, week, _ = first.isocalendar()
        key = f"{year}-W{week:02d}"
    elif kind == MONTHLY:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        key = f"{first.year}-{first.month:02d}"
    else:
        raise ValueError(kind)
    return Period(
        kind=kind,
        key=key,
        first_day=first,
        last_day=last,
        start=_midnight(first, zone),
        end=_midnight(last + timedelta(days=1), zone),
    )


def default_period(kind: str, now: datetime, tz: str) -> Period:
    """What a scheduled run at ``now`` covers: yesterday, this week, last month."""
    today = now.astimezone(ZoneInfo(tz)).date()
    if kind == DAILY:
        return period_of(DAILY, today - timedelta(days=1), tz)
    if kind == WEEKLY:
        return period_of(WEEKLY, today, tz)
    return period_of(MONTHLY, today.replace(day=1) - timedelta(days=1), tz)


def parse_period(kind: str, text: str, now: datetime, tz: str) -> Period:
    """``2026-11-30`` / ``2026-W48`` (or any date in it) / ``2026-11``; empty: the default."""
    value = text.strip()
    if not value:
        return default_period(kind, now, tz)
    try:
        if kind == WEEKLY and "w" in value.lower():
            year, week = value.lower().split("-w")
            day = date.fromisocalendar(int(year), int(week), 1)
        elif kind == MONTHLY:
            year, month = value.split("-")
            if len(year) != 4 or not 1 <= len(month) <= 2:
                raise ValueError(value)
            day = date(int(year), int(month), 1)
        else:
            day = date.fromisoformat(value)
    except ValueError:
        raise DomainError("rep_err_period", kind=kind, example=EXAMPLES[kind]) from None
    period = period_of(kind, day, tz)
    if period.start > now:
        raise DomainError("rep_err_future", kind=kind, period=period.key)
    return period


# ---- figures ----------------------------------------------------------------------------------


def rate(part: int, whole: int) -> int | None:
    """A percentage rounded half up, or None when there is nothing to divide by."""
    if whole == 0:
        return None
    return math.floor(part * 100 / whole + 0.5)


@dataclass
class JobRow:
    number: str
    customer: str
    service_type: str
    engineer: str
    window_start: datetime
    window_end: datetime
    status: str
    arrived_at: datetime | None
    on_time: bool | None
    missed: bool
    rating: int | None


@dataclass
class Tally:
    """Job figures for a set of jobs (the whole period, or one engineer's)."""

    jobs: int = 0
    cancelled: int = 0
    done: int = 0
    open: int = 0
    arrived: int = 0
    on_time: int = 0
    late: int = 0
    missed: int = 0
    signed_off: int = 0
    ratings: list[int] = field(default_factory=list)
    complaints: int = 0

    @property
    def on_time_rate(self) -> int | None:
        return rate(self.on_time, self.arrived)

    @property
    def signoff_rate(self) -> int | None:
        return rate(self.signed_off, self.done)

    @property
    def average_rating(self) -> float | None:
        if not self.ratings:
            return None
        return math.floor(sum(self.ratings) * 10 / len(self.ratings) + 0.5) / 10

    def params(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "cancelled": self.cancelled,
            "done": self.done,
            "open": self.open,
            "arrived": self.arrived,
            "on_time": self.on_time,
            "late": self.late,
            "missed": self.missed,
            "signed_off": self.signed_off,
            "on_time_rate": self.on_time_rate,
            "signoff_rate": self.signoff_rate,
            "average_rating": self.average_rating,
            "ratings": len(self.ratings),
            "complaints": self.complaints,
        }


@dataclass
class EngineerTally(Tally):
    name: str = ""
    staff_no: str = ""


@dataclass(frozen=True)
class Escalation:
    """Something waiting for a supervisor now."""

    kind: str  # unassigned | contact_overdue | late | signoff_overdue
    number: str
    engineer: str
    since: datetime


@dataclass(frozen=True)
class OverdueComplaint:
    number: str
    due: datetime
    owner: str


@dataclass
class Figures:
    period: Period
    generated_at: datetime
    until: datetime
    total: Tally
    engineers: list[EngineerTally]
    jobs: list[JobRow]
    contact_missed: int = 0
    complaints_opened: int = 0
    complaints_closed: int = 0
    complaints_open: int = 0
    complaints_past_due: list[OverdueComplaint] = field(default_factory=list)
    sla_breaches: int = 0
    complaint_categories: dict[str, int] = field(default_factory=dict)
    faults_opened: list[str] = field(default_factory=list)
    faults_closed: list[str] = field(default_factory=list)
    faults_open: list[str] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)


def _count(tally: Tally, row: JobRow, status: str, reported: bool, signed: bool) -> None:
    if status == DispatchStatus.CANCELLED:
        tally.cancelled += 1
        return
    tally.jobs += 1
    if reported:
        tally.done += 1
    elif status in OPEN_DISPATCH_STATUSES:
        tally.open += 1
    if row.arrived_at is not None:
        tally.arrived += 1
        if row.on_time:
            tally.on_time += 1
        else:
            tally.late += 1
    elif row.missed:
        tally.missed += 1
    if signed:
        tally.signed_off += 1
    if row.rating is not None:
        tally.ratings.append(row.rating)


# The columns a report reads of each job, as plain rows: a month of a large company is tens of
# thousands of jobs, and loading each as a whole ORM object took seconds in one transaction.
_JOB_COLUMNS = (
    Dispatch.id,
    Dispatch.number,
    Dispatch.customer_id,
    Dispatch.service_type,
    Dispatch.engineer_id,
    Dispatch.window_start,
    Dispatch.window_end,
    Dispatch.status,
    Dispatch.arrived_at,
    Dispatch.arrival["in_window"].as_boolean().label("in_window"),
    Dispatch.reported_at,
)


async def gather(uow: UnitOfWork, period: Period) -> Figures:
    """Every figure of the report for ``period``, as of now."""
    now = uow.clock.now()
    until = min(period.end, now)
    dispatches = (
        await uow.session.execute(
            select(*_JOB_COLUMNS)
            .where(Dispatch.window_start >= period.start, Dispatch.window_start < period.end)
            .order_by(Dispatch.window_start, Dispatch.id)
        )
    ).all()
    ids = [d.id for d in dispatches]
    signed_rows = await signed_off_hook(uow, ids)
    ratings = await ratings_hook(uow, ids)
    people = {u.id: u for u in await staff_with_role(uow, Role.ENGINEER)}
    customers = {
        c.id: c.name
        for c in await uow.session.scalars(
            select(Customer).where(Customer.id.in_(sorted({d.customer_id for d in dispatches})))
        )
    }
    total = Tally()
    per_engineer: dict[int, EngineerTally] = {}
    rows: list[JobRow] = []
    for job in dispatches:
        engineer = people.get(job.engineer_id) if job.engineer_id else None
        if job.engineer_id and engineer is None:
            engineer = await uow.session.get(User, job.engineer_id)  # since deactivated
        arrived = job.arrived_at is not None
        row = JobRow(
            number=job.number,
            customer=customers.get(job.customer_id, ""),
            service_type=job.service_type,
            engineer=engineer.name if engineer else "",
            window_start=job.window_start,
            window_end=job.window_end,
            status=job.status,
            arrived_at=job.arrived_at if arrived else None,
            on_time=bool(job.in_window) if arrived else None,
            missed=not arrived and job.window_end <= now and job.status in NOT_ARRIVED,
            rating=ratings.get(job.id),
        )
        rows.append(row)
        reported = job.reported_at is not None or job.status in DONE_STATUSES
        signed = job.status in SIGNED_STATUSES or job.id in signed_rows
        _count(total, row, job.status, reported, signed)
        if engineer is not None:
            tally = per_engineer.setdefault(
                engineer.id, EngineerTally(name=engineer.name, staff_no=engineer.staff_no or "")
            )
            _count(tally, row, job.status, reported, signed)
    figures = Figures(
        period=period,
        generated_at=now,
        until=until,
        total=total,
        engineers=[],
        jobs=rows,
    )
    figures.contact_missed = int(
        await uow.session.scalar(
            select(func.count())
            .select_from(DispatchEvent)
            .where(
                DispatchEvent.kind == "contact_overdue",
                DispatchEvent.at >= period.start,
                DispatchEvent.at < period.end,
            )
        )
        or 0
    )
    await _complaint_figures(uow, figures, per_engineer, people)
    await _fault_figures(uow, figures)
    figures.escalations = await open_escalations(uow)
    figures.engineers = sorted(per_engineer.values(), key=lambda t: (-t.jobs, t.name))
    return figures


# ---- complaints (the complaints area: bot/flows/complaints.py and its tables) ----------------


def _past_due(c: Complaint, now: datetime) -> datetime | None:
    """The deadline a complaint has passed, by the complaints area's own breach rules: nobody
    took a new one by its first-response time, or it is unresolved (and not paused waiting for
    the customer) past its resolution time."""
    if (
        c.status == complaints.NEW
        and c.owner_id is None
        and c.response_due is not None
        and c.response_due <= now
    ):
        return c.response_due
    if (
        c.status in (complaints.NEW, complaints.OPEN)
        and c.resolution_due is not None
        and c.resolution_due <= now
    ):
        return c.resolution_due
    return None


async def complaints_past_due(uow: UnitOfWork, now: datetime) -> list[OverdueComplaint]:
    """Open complaints past a deadline, oldest deadline first."""
    rows = await uow.session.scalars(
        select(Complaint).where(Complaint.status.in_([complaints.NEW, complaints.OPEN]))
    )
    owners: dict[int, str] = {}
    overdue: list[OverdueComplaint] = []
    for complaint in rows:
        due = _past_due(complaint, now)
        if due is None:
            continue
        owner = ""
        if complaint.owner_id is not None:
            if complaint.owner_id not in owners:
                user = await uow.session.get(User, complaint.owner_id)
                owners[complaint.owner_id] = user.name if user else ""
            owner = owners[complaint.owner_id]
        overdue.append(OverdueComplaint(number=complaint.number, due=due, owner=owner))
    return sorted(overdue, key=lambda c: (c.due, c.number))


async def sla_breaches(uow: UnitOfWork, start: datetime, end: datetime) -> int:
    """First-response and resolution deadlines missed in [start, end): the complaints area's
    first escalation of each breach (``escalated``, level 1, reason response/resolution)."""
    rows = await uow.session.scalars(
        select(ComplaintEvent.data).where(
            ComplaintEvent.kind == "escalated",
            ComplaintEvent.at >= start,
            ComplaintEvent.at < end,
        )
    )
    return sum(
        1
        for data in rows
        if data.get("reason") in ("response", "resolution") and data.get("level") == 1
    )


async def _complaint_figures(
    uow: UnitOfWork,
    figures: Figures,
    per_engineer: dict[int, EngineerTally],
    people: dict[int, User],
) -> None:
    period = figures.period
    touching = await uow.session.scalars(
        select(Complaint).where(
            (Complaint.created_at >= period.start)
            | (Complaint.status != complaints.CLOSED)
            | (Complaint.closed_at >= period.start)
        )
    )
    for complaint in touching:
        if period.start <= complaint.created_at < period.end:
            figures.complaints_opened += 1
            figures.complaint_categories[complaint.category] = (
                figures.complaint_categories.get(complaint.category, 0) + 1
            )
            figures.total.complaints += 1
            engineer = people.get(complaint.engineer_id or 0)
            if engineer is not None:
                tally = per_engineer.setdefault(
                    engineer.id,
                    EngineerTally(name=engineer.name, staff_no=engineer.staff_no or ""),
                )
                tally.complaints += 1
        closed = complaint.closed_at
        if complaint.status == complaints.CLOSED and closed and period.start <= closed < period.end:
            figures.complaints_closed += 1
        if complaint.status != complaints.CLOSED:
            figures.complaints_open += 1
    figures.sla_breaches = await sla_breaches(uow, period.start, period.end)
    figures.complaints_past_due = await complaints_past_due(uow, figures.generated_at)


# ---- major faults -----------------------------------------------------------------------------


async def _fault_figures(uow: UnitOfWork, figures: Figures) -> None:
    period = figures.period
    for fault in await uow.session.scalars(select(MajorFault).order_by(MajorFault.id)):
        if period.start <= fault.reported_at < period.end:
            figures.faults_opened.append(fault.number)
        if fault.closed_at is not None and period.start <= fault.closed_at < period.end:
            figures.faults_closed.append(fault.number)
        if fault.status == "open":
            figures.faults_open.append(fault.number)


# ---- open escalations -------------------------------------------------------------------------


async def open_escalations(uow: UnitOfWork) -> list[Escalation]:
    """Jobs waiting for a supervisor now: nobody assigned, customer not contacted in time,
    window over without arrival, sign-off overdue."""
    now = uow.clock.now()
    settings = uow.settings
    waiting = await uow.session.execute(
        select(
            Dispatch.number,
            Dispatch.status,
            Dispatch.engineer_id,
            Dispatch.created_at,
            Dispatch.accepted_at,
            Dispatch.reported_at,
            Dispatch.window_end,
        )  # plain rows, as in gather: every open job of the company
        .where(
            Dispatch.status.in_(
                [
                    DispatchStatus.UNASSIGNED.value,
                    DispatchStatus.ACCEPTED.value,
                    DispatchStatus.CONTACTED.value,
                    DispatchStatus.EN_ROUTE.value,
                    DispatchStatus.AWAITING_SIGNOFF.value,
                ]
            )
        )
        .order_by(Dispatch.window_start, Dispatch.id)
    )
    names: dict[int, str] = {}
    found: list[Escalation] = []
    for job in waiting:
        kind, since = "", None
        if job.status == DispatchStatus.UNASSIGNED:
            kind, since = "unassigned", job.created_at
        elif job.status == DispatchStatus.AWAITING_SIGNOFF:
            due = (job.reported_at or job.created_at) + settings.signoff_escalation
            if due <= now:
                kind, since = "signoff_overdue", due
        elif job.window_end <= now:
            kind, since = "late", job.window_end
        elif job.status == DispatchStatus.ACCEPTED and job.accepted_at is not None:
            due = job.accepted_at + settings.contact_deadline
            if due <= now:
                kind, since = "contact_overdue", due
        if not kind or since is None:
            continue
        engineer = ""
        if job.engineer_id is not None:
            if job.engineer_id not in names:
                user = await uow.session.get(User, job.engineer_id)
                names[job.engineer_id] = user.name if user else ""
            engineer = names[job.engineer_id]
        found.append(Escalation(kind=kind, number=job.number, engineer=engineer, since=since))
    return found


# ---- the customer area's sign-offs and feedback (bot/db/models/customer.py) -------------------


async def signed_off_hook(uow: UnitOfWork, dispatch_ids: list[int]) -> set[int]:
    """Jobs with a confirmed sign-off (in chat or on paper); adds to the dispatch status."""
    if not dispatch_ids:
        return set()
    rows = await uow.session.scalars(
        select(SignOff.dispatch_id).where(
            SignOff.dispatch_id.in_(dispatch_ids), SignOff.status == "confirmed"
        )
    )
    return {int(i) for i in rows}


async def ratings_hook(uow: UnitOfWork, dispatch_ids: list[int]) -> dict[int, int]:
    """The customer's rating (1–5) per job (客户服务回馈单)."""
    if not dispatch_ids:
        return {}
    rows = await uow.session.execute(
        select(Feedback.dispatch_id, Feedback.rating).where(Feedback.dispatch_id.in_(dispatch_ids))
    )
    return {int(dispatch_id): int(rating) for dispatch_id, rating in rows}


# ---- rendering and sending --------------------------------------------------------------------


def _report_params(figures: Figures) -> dict[str, Any]:
    period = figures.period
    return {
        "kind": period.kind,
        "period": period.key,
        "first_day": period.first_day.isoformat(),
        "last_day": period.last_day.isoformat(),
        "partial": figures.until < period.end,
        "generated_at": figures.generated_at,
        **figures.total.params(),
        "contact_missed": figures.contact_missed,
        "complaints_opened": figures.complaints_opened,
        "complaints_closed": figures.complaints_closed,
        "complaints_open": figures.complaints_open,
        "past_due": [
            {"number": c.number, "due": c.due, "owner": c.owner}
            for c in figures.complaints_past_due[:CHAT_ROWS]
        ],
        "past_due_count": len(figures.complaints_past_due),
        "sla_breaches": figures.sla_breaches,
        "categories": sorted(figures.complaint_categories.items(), key=lambda kv: -kv[1]),
        "faults_opened": figures.faults_opened,
        "faults_closed": figures.faults_closed,
        "faults_open": figures.faults_open,
        "escalations": [
            {"kind": e.kind, "number": e.number, "engineer": e.engineer, "since": e.since}
            for e in figures.escalations[:CHAT_ROWS]
        ],
        "escalation_count": len(figures.escalations),
        "late_jobs": [
            {
                "number": j.number,
                "customer": j.customer,
                "engineer": j.engineer,
                "window_end": j.window_end,
                "arrived_at": j.arrived_at,
                "missed": j.missed,
            }
            for j in figures.jobs
            if (j.arrived_at is not None and not j.on_time) or j.missed
        ][:CHAT_ROWS],
        "engineers": [
            {"name": t.name, "staff_no": t.staff_no, **t.params()}
            for t in figures.engineers[:CHAT_ROWS]
        ],
        "engineer_count": len(figures.engineers),
    }


class _Words:
    """CSV headers and values in one locale: macros of templates/rep_csv.j2."""

    def __init__(self, uow: UnitOfWork, locale: str) -> None:
        env = uow.services.renderer.env(locale)
        self.module: Any = env.get_template("rep_csv.j2").module
        self.macros: Any = env.get_template("_macros.j2").module

    def __call__(self, name: str, *args: Any) -> str:
        return html.unescape(str(getattr(self.module, name)(*args)).strip())

    def status(self, value: str) -> str:
        return html.unescape(str(self.macros.status(value)).strip())

    def service_type(self, value: str) -> str:
        return html.unescape(str(self.macros.service_type(value)).strip())


def _local(value: datetime | None, tz: str) -> str:
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if value else ""


def _pct(value: int | None) -> str:
    return "" if value is None else f"{value}%"


def csv_rows(uow: UnitOfWork, figures: Figures, locale: str, tz: str) -> list[list[object]]:
    """The CSV attachment: one row per job (daily) or per engineer with a total (weekly and
    monthly), headed in ``locale``."""
    w = _Words(uow, locale)
    if figures.period.kind == DAILY:
        rows: list[list[object]] = [
            [
                w("col_job"),
                w("col_customer"),
                w("col_service_type"),
                w("col_engineer"),
                w("col_window_start"),
                w("col_window_end"),
                w("col_status"),
                w("col_arrived_at"),
                w("col_on_time"),
                w("col_rating"),
            ]
        ]
        for job in figures.jobs:
            on_time = w("no_show") if job.missed else ""
            if job.on_time is not None:
                on_time = w("yes") if job.on_time else w("no")
            rows.append(
                [
                    job.number,
                    job.customer,
                    w.service_type(job.service_type),
                    job.engineer,
                    _local(job.window_start, tz),
                    _local(job.window_end, tz),
                    w.status(job.status),
                    _local(job.arrived_at, tz),
                    on_time,
                    job.rating,
                ]
            )
        return rows
    header: list[object] = [
        w("col_engineer"),
        w("col_staff_no"),
        w("col_jobs"),
        w("col_done"),
        w("col_arrived"),
        w("col_on_time_count"),
        w("col_on_time_rate"),
        w("col_missed"),
        w("col_signed_off"),
        w("col_signoff_rate"),
        w("col_average_rating"),
        w("col_complaints"),
    ]

    def line(name: str, staff_no: str, t: Tally) -> list[object]:
        return [
            name,
            staff_no,
            t.jobs,
            t.done,
            t.arrived,
            t.on_time,
            _pct(t.on_time_rate),
            t.missed,
            t.signed_off,
            _pct(t.signoff_rate),
            "" if t.average_rating is None else f"{t.average_rating:.1f}",
            t.complaints,
        ]

    rows = [header]
    rows += [line(t.name, t.staff_no, t) for t in figures.engineers]
    rows.append(line(w("total"), "", figures.total))
    return rows


def audience_roles(kind: str) -> tuple[Role, ...]:
    if kind == DAILY:
        return (Role.SUPERVISOR,)
    if kind == WEEKLY:
        return (Role.SUPERVISOR, Role.MANAGER)
    return (Role.MANAGER,)


async def audience(uow: UnitOfWork, kind: str) -> list[User]:
    """Who receives a scheduled report: supervisors (daily), supervisors and managers (weekly),
    managers (monthly; the supervisors when there is no manager)."""
    people = await staff_with_role(uow, *audience_roles(kind))
    if not people and kind == MONTHLY:
        people = await staff_with_role(uow, Role.SUPERVISOR)
    return [p for p in people if p.chat_id is not None]


async def send_report(uow: UnitOfWork, period: Period, readers: list[User], *, urgent: bool) -> int:
    """The report message and its CSV to each reader, in their language; how many got it."""
    figures = await gather(uow, period)
    params = _report_params(figures)
    files: dict[tuple[str, str], bytes] = {}
    name = f"fieldbot-{period.kind}-{period.key}.csv"
    sent = 0
    priority = Priority.NORMAL if urgent else Priority.BULK
    for reader in readers:
        locale = reader.locale or uow.settings.default_locale
        tz = reader.timezone or uow.settings.timezone
        template = f"rep_{period.kind}"
        if not await uow.out.send(
            Msg(template, params, user_id=reader.id, urgent=urgent, priority=priority)
        ):
            continue
        sent += 1
        if (locale, tz) not in files:
            files[(locale, tz)] = csv_bytes(csv_rows(uow, figures, locale, tz))
        caption = uow.services.renderer.render(
            "rep_csv_caption", locale, {"kind": period.kind, "period": period.key}
        )
        await queue_document(
            uow,
            reader,
            name=name,
            data=files[(locale, tz)],
            caption=caption,
            urgent=urgent,
            priority=priority,
        )
    return sent


def render_text(uow: UnitOfWork, figures: Figures, locale: str, tz: str) -> str:
    """The report message as plain text (for the command line)."""
    params = {"tz": tz, **_report_params(figures)}
    text = uow.services.renderer.render(f"rep_{figures.period.kind}", locale, params)
    return html.unescape(re.sub(r"</?b>", "", text))


# ---- on demand --------------------------------------------------------------------------------


def kind_of(word: str) -> str | None:
    value = word.strip().lower()
    return value if value in KINDS else ALIASES.get(value)


async def on_demand(uow: UnitOfWork, reader: User, args: str) -> None:
    """``/report daily|weekly|monthly [period]``; without arguments, buttons to choose."""
    parts = args.split()
    if not parts:
        await uow.out.send(
            Msg(
                "rep_choose",
                {},
                user_id=reader.id,
                buttons=(tuple(Button.of(f"rep_{k}", cb("rep", 0, k)) for k in KINDS),),
            )
        )
        return
    kind = kind_of(parts[0])
    if kind is None or len(parts) > 2:
        raise DomainError("rep_err_usage")
    tz = reader.timezone or uow.settings.timezone
    period = parse_period(kind, parts[1] if len(parts) > 1 else "", uow.clock.now(), tz)
    await send_report(uow, period, [reader], urgent=True)


# ---- scheduled --------------------------------------------------------------------------------


def schedules(settings: Settings) -> list[tuple[str, str]]:
    """(kind, crontab line) of every report the scheduler runs."""
    crons = {
        DAILY: settings.report_daily_cron,
        WEEKLY: settings.report_weekly_cron,
        MONTHLY: settings.report_monthly_cron,
    }
    return [(kind, cron) for kind, cron in crons.items() if cron]


async def claim(uow: UnitOfWork, period: Period) -> ReportRun | None:
    """Claim the (kind, period) run; None when another worker (or an earlier run) has it."""
    known = await uow.session.scalar(
        select(ReportRun.id).where(ReportRun.kind == period.kind, ReportRun.period == period.key)
    )
    if known is not None:
        return None
    run = ReportRun(kind=period.kind, period=period.key, claimed_at=uow.clock.now(), recipients=0)
    try:
        async with uow.session.begin_nested():
            uow.session.add(run)
    except IntegrityError:
        return None
    return run


async def run_scheduled(services: Services, kind: str, at: datetime | None = None) -> bool:
    """The cron job: send the report due at ``at`` (now) once, whichever worker gets there."""
    async with services.uow() as uow:
        now = at or uow.clock.now()
        period = default_period(kind, now, uow.settings.timezone)
        run = await claim(uow, period)
        if run is None:
            return False
        run.recipients = await send_report(uow, period, await audience(uow, kind), urgent=False)
        await uow.commit()
        return True


def last_fire(cron: str, tz: str, now: datetime, lookback: timedelta) -> datetime | None:
    """The latest time at or before ``now`` that ``cron`` fired (within ``lookback``)."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=tz)
    last = None
    fire = trigger.get_next_fire_time(None, now - lookback)
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last.astimezone(UTC) if last is not None else None


async def catch_up(services: Services) -> list[str]:
    """On start: send each report whose run fell while the bot was down (once ever sent)."""
    sent = []
    settings = services.settings
    for kind, cron in schedules(settings):
        now = services.clock.now()
        fired = last_fire(cron, settings.timezone, now, CATCH_UP[kind])
        if fired is None:
            continue
        async with services.uow() as uow:
            last = await uow.session.scalar(
                select(func.max(ReportRun.claimed_at)).where(ReportRun.kind == kind)
            )
        if last is None or last >= fired:
            continue
        if await run_scheduled(services, kind, at=fired):
            sent.append(kind)
    return sent
