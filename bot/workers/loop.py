"""A worker loop that naps until woken and stops gracefully (never mid-transaction).

When a round fails (the database is down or restarting, the network is gone) the loop backs
off (0.25 s, 0.5 s, 1 s, 2 s, 2 s, …): short enough to resume within a couple of seconds of the
database coming back, long enough not to spin. The first failure of a streak is logged with
its traceback, the following ones as one line each, and the recovery once, with the streak's
length, so a 10-second database restart costs a handful of log lines, not hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_FIRST = 0.25  # seconds before the first retry of a failed round
RETRY_MAX = 2.0  # the longest pause between retries


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Wait for ``wake`` at most ``seconds``; cancellation always wins (unlike 3.11's wait_for)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


def retry_delay(failures: int, first: float = RETRY_FIRST, most: float = RETRY_MAX) -> float:
    """The pause after ``failures`` failures in a row (1, 2, …): doubling from ``first``."""
    return float(min(most, first * 2 ** max(failures - 1, 0)))


async def persist(
    stopping: asyncio.Event,
    what: str,
    write: Callable[[], Awaitable[T]],
    *,
    first: float = RETRY_FIRST,
    most: float = RETRY_MAX,
) -> T:
    """Run ``write`` until it succeeds, backing off between tries.

    For a write that records something already done outside the database (a message handed to
    Telegram, an update given back): dropping it would make the work happen again once a lease
    expires, so it is retried until the database answers. Gives up (re-raises) only when the
    worker is stopping.
    """
    failures = 0
    while True:
        try:
            result = await write()
        except Exception as exc:
            failures += 1
            if stopping.is_set():
                raise
            if failures == 1:
                log.warning("%s failed (%s); retrying until it succeeds", what, type(exc).__name__)
            await nap(stopping, retry_delay(failures, first, most))
            continue
        if failures:
            log.warning("%s succeeded after %d failed tries", what, failures)
        return result


class FailureStreak:
    """The failures in a row of something that repeats (a worker's round, a scheduler tick),
    logged as above: the first with its traceback, each further one as a line, the recovery
    once with the streak's length."""

    def __init__(self, name: str, what: str = "rounds") -> None:
        self.name = name
        self.what = what
        self.count = 0  # failures in a row
        self.since = 0.0  # monotonic time of the streak's first failure

    def failed(self, exc: Exception) -> None:
        self.count += 1
        if self.count == 1:
            self.since = time.monotonic()
            log.error("%s failed; retrying", self.name, exc_info=exc)
        else:
            log.warning(
                "%s failed again (%s: %s), %d in a row",
                self.name,
                type(exc).__name__,
                str(exc).splitlines()[0][:120] if str(exc) else "",
                self.count,
            )

    def succeeded(self) -> None:
        if self.count:
            log.warning(
                "%s recovered after %d failed %s (%.1fs)",
                self.name,
                self.count,
                self.what,
                time.monotonic() - self.since,
            )
            self.count = 0


class Worker:
    """Repeats ``run_once``; naps ``idle`` seconds when it found nothing to do."""

    idle = 0.5

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.streak = FailureStreak(type(self).__name__)

    @property
    def failed_rounds(self) -> int:
        """Rounds failed in a row."""
        return self.streak.count

    async def run_once(self) -> int:
        raise NotImplementedError

    async def run_forever(self) -> None:
        while not self.stopping.is_set():
            # Cleared before the round, not after: a wake-up that arrives while the round
            # runs (a commit it could not see yet) makes the nap below return at once.
            self.wake.clear()
            try:
                done = await self.run_once()
            except Exception as exc:
                self.streak.failed(exc)
                await nap(self.stopping, retry_delay(self.failed_rounds))
                continue
            self.streak.succeeded()
            if done == 0 and not self.stopping.is_set():
                await nap(self.wake, self.idle)

    def stop(self) -> None:
        """Finish the current round, then leave the loop."""
        self.stopping.set()
        self.wake.set()
