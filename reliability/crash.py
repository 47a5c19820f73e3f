"""Crash test: kill -9 the bot at random moments under a load of concurrent jobs.

The fake Bot API (``perfkit.fake.BenchTelegram``, recording each request's time) and the
simulated engineers and customers run here; the real bot (``fieldbot run``: polling, the
settings from the environment) runs as a subprocess. The same seeded load runs twice: once
untouched (the reference) and once with ``--kills`` SIGKILLs at seeded random moments, each
followed by a restart. Then:

* every job's final state (status, report, arrival, offers, events, sign-off, feedback,
  follow-ups, timers) must equal the reference's;
* every timer fires once (a timer fired twice writes its messages twice: the outbox rows of
  every chat are counted against the reference) and every recurring timer is single;
* every visible message the fake received is counted against the outbox row that asked for
  it: none may be missing, and an extra copy is allowed only for a row that was in flight when
  the bot died (its lease still held at a kill — one kill per extra copy — or, for one extra
  copy, its first copy reached the fake at most ``--window`` seconds before a kill): Telegram
  has no idempotency key, so a send whose answer the dead process never recorded is sent
  again (at-least-once).

Exit status 0 when all of that holds, 1 otherwise.

    uv run python reliability/crash.py --quick
    uv run python reliability/crash.py --jobs 200 --kills 5 --seed 1 --database sqlite
    uv run python reliability/crash.py --database postgresql --runtime ptb
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "benchmarks", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402
from perfkit import dbs  # noqa: E402
from perfkit.fake import Recorder, SimUser, StepTimeout  # noqa: E402
from perfkit.flowrun import UNTHROTTLED, dispatch_body, suppress_noise  # noqa: E402
from perfkit.procs import BENCH_DIR, free_port  # noqa: E402

from bot.bootstrap import build_services  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.services.staff import add_staff  # noqa: E402
from reliability import crash_check as check  # noqa: E402
from reliability.crash_load import CrashTelegram, walk_customer, walk_engineer  # noqa: E402

API_TOKEN = "crash-api-token"
BOT_USERNAME = "fieldbot_crash_bot"
PG_ADMIN_URL = os.environ.get("CRASH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = "fieldbot_crash"
ACTIONS_PER_JOB = 13 + 6  # engineer (flowrun.walk_fieldbot_job) + customer (walk_customer)
REAL_LEASE = 60.0  # bot/workers/processor.py and sender.py


@dataclass
class Options:
    jobs: int = 200
    kills: int = 5
    seed: int = 1
    database: str = "sqlite"
    runtime: str = "aiogram"
    lease: float | None = None  # None: the product's own leases
    window: float = 0.5
    step_timeout: float = 240.0
    verbose: bool = False
    warm: bool = False  # restarts fork a pre-imported process (see crash_botmain)


@dataclass
class Kill:
    index: int
    planned: float  # progress fraction that triggered it
    heavy: bool
    burst: int = 0  # heavy: messages delivered in the 0.25 s before the kill
    at: float = 0.0  # monotonic
    progress: float = 0.0
    sends_last_second: int = 0
    fake_in_flight: int = 0
    restarted: float = 0.0  # monotonic: the new process was spawned
    ready: float = 0.0  # monotonic: it printed READY
    first_answer: float | None = None  # monotonic: its first visible message / answer
    stalled_resumed: float | None = None  # the last chat with a leased row got its next message
    in_flight: check.InFlight | None = None


@dataclass
class RunResult:
    label: str
    seconds: float = 0.0
    updates: int = 0
    kills: list[Kill] = field(default_factory=list)
    snapshot: check.Snapshot | None = None
    calls: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)


class CrashBot:
    """The bot (``reliability.crash_botmain``), killed and restarted at will.

    Cold (default): each start is a new ``python -m reliability.crash_botmain`` process, as a
    supervisor such as systemd would restart it. Warm: one zygote process imports everything
    once and forks a fresh bot for each start (same code, same settings, same database).
    """

    def __init__(self, settings: dict[str, Any], lease: float | None, *, warm: bool) -> None:
        self.settings = settings
        self.lease = lease
        self.warm = warm
        self.proc: asyncio.subprocess.Process | None = None  # cold: the bot; warm: the zygote
        self.pid: int | None = None  # the running bot
        self.folder = Path(tempfile.mkdtemp(prefix="fieldbot-crash-"))
        self.log_path = self.folder / "stderr.log"
        self.url = ""

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "PERF_"))}
        env.update({k.upper(): str(v) for k, v in self.settings.items()})
        env["PERF_KIND"] = "fieldbot"
        if self.lease is not None:
            env["CRASH_LEASE"] = str(self.lease)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    async def _spawn(self, *args: str) -> asyncio.subprocess.Process:
        with self.log_path.open("ab") as err:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "reliability.crash_botmain",
                *args,
                cwd=self.folder,  # no stray .env from the developer's folder
                env=self._env(),
                stdin=subprocess.PIPE if args else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    async def _line(self, prefix: str) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await self.proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"the bot exited: {self.tail()}")
            if line.startswith(prefix):
                return line.split(maxsplit=1)[1].strip() if " " in line.strip() else ""

    async def start(self, timeout: float = 120.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                if not self.warm:
                    self.proc = await self._spawn()
                    self.pid = self.proc.pid
                else:
                    if self.proc is None:
                        self.proc = await self._spawn("--zygote")
                        await self._line("ZYGOTE")
                    assert self.proc.stdin is not None
                    self.proc.stdin.write(b"fork\n")
                    await self.proc.stdin.drain()
                    self.pid = int(await self._line("PID"))
                self.url = await self._line("READY")
        except TimeoutError:
            await self.kill()
            raise RuntimeError(f"the bot did not start: {self.tail()}") from None

    def _alive(self) -> bool:
        if self.pid is None:
            return False
        if not self.warm:
            return self.proc is not None and self.proc.returncode is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def _gone(self, timeout: float) -> bool:
        if not self.warm:
            assert self.proc is not None
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
                return True
            except TimeoutError:
                return False
        deadline = time.monotonic() + timeout
        while self._alive():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def kill(self) -> None:
        if self._alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            await self._gone(30)
        self.pid = None

    async def stop(self, grace: float = 30.0) -> bool:
        """SIGTERM, as a supervisor stops it; False when it had to be killed."""
        clean = True
        if self._alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            clean = await self._gone(grace)
            if not clean:
                await self.kill()
        self.pid = None
        return clean

    async def close(self) -> None:
        await self.kill()
        if self.warm and self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def warnings(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]


def bot_settings(opts: Options, tg: CrashTelegram, db_url: str, port: int) -> dict[str, Any]:
    return {
        "bot_token": tg.token,
        "telegram_api_url": tg.url,
        "database_url": db_url,
        "bot_runtime": opts.runtime,
        "bot_username": BOT_USERNAME,
        "api_token": API_TOKEN,
        "http_host": "127.0.0.1",
        "http_port": port,
        "quiet_hours": "off",
        # Deadlines nobody meets in a run are far away (they stay pending, or are cancelled
        # by the step that meets them); the two the walk waits for fire a moment later.
        "offer_timeout": "1d",
        "contact_deadline": "2h",
        "signoff_reminder": "2s",
        "signoff_escalation": "1d",
        "followup_delay": "2s",
        "scheduler_interval": "500ms",
        "log_level": "WARNING",
        **UNTHROTTLED,
    }


async def seed_engineers(db_url: str, count: int) -> list[tuple[str, str]]:
    services = build_services(load_settings(database_url=db_url, bot_username=BOT_USERNAME))
    out = []
    try:
        async with services.uow() as uow:
            for i in range(count):
                new = await add_staff(
                    uow,
                    role="engineer",
                    name=f"Engineer {i:04d}",
                    skills=["repair", "installation", "maintenance"],
                )
                out.append((str(new.user.staff_no), new.code))
            await uow.commit()
    finally:
        await services.sessionmaker.kw["bind"].dispose()
    return out


def job_body(i: int, staff_no: str) -> dict[str, Any]:
    body = dispatch_body(staff_no, f"SN-{i:05d}")
    body["customer"] = f"Customer {i:04d}"
    body["contact_name"] = f"Contact {i:04d}"
    body["contact_phone"] = f"+86 139 {i // 10000:04d} {i % 10000:04d}"
    body["service_type"] = ("repair", "maintenance", "installation")[i % 3]
    return body


@dataclass
class Job:
    index: int
    id: int
    number: str
    start_param: str
    rating: int
    comment: str


async def setup(
    opts: Options, tg: CrashTelegram, recorder: Recorder, bot: CrashBot, staff: list[Any]
) -> tuple[list[SimUser], list[SimUser], list[Job]]:
    """Onboarding (invite links), dispatches over REST, customers follow their job's link."""
    rng = random.Random(opts.seed)
    engineers = [
        SimUser(tg, recorder, tg.user(first_name=f"Eng{i}"), timeout=opts.step_timeout)
        for i in range(opts.jobs)
    ]
    customers = [
        SimUser(
            tg,
            recorder,
            tg.user(first_name=f"Cust{i}", language_code="en"),
            timeout=opts.step_timeout,
        )
        for i in range(opts.jobs)
    ]
    for sim, (_, code) in zip(engineers, staff, strict=True):
        await sim.user.send(f"/start {code}")
    await asyncio.gather(*(sim.wait_any() for sim in engineers))
    jobs = []
    async with httpx.AsyncClient(
        base_url=bot.url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=120
    ) as api:
        for i in range(opts.jobs):  # one at a time: the same ids and numbers in every run
            response = await api.post("/api/v1/dispatches", json=job_body(i, staff[i][0]))
            response.raise_for_status()
            created = response.json()
            link = str(created.get("customer_link") or "")
            jobs.append(
                Job(
                    index=i,
                    id=int(created["id"]),
                    number=str(created["number"]),
                    start_param=link.split("start=", 1)[-1],
                    rating=rng.choice((3, 4, 5)),
                    comment=f"Comment {i}: {rng.choice(('quick', 'tidy', 'friendly'))}",
                )
            )
    for sim, job in zip(customers, jobs, strict=True):
        await sim.user.send(f"/start {job.start_param}")
    await asyncio.gather(
        *(sim.wait(lambda r: True, what="follow link") for sim in customers),
        *(
            sim.wait(
                lambda r, n=job.number: n in str(r.current.get("text") or ""),
                what=f"offer {job.number}",
                from_start=True,
            )
            for sim, job in zip(engineers, jobs, strict=True)
        ),
    )
    await tg.wait_idle(quiet=0.5, timeout=300)
    for sim in (*engineers, *customers):
        sim.actions = 0
    return engineers, customers, jobs


