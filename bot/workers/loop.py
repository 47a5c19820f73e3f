"""A worker loop that naps until woken and stops gracefully (never mid-transaction)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Wait for ``wake`` at most ``seconds``; cancellation always wins (unlike 3.11's wait_for)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


class Worker:
    """Repeats ``run_once``; naps ``idle`` seconds when it found nothing to do."""

    idle = 0.5

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()

    async def run_once(self) -> int:
        raise NotImplementedError

    async def run_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("%s failed; retrying", type(self).__name__)
                await nap(self.stopping, 1.0)
                continue
            if done == 0 and not self.stopping.is_set():
                self.wake.clear()
                await nap(self.wake, self.idle)

    def stop(self) -> None:
        """Finish the current round, then leave the loop."""
        self.stopping.set()
        self.wake.set()
