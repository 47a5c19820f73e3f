"""Shared machinery of the reliability scripts (db_outage, two_workers, telegram_faults).

A load as benchmarks/perfkit runs it — the real bot in subprocesses (``perfkit.procs``), the
fake Bot API in this process (``perfkit.fake.BenchTelegram``: concurrent, round-robin webhook
delivery), N simulated engineers each walking whole jobs (``perfkit.flowrun``) — plus what the
reliability scripts check afterwards, from the database and from what the fake received:

* every job reached ``awaiting_signoff``; its dispatch history has each step once;
* every update the fake handed out is an inbox row marked done (none lost, none failed);
* every message the bot queued was delivered exactly once, in order per chat: the outbox rows
  the bot marked sent match one for one, in order, the messages in the fake's chats, and no
  message row is left pending or failed;
* timers: none pending past due, none fired twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "benchmarks", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from perfkit import dbs  # noqa: E402
from perfkit.fake import BenchTelegram, Recorder, SimUser, StepTimeout  # noqa: E402
from perfkit.flowrun import (  # noqa: E402
    Config,
    _create_jobs,
    _onboard,
    bot_settings,
    seed_staff,
    suppress_noise,
    walk_fieldbot_job,
)
from perfkit.procs import BotProcess, free_port  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bot.db.engine import make_engine  # noqa: E402
from bot.db.models import Dispatch, DispatchEvent, Inbox, Outbox, Timer  # noqa: E402

SEND_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendLocation", "sendDocument", "sendVoice", "sendVenue"}
)
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # never the suite's `test`

__all__ = ["BenchTelegram", "Load", "LoadSpec", "Outcome", "dbs", "suppress_noise"]


@dataclass
class LoadSpec:
    engineers: int = 30
    jobs: int = 2
    workers: int = 1
    webhook: bool = True
    runtime: str = "aiogram"
    db_url: str = ""  # where the bot processes connect (maybe through a proxy)
    direct_url: str = ""  # the same database, directly (set-up and checks)
    settings: dict[str, Any] = field(default_factory=dict)
    step_timeout: float = 120.0


@dataclass
class Outcome:
    """What a run left behind, and what is wrong with it (``problems`` empty = passed)."""

    jobs: int = 0
    jobs_done: int = 0
    final_states: dict[str, str] = field(default_factory=dict)  # dispatch number → status
    updates_sent: int = 0  # updates the fake handed out
    inbox: Counter[str] = field(default_factory=Counter)
    inbox_retried: int = 0
    updates_lost: int = 0
    messages_queued: int = 0  # outbox rows that send a message
    messages_delivered: int = 0
    messages_lost: int = 0
    messages_doubled: int = 0
    out_of_order_chats: int = 0
    outbox: Counter[str] = field(default_factory=Counter)  # "method/status"
    events_doubled: int = 0
    timers_done: int = 0
    timers_overdue: int = 0
    timers_twice: int = 0
    walk_failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Load:
    """Set up (scratch database, fake, bot processes, engineers and their jobs), walk, check."""

    def __init__(self, spec: LoadSpec, tg: BenchTelegram | None = None) -> None:
        self.spec = spec
        self.tg = tg or BenchTelegram(bot_username="fieldbot_bench_bot")
        self.recorder = Recorder()
        self.procs: list[BotProcess] = []
        self.sims: list[SimUser] = []
        self.jobs: list[list[tuple[int, str]]] = []
        self.walk_failures: list[str] = []
        self.walk_started = 0.0
        self.walk_ended = 0.0

    # ---------------------------------------------------------------- set-up
    async def start(self, *, reset: bool = True) -> None:
        spec = self.spec
        if reset:
            await dbs.reset(spec.direct_url)
        staff = await seed_staff(spec.direct_url, spec.engineers)
        await self.tg.start()
        self.tg.on_event(self.recorder.observe)
        cfg = Config(
            kind="fieldbot",
            runtime=spec.runtime,
            db_url=spec.db_url,
            engineers=spec.engineers,
            jobs=spec.jobs,
            workers=spec.workers,
            webhook=spec.webhook,
            pin=False,
        )
        for index in range(spec.workers):
            port = free_port()
            settings = {**bot_settings(cfg, self.tg, port), **spec.settings}
            self.procs.append(BotProcess("fieldbot", settings, name=f"bot{index}"))
        for proc in self.procs:
            await proc.start(timeout=180)  # a loaded machine starts slowly
        if spec.webhook:
            self.tg.webhook_targets = [p.url for p in self.procs]
        self.sims = [
            SimUser(self.tg, self.recorder, self.tg.user(first_name=f"Eng{i}"), spec.step_timeout)
            for i in range(spec.engineers)
        ]
        self.jobs = [[] for _ in self.sims]
        await _onboard(self.tg, self.sims, staff)
        await _create_jobs(self.procs[0].url, self.sims, staff, self.jobs, spec.jobs)
        await self.tg.wait_idle(quiet=0.5, timeout=300)

    # ---------------------------------------------------------------- the load
    async def walk(self) -> None:
        """Every engineer walks each of their jobs to the submitted report."""
        self.recorder.recording = True
        self.walk_started = time.time()

        async def walker(sim: SimUser, jobs: list[tuple[int, str]]) -> None:
            try:
                for job_id, number in jobs:
                    await walk_fieldbot_job(sim, job_id, number)
            except StepTimeout as exc:
                self.walk_failures.append(str(exc))

        await asyncio.gather(*(walker(s, j) for s, j in zip(self.sims, self.jobs, strict=True)))
        self.walk_ended = time.time()
        self.recorder.recording = False

    async def chatter(self, stop: asyncio.Event, users: int = 5, every: float = 1.0) -> None:
        """Open-loop traffic beside the walk: ``users`` strangers each say something every
        ``every`` seconds whether or not the bot has answered (the walkers wait for the bot,
        so during an outage only these keep updates coming). Each should get one answer per
        message (``chatter_unanswered``)."""
        self.chatters = [self.tg.user(first_name=f"Visitor{i}") for i in range(users)]
        self.chatter_sent: dict[int, int] = {u.id: 0 for u in self.chatters}
        while not stop.is_set():
            for user in self.chatters:
                await user.send(f"hello {self.chatter_sent[user.id]}")
                self.chatter_sent[user.id] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def chatter_unanswered(self) -> int:
        """Messages of the chatter users without their one answer."""
        missing = 0
        for user in getattr(self, "chatters", []):
            state = self.tg._chats.get(user.id)
            answers = len(state.bot_log) if state is not None else 0
            missing += abs(self.chatter_sent[user.id] - answers)
        return missing

    def actions_between(self, start: float, end: float) -> int:
        return sum(
            1 for e in self.recorder.entries if e.direction == "user" and start <= e.at < end
        )

    def first_bot_entry_after(self, instant: float) -> float | None:
        times = [e.at for e in self.recorder.entries if e.direction == "bot" and e.at >= instant]
        return min(times) if times else None

    def answered_by(self, start: float, end: float) -> float | None:
        """When every user action of [start, end) had had its first bot entry in its chat."""
        by_chat: dict[int, list[Any]] = {}
        for entry in self.recorder.entries:
            by_chat.setdefault(entry.chat_id, []).append(entry)
        latest: float | None = None
        for entries in by_chat.values():
            for i, entry in enumerate(entries):
                if entry.direction != "user" or not start <= entry.at < end:
                    continue
                reply = next((e.at for e in entries[i + 1 :] if e.direction == "bot"), None)
                if reply is None:
                    return None
                latest = reply if latest is None else max(latest, reply)
        return latest

    # ---------------------------------------------------------------- tear-down
    async def settle(self, timeout: float = 60.0) -> bool:
        """Wait until the fake has no update left to deliver and nothing is pending in the
        inbox or the outbox, twice in a row half a second apart (True), or ``timeout``."""
        engine = make_engine(self.spec.direct_url)
        deadline = time.monotonic() + timeout
        calm = 0
        try:
            while time.monotonic() < deadline:
                busy = bool(self.tg._pending)
                if not busy:
                    async with engine.connect() as conn:
                        busy = bool(
                            await conn.scalar(select(func.count()).where(Inbox.status == "pending"))
                            or await conn.scalar(
                                select(func.count()).where(Outbox.status == "pending")
                            )
                        )
                calm = 0 if busy else calm + 1
                if calm >= 2:
                    await self.tg.wait_idle(quiet=0.5, timeout=30)
                    return True
                await asyncio.sleep(0.5)
            return False
        finally:
            await engine.dispose()

    def alive(self) -> list[str]:
        """Bot processes that exited on their own (should be none)."""
        return [
            f"{p.name} exited with {p.proc.returncode}: {p.tail(5)}"
            for p in self.procs
            if p.proc is None or p.proc.returncode is not None
        ]

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for proc in self.procs:
            with contextlib.suppress(OSError):
                lines += proc.log_path.read_text(errors="replace").splitlines()
        return lines

    async def stop(self) -> None:
        for proc in self.procs:
            await proc.stop()
        if not os.environ.get("RELIABILITY_KEEP_LOGS"):
            for proc in self.procs:
                proc.cleanup()
        else:
            for proc in self.procs:
                print(f"    bot log kept: {proc.log_path}")
        await self.tg.stop()

    # ---------------------------------------------------------------- checks
    async def check(self) -> Outcome:
        out = Outcome(walk_failures=list(self.walk_failures))
        out.jobs = sum(len(j) for j in self.jobs)
        engine = make_engine(self.spec.direct_url)
        try:
            async with engine.connect() as conn:
                await self._check_jobs(conn, out)
                await self._check_inbox(conn, out)
                await self._check_outbox(conn, out)
                await self._check_timers(conn, out)
        finally:
            await engine.dispose()
        out.problems += [f"walk: {f}" for f in out.walk_failures[:5]]
        return out

    async def _check_jobs(self, conn: Any, out: Outcome) -> None:
        rows = await conn.execute(select(Dispatch.number, Dispatch.status))
        out.final_states = {str(n): str(s) for n, s in rows}
        out.jobs_done = sum(1 for s in out.final_states.values() if s == "awaiting_signoff")
        if out.jobs_done != out.jobs:
            out.problems.append(f"{out.jobs_done} of {out.jobs} jobs reached awaiting_signoff")
        # A walk moves each job through each status once: a status entered twice is an update
        # (or a timer) acted on twice.
        doubled = await conn.execute(
            select(DispatchEvent.dispatch_id, DispatchEvent.to_status, func.count())
            .where(DispatchEvent.to_status.is_not(None))
            .group_by(DispatchEvent.dispatch_id, DispatchEvent.to_status)
            .having(func.count() > 1)
        )
        twice = [(d, k, n) for d, k, n in doubled]
        out.events_doubled = len(twice)
        if twice:
            out.problems.append(f"dispatch events recorded twice: {twice[:5]}")

    async def _check_inbox(self, conn: Any, out: Outcome) -> None:
        rows = await conn.execute(select(Inbox.status, func.count()).group_by(Inbox.status))
        out.inbox = Counter({str(k): int(v) for k, v in rows})
        out.inbox_retried = int(
            await conn.scalar(select(func.count()).where(Inbox.attempts > 1)) or 0
        )
        done = set(await conn.scalars(select(Inbox.update_id).where(Inbox.status == "done")))
        handed_out = {int(u["update_id"]) for u in self.tg.updates}
        out.updates_sent = len(handed_out)
        lost = handed_out - done
        out.updates_lost = len(lost)
        if lost:
            out.problems.append(f"{len(lost)} update(s) not done in the inbox: {sorted(lost)[:5]}")
        if out.inbox.get("failed"):
            out.problems.append(f"{out.inbox['failed']} update(s) failed in the bot")

    async def _check_outbox(self, conn: Any, out: Outcome) -> None:
        rows = (
            await conn.execute(
                select(Outbox.chat_id, Outbox.method, Outbox.status, Outbox.message_id).order_by(
                    Outbox.id
                )
            )
        ).all()
        out.outbox = Counter(f"{m}/{s}" for _, m, s, _ in rows)
        sent: dict[int, list[int]] = {}
        for chat_id, method, status, message_id in rows:
            if method not in SEND_METHODS:
                continue
            out.messages_queued += 1
            if status != "sent" or message_id is None:
                out.messages_lost += 1
                continue
            sent.setdefault(int(chat_id), []).append(int(message_id))
        # The fake numbers a chat's messages in the order they arrive: an outbox row's
        # message id says which delivery it was. A message the fake holds that no row names is
        # a second delivery; a row whose id the fake does not hold was never delivered; rows
        # whose ids are not increasing (in the order they were queued) arrived out of order.
        for chat_id, state in self.tg._chats.items():
            ours = sent.get(chat_id, [])
            theirs = [r.message_id for r in state.bot_log]
            out.messages_doubled += len(set(theirs) - set(ours))
            out.messages_lost += len(set(ours) - set(theirs))
            out.messages_delivered += len(set(ours) & set(theirs))
            if ours != sorted(ours):
                out.out_of_order_chats += 1
        if out.messages_lost:
            out.problems.append(f"{out.messages_lost} message(s) not delivered")
        if out.messages_doubled:
            out.problems.append(f"{out.messages_doubled} message(s) delivered more than once")
        if out.out_of_order_chats:
            out.problems.append(f"{out.out_of_order_chats} chat(s) got messages out of order")
        stuck = sum(n for k, n in out.outbox.items() if k.endswith("/pending"))
        if stuck:
            out.problems.append(f"{stuck} outbox row(s) still pending")
        failed = {k: n for k, n in out.outbox.items() if k.endswith("/failed")}
        if failed:
            out.problems.append(f"outbox rows failed: {failed}")

    async def _check_timers(self, conn: Any, out: Outcome) -> None:
        now = datetime.now(UTC)
        out.timers_done = int(
            await conn.scalar(select(func.count()).where(Timer.status == "done")) or 0
        )
        out.timers_overdue = int(
            await conn.scalar(
                select(func.count()).where(
                    Timer.status == "pending", Timer.due_at < now - timedelta(seconds=5)
                )
            )
            or 0
        )
        out.timers_twice = int(
            await conn.scalar(
                select(func.count()).where(Timer.status == "done", Timer.attempts > 1)
            )
            or 0
        )
        if out.timers_overdue:
            out.problems.append(f"{out.timers_overdue} timer(s) overdue and not fired")
        failed = int(await conn.scalar(select(func.count()).where(Timer.status == "failed")) or 0)
        if failed:
            out.problems.append(f"{failed} timer(s) failed")


def error_lines(lines: list[str]) -> tuple[int, int, int]:
    """(ERROR lines, WARNING lines, tracebacks) in a bot's log."""
    errors = sum(1 for line in lines if re.search(r"\bERROR\b", line))
    warnings = sum(1 for line in lines if re.search(r"\bWARNING\b", line))
    tracebacks = sum(1 for line in lines if line.startswith("Traceback"))
    return errors, warnings, tracebacks


def figure(value: float | None, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.1f} {unit}"