def plan_kills(opts: Options) -> list[Kill]:
    """Seeded progress points (fractions of all user actions) spread over the walk."""
    rng = random.Random(opts.seed * 7919 + 1)
    if opts.kills <= 0:
        return []
    span = 0.85 / opts.kills
    points = [0.05 + span * k + rng.uniform(0.1, 0.9) * span for k in range(opts.kills)]
    heavy = rng.randrange(opts.kills)
    return [Kill(index=k, planned=p, heavy=k == heavy) for k, p in enumerate(points)]


async def killer(
    opts: Options,
    bot: CrashBot,
    tg: CrashTelegram,
    db_url: str,
    sims: list[SimUser],
    kills: list[Kill],
    walking: asyncio.Event,
) -> None:
    rng = random.Random(opts.seed * 104729 + 3)
    total = ACTIONS_PER_JOB * opts.jobs

    def progress() -> float:
        return sum(s.actions for s in sims) / total

    for kill in kills:
        while walking.is_set() and progress() < kill.planned:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.02)
        if not walking.is_set():
            return
        if kill.heavy:  # wait (at most 10 s) for a burst of sending, then kill inside it
            busiest, deadline = 0, time.monotonic() + 10
            while time.monotonic() < deadline and walking.is_set():
                now = tg.sends_since(0.25)
                busiest = max(busiest, now)
                if now >= max(4, opts.jobs // 20):
                    break
                await asyncio.sleep(0.005)
            kill.burst = busiest
        else:
            await asyncio.sleep(rng.uniform(0, 0.2))
        kill.sends_last_second = tg.sends_since(1.0)
        kill.fake_in_flight = tg._inflight
        kill.progress = progress()
        kill.at = time.monotonic()
        await bot.kill()
        kill.in_flight = await check.in_flight(db_url, kill.at)
        await asyncio.sleep(rng.uniform(0.2, 1.5))  # the supervisor (systemd) restarts it
        kill.restarted = time.monotonic()
        await bot.start()
        kill.ready = time.monotonic()
        print(
            f"    kill {kill.index + 1}: at {kill.progress:.0%} of the walk, "
            f"{kill.sends_last_second} msg/s, {len(kill.in_flight.inbox)} updates and "
            f"{len(kill.in_flight.outbox)} messages in flight; "
            f"back in {kill.ready - kill.restarted:.1f}s",
            flush=True,
        )


def recovery(kills: list[Kill], calls: list[Any]) -> None:
    """First answer after each restart; when the chats whose rows were leased got served."""
    answered = ("answerCallbackQuery", *check.VISIBLE, "editMessageText")
    for kill in kills:
        after = [c for c in calls if c.started >= kill.ready and c.method in answered]
        kill.first_answer = after[0].started if after else None
        if kill.in_flight is None:
            continue
        chats = {str(c) for _, c in kill.in_flight.inbox if c is not None}
        chats |= {key[1] for _, key in kill.in_flight.outbox}
        last = None
        for chat in chats:
            served = [
                c.started
                for c in after
                if str(c.params.get("chat_id", "")) == chat and c.method != "answerCallbackQuery"
            ]
            if served:
                last = max(last or 0.0, served[0])
        kill.stalled_resumed = last


async def run(opts: Options, db_url: str, *, with_kills: bool) -> RunResult:
    result = RunResult("crash" if with_kills else "reference")
    await dbs.reset(db_url)
    staff = await seed_engineers(db_url, opts.jobs)
    tg = CrashTelegram(bot_username=BOT_USERNAME)
    await tg.start()
    recorder = Recorder()
    tg.on_event(recorder.observe)
    lease = opts.lease if opts.lease is not None else REAL_LEASE
    bot = CrashBot(bot_settings(opts, tg, db_url, free_port()), opts.lease, warm=opts.warm)
    try:
        await bot.start()
        engineers, customers, jobs = await setup(opts, tg, recorder, bot, staff)
        walking = asyncio.Event()
        walking.set()
        kills = plan_kills(opts) if with_kills else []
        result.kills = kills
        t0 = time.monotonic()

        async def walk(coro: Any) -> None:
            try:
                await coro
            except StepTimeout as exc:
                result.failures.append(f"stuck: {exc}")

        walks = [
            walk(walk_engineer(s, j.id, j.number)) for s, j in zip(engineers, jobs, strict=True)
        ]
        walks += [
            walk(walk_customer(s, j.id, j.number, j.rating, j.comment))
            for s, j in zip(customers, jobs, strict=True)
        ]
        sims = [*engineers, *customers]
        kill_task = asyncio.create_task(killer(opts, bot, tg, db_url, sims, kills, walking))
        try:
            await asyncio.gather(*walks)
        finally:
            walking.clear()
            await kill_task
        result.updates = sum(s.actions for s in sims)
        result.backlog = await check.wait_drained(db_url, timeout=lease + 60)
        await tg.wait_idle(quiet=1.0, timeout=120)
        result.seconds = time.monotonic() - t0
        if not await bot.stop():
            result.failures.append(f"the bot did not stop on SIGTERM: {bot.tail(5)}")
        if any(result.backlog.values()):
            result.failures.append(f"work left after draining: {result.backlog}")
        result.snapshot = await check.snapshot(db_url)
        result.calls = list(tg.timed_calls)
        recovery(kills, result.calls)
        result.log_lines = bot.warnings()
    finally:
        await bot.close()
        if os.environ.get("CRASH_KEEP_LOGS"):
            print(f"    bot log kept: {bot.log_path}")
        else:
            shutil.rmtree(bot.folder, ignore_errors=True)
        await tg.stop()
    return result


def _per_chat_rows(snap: check.Snapshot) -> dict[tuple[int, str], int]:
    counts: dict[tuple[int, str], int] = {}
    for _, chat, method, *_ in snap.outbox:
        counts[(chat, method)] = counts.get((chat, method), 0) + 1
    return counts


@dataclass
class Verdict:
    ok: bool
    lines: list[str]
    figures: list[tuple[str, str]]


def judge(opts: Options, ref: RunResult, run: RunResult) -> Verdict:
    problems: list[str] = []
    notes: list[str] = []
    assert ref.snapshot is not None and run.snapshot is not None
    problems += [f"reference run: {f}" for f in ref.failures]
    problems += [f"crash run: {f}" for f in run.failures]
    diverged = check.compare_jobs(ref.snapshot, run.snapshot)
    problems += [f"diverged: {d}" for d in diverged[:20]]
    # Jobs must really be done (the reference too: equal but broken would pass otherwise).
    finished = ("signed_off", "closed")
    unfinished = [n for n, j in ref.snapshot.jobs.items() if j["status"] not in finished]
    if unfinished:
        problems.append(f"reference: {len(unfinished)} job(s) not signed off: {unfinished[:3]}")
    # Timers: each fired once. The row is marked done once (status guard); a second firing
    # would write its messages again, so the outbox rows of each chat must match the
    # reference's count (a handler acting twice on a redelivered update shows there too).
    fired = [t for t in run.snapshot.timers if t[2] == "done"]
    fired_ref = [t for t in ref.snapshot.timers if t[2] == "done"]
    retried_timers = [t for t in fired if t[3] != 1]
    if retried_timers:
        notes.append(f"{len(retried_timers)} timer(s) needed more than one attempt")
    rows_ref, rows_run = _per_chat_rows(ref.snapshot), _per_chat_rows(run.snapshot)
    extra_rows = {
        k: (rows_ref.get(k, 0), v) for k, v in rows_run.items() if v != rows_ref.get(k, 0)
    }
    extra_rows.update(
        {k: (v, rows_run.get(k, 0)) for k, v in rows_ref.items() if k not in rows_run}
    )
    if extra_rows:
        sample = list(extra_rows.items())[:5]
        problems.append(
            f"outbox rows per chat differ from the reference in {len(extra_rows)} "
            f"(chat, method) pairs (reference, crash): {sample}"
        )
    # Deliveries against rows.
    kills_seen = [k.in_flight for k in run.kills if k.in_flight is not None]
    d = check.deliveries(run.calls, run.snapshot, kills_seen, opts.window)
    d_ref = check.deliveries(ref.calls, ref.snapshot, [], opts.window)
    if d_ref.duplicates or d_ref.lost:
        problems.append(
            f"reference run: {len(d_ref.duplicates)} duplicate(s), {len(d_ref.lost)} lost"
        )
    if d.lost:
        problems += [f"lost: {x}" for x in d.lost[:10]]
    explained = [x for x in d.duplicates if check.in_flight_dup(x, opts.window)]
    other = [x for x in d.duplicates if not check.in_flight_dup(x, opts.window)]
    for dup in other:
        gap = (
            "no kill after it"
            if dup.before_kill is None
            else f"{dup.before_kill:.2f}s before a kill"
        )
        problems.append(
            f"duplicate not in flight: {dup.method} ×{dup.copies} to chat {dup.chat}, "
            f"first copy {gap}, second {dup.gap:.2f}s after the first; row attempts "
            f"{dup.row_attempts}, error {dup.row_error!r}: {dup.text}"
        )
    for dup in explained:
        gap = "-" if dup.before_kill is None else f"{dup.before_kill * 1000:.0f} ms"
        notes.append(
            f"in-flight duplicate: {dup.method} ×{dup.copies} ({dup.extra} extra) "
            f"to chat {dup.chat} "
            f"(lease held at {dup.leased_kills} kill(s); first copy {gap} before a kill, "
            f"second {dup.gap:.1f}s after the first)"
        )
    per_chat_ref = d_ref.per_chat
    chats_differ = sum(
        1 for chat in set(per_chat_ref) | set(d.per_chat) if per_chat_ref[chat] != d.per_chat[chat]
    )
    fmt = "{:.1f}s".format
    figures = [
        ("jobs", str(opts.jobs)),
        ("kills (planned / done)", f"{opts.kills} / {sum(1 for k in run.kills if k.at)}"),
        ("updates sent by users (reference / crash)", f"{ref.updates} / {run.updates}"),
        ("inbox rows retried after a kill", str(run.snapshot.inbox_retried)),
        ("messages delivered (reference / crash)", f"{d_ref.delivered} / {d.delivered}"),
        ("chats whose message count differs", str(chats_differ)),
        ("duplicates total", str(len(d.duplicates))),
        ("duplicates in flight at a kill", str(len(explained))),
        ("duplicates other", str(len(other))),
        ("repeated edits / callback answers refused", str(d.repeated_edits)),
        ("messages lost", str(len(d.lost))),
        ("timers fired (reference / crash)", f"{len(fired_ref)} / {len(fired)}"),
        ("timers fired once", f"{sum(1 for t in fired if t[3] == 1)} of {len(fired)}"),
        ("jobs diverged", str(len({x.split(".")[0] for x in diverged}))),
        ("walk seconds (reference / crash)", f"{fmt(ref.seconds)} / {fmt(run.seconds)}"),
    ]
    for kill in run.kills:
        if not kill.at:
            continue
        flight = kill.in_flight or check.InFlight(0)
        answer = "-" if kill.first_answer is None else fmt(kill.first_answer - kill.restarted)
        stalled = (
            "-" if kill.stalled_resumed is None else fmt(kill.stalled_resumed - kill.restarted)
        )
        figures.append(
            (
                f"kill {kill.index + 1}"
                + (f" (heavy sending: {kill.burst} msg in 0.25 s)" if kill.heavy else ""),
                f"at {kill.progress:.0%}, {kill.sends_last_second} msg in the last s, "
                f"{len(flight.inbox)} upd + {len(flight.outbox)} msg leased; "
                f"ready {fmt(kill.ready - kill.restarted)}, first answer {answer}, "
                f"leased chats served {stalled}",
            )
        )
    return Verdict(not problems, problems + notes, figures)


def print_table(figures: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in figures)
    for key, value in figures:
        print(f"  {key:<{width}}  {value}")


async def database_url(opts: Options, folder: Path) -> str:
    if opts.database == "postgresql":
        return await dbs.pg_scratch_url(PG_ADMIN_URL, PG_DATABASE)
    return dbs.sqlite_url(folder, "crash.db")


async def drop_pg() -> None:
    from sqlalchemy import text

    from bot.db.engine import make_engine

    engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def main_async(opts: Options) -> int:
    suppress_noise()
    folder = Path(tempfile.mkdtemp(prefix="fieldbot-crash-db-"))
    url = await database_url(opts, folder)
    lease = "the product's 60 s" if opts.lease is None else f"{opts.lease:g} s (patched)"
    print(
        f"crash test: {opts.jobs} jobs, {opts.kills} kills, seed {opts.seed}, "
        f"{opts.database}, {opts.runtime}, leases {lease}, "
        f"{'warm' if opts.warm else 'cold'} restarts",
        flush=True,
    )
    try:
        print("  reference run (no kills)…", flush=True)
        ref = await run(opts, url, with_kills=False)
        print(f"  crash run ({opts.kills} kills)…", flush=True)
        crashed = await run(opts, url, with_kills=True)
    finally:
        if opts.database == "postgresql":
            await drop_pg()
        shutil.rmtree(folder, ignore_errors=True)
    verdict = judge(opts, ref, crashed)
    print()
    print_table(verdict.figures)
    print()
    for line in verdict.lines[:60]:
        print(f"  {line}")
    if opts.verbose:
        for line in crashed.log_lines[-30:]:
            print(f"  bot log: {line}")
    print(f"\n{'PASS' if verdict.ok else 'FAIL'}", flush=True)
    return 0 if verdict.ok else 1


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="concurrent jobs (200)")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs in the run (5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--runtime", choices=("aiogram", "ptb"), default="aiogram")
    parser.add_argument("--quick", action="store_true", help="20 jobs, 2 kills, warm restarts")
    parser.add_argument(
        "--lease",
        type=float,
        default=None,
        help="inbox/outbox lease in seconds, patched into the bot process "
        "(default: the product's 60 s)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=0.5,
        help="a duplicate whose first copy arrived at most this many seconds before a kill "
        "counts as in flight (besides rows whose lease was held at the kill)",
    )
    parser.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="restart by forking a process that has imported everything already "
        "(default with --quick; the full run restarts cold, as systemd would)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    return Options(
        jobs=args.jobs if args.jobs is not None else (20 if quick else 200),
        kills=args.kills if args.kills is not None else (2 if quick else 5),
        seed=args.seed,
        database=args.database,
        runtime=args.runtime,
        lease=args.lease,
        window=args.window,
        verbose=args.verbose,
        warm=args.warm if args.warm is not None else quick,
    )


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
