"""Business hours: SLA clocks that only run while the service centre works (DOMAIN.md §2).

An organisation may set weekly opening hours, public holidays (closed all day) and extra
working days (调休 make-up days, open with the hours given). Without a calendar the clocks
run 7×24. Everything here is pure: no database, no clock of its own.

The stored form (``Organisation.settings["business_calendar"]``)::

    {"weekly": {"mon": ["09:00-18:00"], ..., "sat": []},
     "holidays": ["2026-10-01", ...],
     "workdays": {"2026-09-27": ["09:00-18:00"]}}
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.services.staff import organisation
from bot.services.uow import UnitOfWork

CALENDAR_KEY = "business_calendar"  # in Organisation.settings
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3 * 366  # a calendar that never opens again is refused long before this
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")

Period = tuple[int, int]  # minutes after local midnight: [start, end), end up to 1440


class CalendarError(ValueError):
    """A business calendar that cannot be used; the message says what is wrong."""


def parse_range(text: str) -> Period:
    """``09:00-18:00`` → (540, 1080); ``24:00`` may end a range."""
    match = _RANGE.match(text.strip())
    if not match:
        raise CalendarError(f"{text!r} is not a time range; write it like 09:00-18:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise CalendarError(f"{text!r} is not a time range of one day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise CalendarError(f"{text!r} ends before it starts")
    return start, end


def parse_ranges(items: list[str] | str) -> tuple[Period, ...]:
    """Several ranges (a list, or one string separated by commas), sorted, not overlapping."""
    if isinstance(items, str):
        items = [part for part in items.split(",") if part.strip()]
    periods = sorted(parse_range(item) for item in items)
    for (_, end), (start, _) in pairwise(periods):
        if start < end:
            raise CalendarError("time ranges of one day overlap")
    return tuple(periods)


def format_range(period: Period) -> str:
    return f"{period[0] // 60:02d}:{period[0] % 60:02d}-{period[1] // 60:02d}:{period[1] % 60:02d}"


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CalendarError(f"{text!r} is not a date; write it like 2026-10-01") from None


def parse_days(text: str) -> list[int]:
    """``mon-fri`` → [0..4]; ``sat`` → [5]; ``mon,wed`` → [0, 2]."""
    days: list[int] = []
    for part in text.lower().split(","):
        part = part.strip()
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise CalendarError(f"{part!r} is not a day or a day range like mon-fri")
        a, b = DAYS.index(first), DAYS.index(last or first)
        if b < a:
            raise CalendarError(f"{part!r} runs backwards")
        days.extend(range(a, b + 1))
    return days


@dataclass(frozen=True)
class BusinessCalendar:
    """Weekly hours, holidays and extra working days in one time zone."""

    timezone: str
    weekly: dict[int, tuple[Period, ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    workdays: dict[date, tuple[Period, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"unknown time zone {self.timezone!r}") from None
        if not any(self.weekly.values()):
            raise CalendarError("a business calendar needs working hours on at least one weekday")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def usual_hours(self) -> tuple[Period, ...]:
        """The hours of the first weekday that has any (what a make-up day uses by default)."""
        for day in range(7):
            if self.weekly.get(day):
                return self.weekly[day]
        return ()

    def hours_on(self, day: date) -> tuple[Period, ...]:
        if day in self.workdays:
            return self.workdays[day]
        if day in self.holidays:
            return ()
        return self.weekly.get(day.weekday(), ())

    def _wall(self, day: date, minutes: int) -> datetime:
        if minutes >= 1440:
            day, minutes = day + timedelta(days=1), minutes - 1440
        return datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=self.zone)

    def periods(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working periods (aware datetimes) that end after ``start``, in order."""
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(MAX_DAYS):
            for a, b in self.hours_on(day):
                begin, end = self._wall(day, a), self._wall(day, b)
                if end > start:
                    yield max(begin, start), end
            day += timedelta(days=1)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment when ``duration`` of working time has passed since ``start``."""
        remaining = duration
        if remaining <= timedelta(0):
            return start
        for begin, end in self.periods(start):
            available = end - begin
            if remaining <= available:
                return (begin + remaining).astimezone(UTC)
            remaining -= available
        raise CalendarError("the calendar has no working hours left")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time inside [start, end)."""
        total = timedelta(0)
        if end <= start:
            return total
        for begin, stop in self.periods(start):
            if begin >= end:
                break
            total += min(stop, end) - begin
        return total

    def is_open(self, at: datetime) -> bool:
        for begin, _ in self.periods(at):
            return begin <= at
        return False

    # ---- stored form --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "weekly": {
                DAYS[d]: [format_range(p) for p in self.weekly.get(d, ())] for d in range(7)
            },
            "holidays": sorted(d.isoformat() for d in self.holidays),
            "workdays": {
                d.isoformat(): [format_range(p) for p in periods]
                for d, periods in sorted(self.workdays.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], timezone: str) -> BusinessCalendar:
        """Validate a stored or hand-written calendar; CalendarError names what is wrong."""
        if not isinstance(data, dict):
            raise CalendarError("a business calendar is a mapping of weekly, holidays, workdays")
        weekly_raw = data.get("weekly") or {}
        if not isinstance(weekly_raw, dict):
            raise CalendarError("weekly must map days (mon..sun) to time ranges")
        weekly: dict[int, tuple[Period, ...]] = {}
        for key, ranges in weekly_raw.items():
            for day in parse_days(str(key)):
                weekly[day] = parse_ranges(ranges or [])
        holidays = frozenset(parse_date(str(d)) for d in data.get("holidays") or [])
        workdays_raw = data.get("workdays") or {}
        draft = cls(timezone=timezone, weekly=weekly)
        workdays: dict[date, tuple[Period, ...]] = {}
        if isinstance(workdays_raw, list):
            for item in workdays_raw:
                workdays[parse_date(str(item))] = draft.usual_hours()
        elif isinstance(workdays_raw, dict):
            for key, ranges in workdays_raw.items():
                workdays[parse_date(str(key))] = (
                    parse_ranges(ranges) if ranges else draft.usual_hours()
                )
        else:
            raise CalendarError("workdays must list dates, or map dates to time ranges")
        return cls(timezone=timezone, weekly=weekly, holidays=holidays, workdays=workdays)


