"""Business-hours SLA clocks: weekly hours, public holidays, make-up working days (调休) and the
pause while a complaint waits on the customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main as cli
from bot.db.models import Timer
from bot.db.models.complaints import Complaint
from bot.flows.business_hours import (
    BusinessCalendar,
    CalendarError,
    add_time,
    calendar,
    parse_hours_spec,
    set_calendar,
    time_between,
    update_calendar,
)
from tests.flows.test_complaints import (
    BOSS,
    CUSTOMER,
    boss,
    complaint,
    file_complaint,
    last_text,
    press,
    say,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = {
    "weekly": {"mon-fri": ["09:00-18:00"]},
    "holidays": ["2026-12-07"],  # Monday
    "workdays": ["2026-12-05"],  # Saturday, a make-up working day
}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def office() -> BusinessCalendar:
    return BusinessCalendar.from_dict(OFFICE, "Asia/Shanghai")


# ---- the calendar itself ---------------------------------------------------------------------------


def test_friday_evening_counts_from_the_make_up_saturday_and_skips_the_holiday() -> None:
    cal = office()
    filed = local("2026-12-04 19:00")  # Friday, after hours
    assert cal.add(filed, timedelta(minutes=30)) == local("2026-12-05 09:30")
    # 24 working hours: Saturday 9 h, Sunday closed, Monday holiday, Tuesday 9 h, Wednesday 6 h.
    assert cal.add(filed, timedelta(hours=24)) == local("2026-12-09 15:00")
    assert cal.between(filed, local("2026-12-09 15:00")) == timedelta(hours=24)


def test_without_the_make_up_day_or_the_holiday_the_clock_moves() -> None:
    plain = BusinessCalendar.from_dict({"weekly": {"mon-fri": ["09:00-18:00"]}}, "Asia/Shanghai")
    assert plain.add(local("2026-12-04 19:00"), timedelta(minutes=30)) == local("2026-12-07 09:30")


def test_time_inside_hours_and_at_the_end_of_a_period() -> None:
    cal = office()
    assert cal.add(local("2026-12-08 10:00"), timedelta(hours=2)) == local("2026-12-08 12:00")
    assert cal.add(local("2026-12-08 17:00"), timedelta(hours=1)) == local("2026-12-08 18:00")
    assert cal.add(local("2026-12-08 17:00"), timedelta(hours=2)) == local("2026-12-09 10:00")
    assert cal.is_open(local("2026-12-08 10:00")) and not cal.is_open(local("2026-12-07 10:00"))
    assert cal.is_open(local("2026-12-05 10:00")) and not cal.is_open(local("2026-12-06 10:00"))


def test_split_days_and_ranges_up_to_midnight() -> None:
    cal = BusinessCalendar.from_dict(
        {"weekly": {"mon-fri": "08:00-12:00,13:00-24:00", "sat": ["10:00-12:00"]}},
        "Asia/Shanghai",
    )
    assert cal.add(local("2026-12-01 11:30"), timedelta(hours=1)) == local("2026-12-01 13:30")
    assert cal.add(local("2026-12-01 23:00"), timedelta(hours=2)) == local("2026-12-02 09:00")
    assert cal.between(local("2026-12-05 00:00"), local("2026-12-07 00:00")) == timedelta(hours=2)


def test_no_calendar_means_around_the_clock() -> None:
    start = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    assert add_time(None, start, timedelta(hours=24)) == start + timedelta(hours=24)
    assert time_between(None, start, start - timedelta(hours=1)) == timedelta(0)


@pytest.mark.parametrize(
    "bad",
    [
        {"weekly": {"mon": ["18:00-09:00"]}},
        {"weekly": {"mon": ["09:00-12:00", "11:00-13:00"]}},
        {"weekly": {"funday": ["09:00-18:00"]}},
        {"weekly": {}},
        {"weekly": {"mon": ["9-5"]}},
        {"weekly": {"mon": ["09:00-18:00"]}, "holidays": ["2026-13-01"]},
        {"weekly": {"mon": ["09:00-18:00"]}, "workdays": "2026-12-05"},
    ],
)
def test_a_bad_calendar_is_refused_with_a_reason(bad) -> None:
    with pytest.raises(CalendarError):
        BusinessCalendar.from_dict(bad, "Asia/Shanghai")


def test_cli_hour_specs() -> None:
    weekly = parse_hours_spec(["mon-fri=09:00-18:00", "sat=09:00-12:00,13:00-15:00", "fri=closed"])
    assert weekly["mon"] == ["09:00-18:00"] and weekly["fri"] == [] and weekly["sun"] == []
    assert weekly["sat"] == ["09:00-12:00", "13:00-15:00"]
    with pytest.raises(CalendarError):
        parse_hours_spec(["mon-fri 09:00-18:00"])


# ---- the organisation's calendar ---------------------------------------------------------------


async def test_the_calendar_is_set_changed_and_cleared(services) -> None:
    async with services.uow() as uow:
        assert await calendar(uow) is None
        with pytest.raises(CalendarError):
            await update_calendar(uow, add_holidays=["2026-12-07"])  # weekly hours first
        await update_calendar(uow, weekly=parse_hours_spec(["mon-fri=09:00-18:00"]))
        await update_calendar(uow, add_holidays=["2026-12-07"], add_workdays={"2026-12-05": []})
        await uow.commit()
    async with services.uow() as uow:
        cal = await calendar(uow)
        assert cal is not None and cal.hours_on(local("2026-12-05").date()) == ((540, 1080),)
        assert local("2026-12-07").date() in cal.holidays
        await update_calendar(uow, remove_dates=["2026-12-07"])
        await set_calendar(uow, None)
        await uow.commit()
    async with services.uow() as uow:
        assert await calendar(uow) is None


def test_the_cli_sets_and_shows_the_calendar(make_settings, tmp_path, monkeypatch) -> None:
    settings = make_settings()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "calendar",
            "set",
            "--hours",
            "mon-fri=09:00-18:00",
            "--holiday",
            "2026-12-07",
            "--workday",
            "2026-12-05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sat: closed" in result.output and "2026-12-05 (09:00-18:00)" in result.output
    bad = runner.invoke(cli, ["calendar", "add-holiday", "someday"])
    assert bad.exit_code == 1 and "not a date" in bad.output
    shown = runner.invoke(cli, ["calendar", "show", "--json"])
    assert '"holidays": ["2026-12-07"]' in shown.output
    assert runner.invoke(cli, ["calendar", "clear"]).exit_code == 0
    assert "7x24" in runner.invoke(cli, ["calendar", "show"]).output


# ---- complaint clocks in business hours ----------------------------------------------------------


async def test_a_friday_evening_complaint_with_a_pause_while_waiting_on_the_customer(
    services, clock
) -> None:
    async with services.uow() as uow:
        await set_calendar(uow, OFFICE)
        await uow.commit()
    await boss(services)
    clock.set(local("2026-12-04 19:00"))  # Friday evening
    c = await file_complaint(services)
    assert c.response_due == local("2026-12-05 09:30")  # the make-up Saturday
    assert c.resolution_due == local("2026-12-09 15:00")
    assert c.resolution_warn_at == local("2026-12-08 16:00")  # 16 of 24 working hours
    assert any("respond by 2026-12-05 09:30" in t for t in await say_texts(services))

    clock.set(local("2026-12-05 09:10"))
    await press(services, BOSS, f"cmp:{c.id}:take")
    clock.set(local("2026-12-05 10:00"))  # one working hour of the resolution clock used
    await press(services, BOSS, f"cmp:{c.id}:ask")
    await say(services, BOSS, "Which unit exactly?")
    c = await complaint(services, c.id)
    assert c.status == "waiting" and c.paused_at == local("2026-12-05 10:00")
    assert await pending_kinds(services, c.id) == set()
    assert "paused" in await last_text(services, BOSS)

    clock.set(local("2026-12-08 11:00"))  # Tuesday: Sunday and the Monday holiday passed too
    await say(services, CUSTOMER, "The one by the door.")
    c = await complaint(services, c.id)
    assert c.status == "open" and c.paused_at is None
    # 23 working hours were left: Tuesday 7 h, Wednesday 9 h, Thursday 7 h.
    assert c.resolution_due == local("2026-12-10 16:00")
    assert c.resolution_warn_at == local("2026-12-09 17:00")
    timers = await pending_timers(services, c.id)
    assert timers == {
        "cmp_resolution_warn": local("2026-12-09 17:00"),
        "cmp_resolution_breach": local("2026-12-10 16:00"),
    }
    assert "runs again" in await last_text(services, BOSS)
    assert "The one by the door." in (await say_texts(services, BOSS))[-2]


async def say_texts(services, chat_id: int = CUSTOMER) -> list[str]:
    from tests.conftest import texts_to

    return await texts_to(services, chat_id)


async def pending_timers(services, complaint_id: int) -> dict[str, datetime]:
    async with services.uow() as uow:
        rows = await uow.session.scalars(
            select(Timer).where(
                Timer.subject == f"complaint:{complaint_id}", Timer.status == "pending"
            )
        )
        return {t.kind: t.due_at for t in rows}


async def pending_kinds(services, complaint_id: int) -> set[str]:
    return set(await pending_timers(services, complaint_id))


async def test_an_urgent_complaint_keeps_the_time_already_used(services, clock) -> None:
    async with services.uow() as uow:
        await set_calendar(uow, OFFICE)
        await uow.commit()
    await boss(services)
    clock.set(local("2026-12-08 09:00"))  # Tuesday
    c = await file_complaint(services)
    await press(services, BOSS, f"cmp:{c.id}:take")
    clock.set(local("2026-12-08 17:00"))  # 8 working hours used: urgent (4 h) is overdue now
    await press(services, BOSS, f"cmp:{c.id}:urg")
    c = await complaint(services, c.id)
    assert c.resolution_due == local("2026-12-08 17:00")


async def test_complaint_rows_store_aware_utc(services, clock) -> None:
    await boss(services)
    clock.set(local("2026-12-04 19:00"))
    c = await file_complaint(services)
    async with services.uow() as uow:
        row = await uow.session.get(Complaint, c.id)
        assert row is not None and row.created_at.tzinfo is not None
