"""One flow-benchmark run: a bot process (fieldbot or a bare framework bot) against the fake
Bot API, N simulated engineers each walking whole jobs, figures from the fake's timestamps.

Per job the engineer does what ``bot/demo.py`` does (13 updates): accept → reached the
customer → ETA → on my way → ETA → location (check-in) → outcome → work text → parts text →
photo → photos done → no extra work → submit. Each simulated user waits for the bot's
message that carries what it needs next (a button, the location keyboard, a prompt) and acts
at once: no think time, a closed loop of N users.

The bare bot gets the same 13 updates per job (same kinds, same order) and answers each
with one database write and one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.bootstrap import build_services
from bot.config import load_settings
from bot.services.staff import add_staff
from perfkit import dbs
from perfkit.fake import BenchTelegram, Recorder, SimUser, StepTimeout
from perfkit.machine import CpuMeter, rss_mib
from perfkit.procs import BotProcess, Profiler, free_port
from perfkit.report import percentile

SITE = (31.2304, 121.4737)
UPDATES_PER_JOB = 13
API_TOKEN = "bench-api-token"
WEBHOOK_SECRET = "bench-webhook-secret"

# Rate settings raised for throughput runs: Telegram's limits would cap the sender at 30
# messages a second and 1 per chat, which is what benchmarks/outbox.py measures instead.
UNTHROTTLED = {"send_global_rate": 100_000, "send_chat_rate": 1_000, "send_chat_burst": 1_000}


@dataclass
class Config:
    # "fieldbot", "bare", "bare-aiohttp" (bare PTB on fieldbot's aiohttp transport) or
    # "bare-answering" (bare, also answering each button press)
    kind: str
    runtime: str  # "aiogram" or "ptb"
    db_url: str
    engineers: int
    jobs: int
    workers: int = 1
    webhook: bool = False
    pin: bool = True
    profile: Path | None = None
    sql_stats: bool = False
    patches: tuple[str, ...] = ()  # prototype fixes (perfkit/patches.py), fieldbot only
    step_timeout: float = 120.0

    @property
    def name(self) -> str:
        return self.kind + "".join(f"+{p}" for p in self.patches)

    @property
    def label(self) -> str:
        mode = f" webhook×{self.workers}" if self.webhook else ""
        return f"{self.name}/{self.runtime}/{dbs.label(self.db_url)}/N={self.engineers}{mode}"


@dataclass
class Result:
    config: Config
    updates: int = 0
    seconds: float = 0.0
    first: list[float] = field(default_factory=list)  # update available → first bot call
    step: list[float] = field(default_factory=list)  # update available → last reply of the step
    cpu: dict[str, float] = field(default_factory=dict)
    rss_before: float = 0.0
    rss_after: float = 0.0
    api_calls: int = 0
    failures: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0
    log_lines: list[str] = field(default_factory=list)  # warnings and errors the bot logged
    sql: dict[str, int] = field(default_factory=dict)  # statements run during the measurement
    jobs_done: int = 0  # dispatches that reached awaiting_signoff (fieldbot)
    inbox: dict[str, int] = field(default_factory=dict)  # inbox rows by status, "retried"

    @property
    def throughput(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0

    @property
    def bot_cpu(self) -> float:
        return sum(v for k, v in self.cpu.items() if k.startswith("bot"))

    @property
    def per_cpu_second(self) -> float:
        """Updates per CPU-second of the bot process(es): what one saturated core would do."""
        return self.updates / self.bot_cpu if self.bot_cpu else 0.0

    def p(self, which: str, q: float) -> float:
        return percentile(self.first if which == "first" else self.step, q)

    @property
    def machine_load(self) -> float:
        total = self.cpu.get("machine_total", 0.0)
        return self.cpu.get("machine_busy", 0.0) / total if total else 0.0


def _pin_driver(cpu: int | None) -> None:
    if not hasattr(os, "sched_setaffinity"):
        return
    count = os.cpu_count() or 1
    os.sched_setaffinity(0, {cpu} if cpu is not None else set(range(count)))


def bot_settings(cfg: Config, tg: BenchTelegram, port: int) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bot_token": tg.token,
        "telegram_api_url": tg.url,
        "database_url": cfg.db_url,
        "bot_runtime": cfg.runtime,
        "bot_username": "fieldbot_bench_bot",
        "api_token": API_TOKEN,
        "http_host": "127.0.0.1",
        "http_port": port,
        "quiet_hours": "off",
        "offer_timeout": "1d",
        "log_level": "WARNING",
        **UNTHROTTLED,
    }
    if cfg.webhook:
        settings["webhook_url"] = f"http://127.0.0.1:{port}"
        settings["webhook_secret"] = WEBHOOK_SECRET
    return settings


async def seed_staff(db_url: str, count: int) -> list[tuple[str, str]]:
    """``count`` engineers with invite codes: [(staff_no, code)]."""
    services = build_services(load_settings(database_url=db_url, bot_username="fieldbot_bench_bot"))
    out = []
    try:
        async with services.uow() as uow:
            for i in range(count):
                new = await add_staff(
                    uow, role="engineer", name=f"Engineer {i:04d}", skills=["repair"]
                )
                out.append((str(new.user.staff_no), new.code))
            await uow.commit()
    finally:
        await services.sessionmaker.kw["bind"].dispose()
    return out


def dispatch_body(staff_no: str, serial: str) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(minutes=10)
    return {
        "customer": "Acme Foods",
        "contact_name": "Li Na",
        "contact_phone": "+86 138 0013 8000",
        "address": "88 Century Avenue, Pudong",
        "latitude": SITE[0],
        "longitude": SITE[1],
        "equipment_model": "CH-200 chiller",
        "quantity": 1,
        "serials": [serial],
        "service_type": "repair",
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=3)).isoformat(),
        "engineer": staff_no,
    }


async def walk_fieldbot_job(sim: SimUser, job_id: int, number: str) -> None:
    def offer_for(record: Any) -> bool:
        text = str(record.current.get("text") or "")
        return number in text and bool(sim.buttons_of(record, "off:"))

    offer = await sim.wait(offer_for, what=f"offer of {number}", from_start=True)
    accept = [d for d in sim.buttons_of(offer, "off:") if d.endswith(":acc")]
    await sim.press(offer, accept[0])
    record, data = await sim.wait_button(f"job:{job_id}:ctd")
    await sim.press(record, data)
    record, data = await sim.wait_button(f"job:{job_id}:eta:")
    await sim.press(record, data)
    await sim.wait_location_keyboard()
    record, data = await sim.wait_button(f"job:{job_id}:way", from_start=True)
    await sim.press(record, data)
    record, _ = await sim.wait_button(f"job:{job_id}:omw:")
    await sim.press(record, sim.buttons_of(record, f"job:{job_id}:omw:")[-1])
    await sim.wait_location_keyboard()
    await sim.share_location(SITE[0] + 0.0005, SITE[1])
    record, _ = await sim.wait_button(f"job:{job_id}:out:")
    await sim.press(record, f"job:{job_id}:out:fixed")
    await sim.wait_any()  # "Describe the work"
    await sim.send("Replaced the compressor relay and tested the cooling cycle.")
    await sim.wait_button(f"job:{job_id}:nopa")
    await sim.send("Compressor relay x 1")
    await sim.wait_button(f"job:{job_id}:phd")
    await sim.send_photo()
    record, data = await sim.wait_button(f"job:{job_id}:phd")
    await sim.press(record, data)
    record, data = await sim.wait_button(f"job:{job_id}:noex")
    await sim.press(record, data)
    record, data = await sim.wait_button(f"job:{job_id}:sub")
    await sim.press(record, data)
    await sim.wait_any()  # "Report ... submitted"


BARE_SCRIPT = ("P", "P", "P", "P", "P", "L", "P", "T", "T", "Ph", "P", "P", "P")


async def walk_bare_job(sim: SimUser, last: Any) -> Any:
    for action in BARE_SCRIPT:
        if action == "P":
            await sim.press(last, "next")
        elif action == "L":
            await sim.share_location(SITE[0] + 0.0005, SITE[1])
        elif action == "T":
            await sim.send("Replaced the compressor relay and tested the cooling cycle.")
        else:
            await sim.send_photo()
        last = await sim.wait_any()
    return last


def latencies(recorder: Recorder) -> tuple[list[float], list[float]]:
    """Per user entry: (first bot entry after it, last bot entry before the next user entry)."""
    by_chat: dict[int, list[Any]] = {}
    for entry in recorder.entries:
        by_chat.setdefault(entry.chat_id, []).append(entry)
    first: list[float] = []
    step: list[float] = []
    for entries in by_chat.values():
        pending: float | None = None
        last_bot: float | None = None
        for entry in entries:
            if entry.direction == "user":
                if pending is not None and last_bot is not None:
                    step.append(last_bot - pending)
                pending, last_bot = entry.at, None
            elif pending is not None:
                if last_bot is None:
                    first.append(entry.at - pending)
                last_bot = entry.at
        if pending is not None and last_bot is not None:
            step.append(last_bot - pending)
    return first, step


async def run(cfg: Config) -> Result:
    """Set up, measure, tear down; never raises for a failed walk (see ``Result.failures``)."""
    result = Result(cfg)
    started = time.monotonic()
    await dbs.reset(cfg.db_url)
    staff = await seed_staff(cfg.db_url, cfg.engineers) if cfg.kind == "fieldbot" else []
    tg = BenchTelegram(bot_username="fieldbot_bench_bot")
    await tg.start()
    recorder = Recorder()
    tg.on_event(recorder.observe)
    procs: list[BotProcess] = []
    pinned = cfg.pin and cfg.workers == 1 and (os.cpu_count() or 1) > 1
    try:
        for index in range(cfg.workers):
            port = free_port()
            kind = "fieldbot" if cfg.kind == "fieldbot" else cfg.runtime
            proc = BotProcess(
                kind, bot_settings(cfg, tg, port), cpu=1 if pinned else None, name=f"bot{index}"
            )
            if cfg.sql_stats:
                proc.settings["perf_sql_stats"] = str(proc.folder / "sql.json")
            if cfg.patches and cfg.kind == "fieldbot":
                proc.settings["perf_patches"] = ",".join(cfg.patches)
            if cfg.kind == "bare-aiohttp":
                proc.settings["perf_bare_transport"] = "aiohttp"
            if cfg.kind == "bare-answering":
                proc.settings["perf_bare_answer"] = "1"
            procs.append(proc)
        for proc in procs:  # one at a time: each upgrades nothing, but registers its webhook
            await proc.start()
        if cfg.webhook:
            tg.webhook_targets = [p.url for p in procs]
        _pin_driver(0 if pinned else None)
        sims = [
            SimUser(tg, recorder, tg.user(first_name=f"Eng{i}"), timeout=cfg.step_timeout)
            for i in range(cfg.engineers)
        ]
        jobs: list[list[tuple[int, str]]] = [[] for _ in sims]
        lasts: list[Any] = [None for _ in sims]
        if cfg.kind == "fieldbot":
            await _onboard(tg, sims, staff)
            await _create_jobs(procs[0].url, sims, staff, jobs, cfg.jobs)
        else:
            for sim in sims:
                await sim.send("/start")
            lasts = list(await asyncio.gather(*(sim.wait_any() for sim in sims)))
        await tg.wait_idle(quiet=0.5, timeout=300)
        for sim in sims:
            sim.actions = 0
        result.setup_seconds = time.monotonic() - started

        meter = CpuMeter(
            {p.name: p.pid for p in procs},
            {"postgres": "postgres"} if cfg.db_url.startswith("postgresql") else None,
        )
        profiler = Profiler(procs[0].pid, cfg.profile) if cfg.profile else None
        if profiler:
            await profiler.start()
        result.rss_before = sum(rss_mib(p.pid) for p in procs)
        calls_before = len(tg.calls)
        if cfg.sql_stats:
            for proc in procs:
                proc.signal(signal.SIGUSR1)  # counts so far (setup) written and reset
        recorder.recording = True
        meter.start()
        t0 = time.monotonic()

        async def walker(i: int, sim: SimUser) -> None:
            last = lasts[i]
            try:
                if cfg.kind == "fieldbot":
                    for job_id, number in jobs[i]:
                        await walk_fieldbot_job(sim, job_id, number)
                else:
                    for _ in range(cfg.jobs):
                        last = await walk_bare_job(sim, last)
            except StepTimeout as exc:
                result.failures.append(str(exc))

        await asyncio.gather(*(walker(i, sim) for i, sim in enumerate(sims)))
        result.seconds = time.monotonic() - t0
        result.cpu = meter.stop()
        recorder.recording = False
        if cfg.sql_stats:
            result.sql = await _sql_counts(procs)
        if profiler:
            await profiler.stop()
        result.updates = sum(sim.actions for sim in sims)
        result.api_calls = sum(1 for m, _ in tg.calls[calls_before:] if m != "getUpdates")
        result.rss_after = sum(rss_mib(p.pid) for p in procs)
        result.first, result.step = latencies(recorder)
        if cfg.kind == "fieldbot":
            await _check(cfg, result)
    finally:
        _pin_driver(None)
        for proc in procs:
            await proc.stop()
            if proc.proc is not None and proc.proc.returncode not in (0, None):
                result.failures.append(f"{proc.name} exit {proc.proc.returncode}: {proc.tail(5)}")
            with contextlib.suppress(OSError):
                result.log_lines += [
                    line
                    for line in proc.log_path.read_text(errors="replace").splitlines()
                    if "WARNING" in line or "ERROR" in line
                ]
            if os.environ.get("PERF_KEEP_LOGS"):
                print(f"    bot log kept: {proc.log_path}")
            else:
                proc.cleanup()
        await tg.stop()
    return result


async def _sql_counts(procs: list[BotProcess]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for proc in procs:
        path = proc.folder / "sql.json"
        path.unlink(missing_ok=True)
        proc.signal(signal.SIGUSR1)
        for _ in range(50):
            await asyncio.sleep(0.1)
            if path.exists():
                break
        with contextlib.suppress(OSError, ValueError):
            await asyncio.sleep(0.1)
            for key, value in json.loads(path.read_text()).items():
                totals[key] = totals.get(key, 0) + int(value)
    return totals


async def _check(cfg: Config, result: Result) -> None:
    """Did the jobs really get done, and how many updates failed or needed a retry?"""
    from sqlalchemy import func, select

    from bot.db.models import Dispatch, Inbox

    services = build_services(load_settings(database_url=cfg.db_url))
    try:
        async with services.uow() as uow:
            s = uow.session
            result.jobs_done = int(
                await s.scalar(select(func.count()).where(Dispatch.status == "awaiting_signoff"))
                or 0
            )
            rows = await s.execute(select(Inbox.status, func.count()).group_by(Inbox.status))
            result.inbox = {str(k): int(v) for k, v in rows}
            result.inbox["retried"] = int(
                await s.scalar(select(func.count()).where(Inbox.attempts > 1)) or 0
            )
    finally:
        await services.sessionmaker.kw["bind"].dispose()
    expected = cfg.engineers * cfg.jobs
    if result.jobs_done != expected:
        result.failures.append(f"{result.jobs_done} of {expected} jobs reached awaiting_signoff")
    if result.inbox.get("failed"):
        result.failures.append(f"{result.inbox['failed']} update(s) failed in the bot")


async def _onboard(tg: BenchTelegram, sims: list[SimUser], staff: list[tuple[str, str]]) -> None:
    for sim, (_, code) in zip(sims, staff, strict=True):
        await sim.user.send(f"/start {code}")
    await asyncio.gather(*(sim.wait_any() for sim in sims))
    await tg.wait_idle(quiet=0.5, timeout=300)
    for sim in sims:
        sim.cursor = len(sim.log())


async def _create_jobs(
    url: str,
    sims: list[SimUser],
    staff: list[tuple[str, str]],
    jobs: list[list[tuple[int, str]]],
    per_engineer: int,
) -> None:
    """Dispatches through the REST API (as the back office would), ``per_engineer`` each."""
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=60
    ) as api:

        async def create(i: int, j: int) -> None:
            async with gate:
                body = dispatch_body(staff[i][0], f"SN-{i}-{j}")
                response = await api.post("/api/v1/dispatches", json=body)
                response.raise_for_status()
                created = response.json()
                jobs[i].append((int(created["id"]), str(created["number"])))

        for j in range(per_engineer):
            await asyncio.gather(*(create(i, j) for i in range(len(sims))))
    for i in range(len(sims)):
        jobs[i].sort()

    async def offers_in(sim: SimUser, numbers: list[str]) -> None:
        for number in numbers:

            def offer_for(record: Any, number: str = number) -> bool:
                return number in str(record.current.get("text") or "") and bool(
                    sim.buttons_of(record, "off:")
                )

            await sim.wait(offer_for, what=f"offer {number}", from_start=True)

    await asyncio.gather(*(offers_in(sim, [n for _, n in jobs[i]]) for i, sim in enumerate(sims)))


def suppress_noise() -> None:
    import logging

    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("bot.fakeapi").setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        logging.getLogger("httpx").setLevel(logging.WARNING)
