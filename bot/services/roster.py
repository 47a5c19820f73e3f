"""The duty roster (值班表) and the holiday calendar (节假日服务保障), DOMAIN.md §5.

A shift is one supervisor on duty from ``starts_at`` to ``ends_at``. Shifts marked ``holiday``
form the holiday roster: on a date of the holiday calendar (in ``TIMEZONE``) only holiday
shifts count, on every other date only regular ones. Holiday dates are those of the duty
holiday calendar (``holidays`` table) and the public holidays of the organisation's business
calendar. Who is on duty *now* is decided by the
roster first (:func:`on_duty_at`); ``staff.supervisors_on_duty`` falls back from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.core.enums import Role
from bot.db.models import Organisation, User
from bot.db.models.supervision import DutyShift, Holiday
from bot.services.errors import FieldError
from bot.services.uow import UnitOfWork

MAX_SHIFT = timedelta(days=3)


@dataclass(frozen=True)
class ShiftView:
    """A shift with its supervisor, as lists and messages show it."""

    id: int
    staff_id: int
    name: str
    staff_no: str
    starts_at: datetime
    ends_at: datetime
    holiday: bool


def local_date(uow: UnitOfWork, at: datetime) -> date:
    return at.astimezone(ZoneInfo(uow.settings.timezone)).date()


def parse_local(uow: UnitOfWork, text: str) -> datetime:
    """``2026-12-01T08:00`` (in TIMEZONE unless it names an offset) as an aware UTC time."""
    value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(uow.settings.timezone))
    return value.astimezone(ZoneInfo("UTC"))


async def find_staff(uow: UnitOfWork, staff_no: str) -> User | None:
    return await uow.session.scalar(
        select(User).where(func.upper(User.staff_no) == staff_no.strip().upper())
    )


BUSINESS_CALENDAR = "business_calendar"  # Organisation.settings key (bot/flows/business_hours.py)


async def holiday_on(uow: UnitOfWork, day: date) -> str | None:
    """The holiday's name ("" when unnamed) if ``day`` uses the holiday roster, else None.

    A holiday is a date of the duty holiday calendar (``fieldbot duty holiday``) or a public
    holiday of the organisation's business calendar (``fieldbot calendar add-holiday``).
    """
    known = await uow.session.get(Holiday, day)
    if known is not None:
        return known.name
    org = await uow.session.scalar(select(Organisation).order_by(Organisation.id).limit(1))
    business = (org.settings or {}).get(BUSINESS_CALENDAR) if org is not None else None
    if isinstance(business, dict) and day.isoformat() in (business.get("holidays") or []):
        return ""
    return None


async def add_shift(
    uow: UnitOfWork, *, staff_no: str, starts: str, ends: str, holiday: bool = False
) -> tuple[DutyShift, bool]:
    """Put a supervisor on the roster; (shift, False) when exactly this shift already exists."""
    errors: list[tuple[str, str]] = []
    user = await find_staff(uow, staff_no)
    if user is None or not user.active:
        errors.append(("staff", f"no active staff member with staff number {staff_no!r}"))
    elif user.role != Role.SUPERVISOR:
        errors.append(("staff", f"{user.staff_no} is a {user.role}, not a supervisor"))
    start = end = None
    for name, text in (("from", starts), ("to", ends)):
        try:
            parsed = parse_local(uow, text)
        except ValueError:
            errors.append((name, f"{text!r} is not a date and time like 2026-12-01T08:00"))
            continue
        if name == "from":
            start = parsed
        else:
            end = parsed
    if start is not None and end is not None:
        if end <= start:
            errors.append(("to", "must be after --from"))
        elif end - start > MAX_SHIFT:
            errors.append(("to", "a shift lasts at most 3 days"))
    if errors:
        raise FieldError(errors)
    assert user is not None and start is not None and end is not None
    same = await uow.session.scalar(
        select(DutyShift).where(
            DutyShift.staff_id == user.id,
            DutyShift.starts_at == start,
            DutyShift.ends_at == end,
            DutyShift.holiday.is_(holiday),
        )
    )
    if same is not None:
        return same, False
    overlap = await uow.session.scalar(
        select(DutyShift).where(
            DutyShift.staff_id == user.id,
            DutyShift.holiday.is_(holiday),
            DutyShift.starts_at < end,
            DutyShift.ends_at > start,
        )
    )
    if overlap is not None:
        raise FieldError([("from", f"overlaps {user.staff_no}'s shift #{overlap.id}")])
    shift = DutyShift(
        staff_id=user.id,
        starts_at=start,
        ends_at=end,
        holiday=holiday,
        created_at=uow.clock.now(),
    )
    uow.session.add(shift)
    await uow.session.flush()
    return shift, True


async def remove_shift(uow: UnitOfWork, shift_id: int) -> bool:
    shift = await uow.session.get(DutyShift, shift_id)
    if shift is None:
        return False
    await uow.session.delete(shift)
    await uow.session.flush()
    return True


async def add_holiday(uow: UnitOfWork, *, day: str, name: str = "") -> tuple[Holiday, bool]:
    """Add a date to the holiday calendar; (holiday, False) when it was there already."""
    try:
        parsed = date.fromisoformat(day.strip())
    except ValueError:
        raise FieldError([("date", f"{day!r} is not a date like 2026-10-01")]) from None
    if len(name) > 100:
        raise FieldError([("name", "at most 100 characters")])
    known = await uow.session.get(Holiday, parsed)
    if known is not None:
        if name and known.name != name:
            known.name = name
        return known, False
    holiday = Holiday(day=parsed, name=name.strip())
    uow.session.add(holiday)
    await uow.session.flush()
    return holiday, True


async def remove_holiday(uow: UnitOfWork, day: str) -> bool:
    try:
        parsed = date.fromisoformat(day.strip())
    except ValueError:
        raise FieldError([("date", f"{day!r} is not a date like 2026-10-01")]) from None
    known = await uow.session.get(Holiday, parsed)
    if known is None:
        return False
    await uow.session.delete(known)
    await uow.session.flush()
    return True


async def holidays(uow: UnitOfWork, *, since: date | None = None) -> list[Holiday]:
    stmt = select(Holiday).order_by(Holiday.day)
    if since is not None:
        stmt = stmt.where(Holiday.day >= since)
    return list(await uow.session.scalars(stmt))


def _view(shift: DutyShift, user: User) -> ShiftView:
    return ShiftView(
        id=shift.id,
        staff_id=user.id,
        name=user.name,
        staff_no=user.staff_no or "",
        starts_at=shift.starts_at,
        ends_at=shift.ends_at,
        holiday=shift.holiday,
    )


async def on_duty_at(uow: UnitOfWork, at: datetime) -> list[User]:
    """The active supervisors the roster puts on duty at ``at`` (holiday roster on holidays)."""
    holiday = await holiday_on(uow, local_date(uow, at)) is not None
    rows = await uow.session.scalars(
        select(User)
        .join(DutyShift, DutyShift.staff_id == User.id)
        .where(
            DutyShift.starts_at <= at,
            DutyShift.ends_at > at,
            DutyShift.holiday.is_(holiday),
            User.active.is_(True),
            User.role == Role.SUPERVISOR.value,
        )
        .order_by(DutyShift.starts_at, User.id)
    )
    return list(dict.fromkeys(rows))


async def shifts(
    uow: UnitOfWork, *, since: datetime, until: datetime | None = None, limit: int = 50
) -> list[ShiftView]:
    """Shifts that have not ended by ``since`` (and start before ``until``), earliest first."""
    stmt = (
        select(DutyShift, User)
        .join(User, User.id == DutyShift.staff_id)
        .where(DutyShift.ends_at > since)
        .order_by(DutyShift.starts_at, DutyShift.id)
        .limit(limit)
    )
    if until is not None:
        stmt = stmt.where(DutyShift.starts_at < until)
    return [_view(shift, user) for shift, user in await uow.session.execute(stmt)]