def add_time(calendar: BusinessCalendar | None, start: datetime, duration: timedelta) -> datetime:
    """``start + duration`` counted in business hours, or around the clock without a calendar."""
    if calendar is None:
        return start + duration
    return calendar.add(start, duration)


def time_between(calendar: BusinessCalendar | None, start: datetime, end: datetime) -> timedelta:
    """Clock time between two moments (business time with a calendar; never negative)."""
    if calendar is None:
        return max(end - start, timedelta(0))
    return calendar.between(start, end)


def parse_hours_spec(specs: list[str]) -> dict[str, list[str]]:
    """CLI form ``mon-fri=09:00-18:00`` / ``sat=09:00-12:00,13:00-17:00`` / ``sun=closed``."""
    weekly: dict[str, list[str]] = {day: [] for day in DAYS}
    for spec in specs:
        days, sep, ranges = spec.partition("=")
        if not sep:
            raise CalendarError(f"{spec!r}: write days=hours, like mon-fri=09:00-18:00")
        periods = () if ranges.strip().lower() in ("", "closed", "-") else parse_ranges(ranges)
        for day in parse_days(days):
            weekly[DAYS[day]] = [format_range(p) for p in periods]
    return weekly


# ---- the organisation's calendar -----------------------------------------------------------


async def calendar(uow: UnitOfWork) -> BusinessCalendar | None:
    """The organisation's business calendar, or None (clocks run 7×24)."""
    org = await organisation(uow)
    data = (org.settings or {}).get(CALENDAR_KEY)
    if not data:
        return None
    return BusinessCalendar.from_dict(data, org.timezone or uow.settings.timezone)


async def set_calendar(uow: UnitOfWork, data: dict[str, Any] | None) -> BusinessCalendar | None:
    """Set (validated) or clear the business calendar; CalendarError says what is wrong.

    Clocks already running keep their deadlines; new ones use the new calendar.
    """
    org = await organisation(uow)
    settings = dict(org.settings or {})
    if data is None:
        settings.pop(CALENDAR_KEY, None)
        cal = None
    else:
        cal = BusinessCalendar.from_dict(data, org.timezone or uow.settings.timezone)
        settings[CALENDAR_KEY] = cal.to_dict()
    org.settings = settings
    await uow.session.flush()
    return cal


async def update_calendar(
    uow: UnitOfWork,
    *,
    weekly: dict[str, list[str]] | None = None,
    add_holidays: Sequence[str] = (),
    add_workdays: dict[str, list[str]] | None = None,
    remove_dates: Sequence[str] = (),
) -> BusinessCalendar:
    """Change parts of the calendar (weekly hours, holidays, make-up working days)."""
    current = await calendar(uow)
    data: dict[str, Any] = current.to_dict() if current else {"holidays": [], "workdays": {}}
    if weekly is not None:
        data["weekly"] = weekly
    if current is None and weekly is None:
        raise CalendarError("set the weekly hours first, like mon-fri=09:00-18:00")
    removed = {parse_date(d).isoformat() for d in remove_dates}
    holidays = set(data.get("holidays", [])) | {parse_date(d).isoformat() for d in add_holidays}
    data["holidays"] = sorted(holidays - removed)
    workdays = dict(data.get("workdays") or {})
    for day, ranges in (add_workdays or {}).items():
        workdays[parse_date(day).isoformat()] = ranges
    data["workdays"] = {d: r for d, r in workdays.items() if d not in removed}
    result = await set_calendar(uow, data)
    assert result is not None
    return result
