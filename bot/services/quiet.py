"""Quiet hours: when a non-urgent message may reach a recipient in their own time zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def in_quiet_hours(local: time, quiet: tuple[time, time]) -> bool:
    start, end = quiet
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # across midnight


def next_allowed(now: datetime, tz: str, quiet: tuple[time, time] | None) -> datetime:
    """``now`` if it is day time for the recipient, else the end of their quiet hours (UTC)."""
    if quiet is None:
        return now
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    if not in_quiet_hours(local.timetz().replace(tzinfo=None), quiet):
        return now
    end = quiet[1]
    candidate = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(
            hour=end.hour, minute=end.minute, second=0, microsecond=0
        )
    # Re-resolve the wall time in the zone (DST-safe), then back to the instant.
    wall = datetime(
        candidate.year, candidate.month, candidate.day, end.hour, end.minute, tzinfo=zone
    )
    return wall.astimezone(now.tzinfo)
