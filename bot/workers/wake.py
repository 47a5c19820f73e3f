"""Sleeping until woken: a worker naps until new work is committed or ``seconds`` pass."""

from __future__ import annotations

import asyncio
import contextlib


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Wait for ``wake`` at most ``seconds``; cancellation always wins (unlike 3.11's wait_for)."""
    wake.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
