"""``fieldbot calendar``: the business hours complaint clocks are counted in (7×24 when unset)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from bot.flows import business_hours
from bot.flows.business_hours import (
    BusinessCalendar,
    CalendarError,
    parse_hours_spec,
    set_calendar,
    update_calendar,
)


def _settings() -> Any:
    from bot.cli import _settings as settings

    return settings()


def _apply(change: Any) -> BusinessCalendar | None:
    """Run ``change(uow)`` in one transaction; print a CalendarError in one line."""
    from bot.cli import _with_services

    async def body(services: Any) -> BusinessCalendar | None:
        async with services.uow() as uow:
            result: BusinessCalendar | None = await change(uow)
            await uow.commit()
            return result

    try:
        return asyncio.run(_with_services(_settings(), body))
    except CalendarError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _show(cal: BusinessCalendar | None, as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(cal.to_dict() if cal else None))
        return
    if cal is None:
        click.echo("no business calendar: complaint clocks run 7x24")
        return
    data = cal.to_dict()
    click.echo(f"time zone: {cal.timezone}")
    for day, ranges in data["weekly"].items():
        click.echo(f"  {day}: {', '.join(ranges) or 'closed'}")
    click.echo(f"holidays: {', '.join(data['holidays']) or '-'}")
    extra = [f"{d} ({', '.join(r)})" for d, r in data["workdays"].items()]
    click.echo(f"extra working days: {', '.join(extra) or '-'}")


def _workdays(items: tuple[str, ...]) -> dict[str, list[str]]:
    """``2026-09-27`` (the usual hours) or ``2026-09-27=09:00-17:00``."""
    out: dict[str, list[str]] = {}
    for item in items:
        day, _, ranges = item.partition("=")
        out[day.strip()] = [r for r in ranges.split(",") if r.strip()]
    return out


@click.group()
def calendar() -> None:
    """Business hours, public holidays and make-up working days (调休) for complaint clocks."""


@calendar.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(as_json: bool) -> None:
    """Print the business calendar."""
    _show(_apply(business_hours.calendar), as_json)


@calendar.command("set")
@click.option(
    "--hours",
    "hours",
    multiple=True,
    required=True,
    help="days=ranges, e.g. mon-fri=09:00-18:00 or sat=09:00-12:00,13:00-17:00 (others closed)",
)
@click.option("--holiday", "holidays", multiple=True, help="A public holiday, e.g. 2026-10-01.")
@click.option("--workday", "workdays", multiple=True, help="A make-up working day (2026-09-27).")
def set_hours(hours: tuple[str, ...], holidays: tuple[str, ...], workdays: tuple[str, ...]) -> None:
    """Set the weekly hours (and add holidays and working days)."""

    async def change(uow: Any) -> BusinessCalendar:
        return await update_calendar(
            uow,
            weekly=parse_hours_spec(list(hours)),
            add_holidays=holidays,
            add_workdays=_workdays(workdays),
        )

    _show(_apply(change))


@calendar.command("add-holiday")
@click.argument("dates", nargs=-1, required=True)
def add_holiday(dates: tuple[str, ...]) -> None:
    """Public holidays: closed all day."""

    async def change(uow: Any) -> BusinessCalendar:
        return await update_calendar(uow, add_holidays=dates)

    _show(_apply(change))


@calendar.command("add-workday")
@click.argument("dates", nargs=-1, required=True)
def add_workday(dates: tuple[str, ...]) -> None:
    """Extra working days (调休): DATE for the usual hours, or DATE=09:00-17:00."""

    async def change(uow: Any) -> BusinessCalendar:
        return await update_calendar(uow, add_workdays=_workdays(dates))

    _show(_apply(change))


@calendar.command("remove")
@click.argument("dates", nargs=-1, required=True)
def remove(dates: tuple[str, ...]) -> None:
    """Forget holidays or extra working days."""

    async def change(uow: Any) -> BusinessCalendar:
        return await update_calendar(uow, remove_dates=dates)

    _show(_apply(change))


@calendar.command("clear")
def clear() -> None:
    """No business calendar: complaint clocks run 7×24."""

    async def change(uow: Any) -> BusinessCalendar | None:
        return await set_calendar(uow, None)

    _show(_apply(change))
