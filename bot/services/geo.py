"""Distances on the earth's surface, and a rough travel-time estimate."""

from __future__ import annotations

import math
from datetime import timedelta

EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def travel_time(distance: float, speed_kmh: float = 30.0) -> timedelta:
    """City driving at ``speed_kmh``, rounded up to whole minutes."""
    minutes = math.ceil(distance / 1000 / speed_kmh * 60)
    return timedelta(minutes=max(minutes, 1))
