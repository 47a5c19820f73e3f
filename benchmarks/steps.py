"""In-process cost of a job step: CPU and SQL per update through ``handle()``, no HTTP.

The flow benchmark (``flows.py``) measures the whole bot over HTTP; this one isolates the
handler: N engineers each walk one whole job (the same 13 updates as ``flows.py``), step by
step across all engineers, by calling ``bot.handlers.router.handle`` directly on a fresh
SQLite (or PostgreSQL) database. It prints CPU milliseconds and SQL statements per update,
by step, and with ``--profile`` a cProfile listing of the handler's hottest functions.

    uv run python benchmarks/steps.py                 # N = 100, SQLite
    uv run python benchmarks/steps.py -n 200 --profile
    uv run python benchmarks/steps.py --database postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # perfkit, as the other scripts

from perfkit.dbs import pg_scratch_url, reset, sqlite_url
from perfkit.flowrun import SITE, dispatch_body
from sqlalchemy import event, select

from bot.bootstrap import build_services
from bot.config import load_settings
from bot.core.events import Event, Kind
from bot.db.models import Offer, Outbox
from bot.flows.intake import create_dispatch
from bot.handlers.router import handle
from bot.services import inbox
from bot.services.context import Services
from bot.services.staff import add_staff, redeem_invite

_ids = itertools.count(1)


@dataclass
class Counters:
    statements: int = 0
    by_step_cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_step_sql: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_step_n: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _event(tg: int, kind: Kind, **fields: Any) -> Event:
    fields.setdefault("language", "en")
    if kind is Kind.BUTTON:
        fields.setdefault("callback_id", f"cq{next(_ids)}")
        fields.setdefault("message_id", 1)
    return Event(update_id=next(_ids), kind=kind, telegram_id=tg, chat_id=tg, **fields)


async def _buttons(services: Services, chat_id: int, prefix: str) -> list[str]:
    """The callback data of the newest message to ``chat_id`` with a button starting so."""
    async with services.uow() as uow:
        rows = await uow.session.execute(
            select(Outbox.payload).where(Outbox.chat_id == chat_id).order_by(Outbox.id.desc())
        )
        for (payload,) in rows:
            markup = payload.get("reply_markup") or {}
            found = [
                b["callback_data"]
                for row in markup.get("inline_keyboard", [])
                for b in row
                if str(b.get("callback_data", "")).startswith(prefix)
            ]
            if found:
                return found
    raise AssertionError(f"no button {prefix!r} for chat {chat_id}")


async def _setup(services: Services, n: int) -> list[tuple[int, int]]:
    """N engineers on board, each with one dispatch offered; (telegram id, dispatch id)."""
    out = []
    for i in range(n):
        tg = 10_000 + i
        async with services.uow() as uow:
            new = await add_staff(uow, role="engineer", name=f"Eng {i}", skills=["repair"])
            await uow.commit()
        async with services.uow() as uow:
            await redeem_invite(uow, code=new.code, telegram_id=tg, chat_id=tg, language="en")
            await uow.commit()
        fields = dispatch_body(str(new.user.staff_no), f"SN-{i}")
        async with services.uow() as uow:
            dispatch = await create_dispatch(uow, fields, source="api")
            await uow.commit()
            out.append((tg, dispatch.id))
    return out


def _steps(
    services: Services, tg: int, job: int
) -> list[tuple[str, Callable[[], Awaitable[Event]]]]:
    async def offer() -> Event:
        async with services.uow() as uow:
            offer_id = await uow.session.scalar(select(Offer.id).where(Offer.dispatch_id == job))
        return _event(tg, Kind.BUTTON, data=f"off:{offer_id}:acc")

    def press(prefix: str, pick: int = 0) -> Callable[[], Awaitable[Event]]:
        async def make() -> Event:
            data = (await _buttons(services, tg, prefix))[pick]
            return _event(tg, Kind.BUTTON, data=data)

        return make

    def fixed(kind: Kind, **fields: Any) -> Callable[[], Awaitable[Event]]:
        async def make() -> Event:
            return _event(tg, kind, **fields)

        return make

    return [
        ("accept", offer),
        ("reached", press(f"job:{job}:ctd")),
        ("eta", press(f"job:{job}:eta:")),
        ("on_my_way", press(f"job:{job}:way")),
        ("eta_omw", press(f"job:{job}:omw:", -1)),
        ("check_in", fixed(Kind.LOCATION, latitude=SITE[0] + 0.0005, longitude=SITE[1])),
        ("outcome", fixed(Kind.BUTTON, data=f"job:{job}:out:fixed")),
        ("work", fixed(Kind.TEXT, text="Replaced the compressor relay and tested it.")),
        ("parts", fixed(Kind.TEXT, text="Compressor relay x 1")),
        ("photo", fixed(Kind.PHOTO, file_ids=("AgACAgIAAxkBAAIBbench",))),
        ("photos_done", press(f"job:{job}:phd")),
        ("no_extra", press(f"job:{job}:noex")),
        ("submit", press(f"job:{job}:sub")),
    ]


def _package(path: str, func: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/bot/" in path:
        return "bot/" + path.split("/bot/", 1)[1].split("/", 1)[0]
    if path == "~":
        return "builtins: " + func.split(" of ")[0].strip("{}")[:40]
    return path.rsplit("/", 1)[-1]


async def run(
    n: int,
    database: str,
    profile: bool,
    top: int,
    only: str | None,
    slowest: int,
    trace: bool = False,
) -> None:
    url = sqlite_url() if database == "sqlite" else await pg_scratch_url()
    await reset(url)
    settings = load_settings(
        database_url=url,
        bot_token="123456789:AAEhBOweik9ai0Qa-bench-token-xxxxxxxx",
        api_token="bench-api-token",
        quiet_hours="off",
        offer_timeout="1d",
        bot_username="fieldbot_bench_bot",
    )
    services = build_services(settings)  # the real clock, as dispatch_body dates the window
    engine = services.sessionmaker.kw["bind"]
    walks = await _setup(services, n)
    counters = Counters()

    started_at: list[float] = []
    by_statement: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(*_: Any) -> None:
        counters.statements += 1
        started_at.append(time.perf_counter())

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def timed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if trace:
            print("   ", " ".join(statement.split())[:150])
        entry = by_statement[" ".join(statement.split())[:110]]
        entry[0] += 1
        entry[1] += time.perf_counter() - started_at.pop()

    plans = [_steps(services, tg, job) for tg, job in walks]
    tg_of = {id(plan): tg for plan, (tg, _) in zip(plans, walks, strict=True)}
    profiler = cProfile.Profile() if profile else None
    total_cpu = 0.0
    total_updates = 0
    for index in range(len(plans[0])):
        name = plans[0][index][0]
        for plan in plans:
            update = await plan[index][1]()
            async with services.uow() as uow:  # as the poller stores it, before handling
                payload = {
                    "update_id": update.update_id,
                    "message": {"chat": {"id": tg_of[id(plan)]}},
                }
                await inbox.store(uow.session, [payload], uow.clock.now())
                await uow.commit(wake=False)
            before_sql = counters.statements
            if trace:
                print(f"-- {name}")
            if profiler is not None and (only is None or name == only):
                profiler.enable()
            started = time.process_time()
            await handle(services, update)
            spent = time.process_time() - started
            if profiler is not None:
                profiler.disable()
            counters.by_step_cpu[name] += spent
            counters.by_step_sql[name] += counters.statements - before_sql
            counters.by_step_n[name] += 1
            total_cpu += spent
            total_updates += 1
    print(f"N = {n}, {total_updates} updates, {database}")
    print(f"{'step':<12} {'CPU ms/upd':>10} {'SQL/upd':>8}")
    for name, _ in plans[0]:
        count_n = counters.by_step_n[name]
        print(
            f"{name:<12} {1000 * counters.by_step_cpu[name] / count_n:>10.2f}"
            f" {counters.by_step_sql[name] / count_n:>8.1f}"
        )
    print(
        f"{'all':<12} {1000 * total_cpu / total_updates:>10.2f}"
        f" {sum(counters.by_step_sql.values()) / total_updates:>8.1f}"
        f"   ({total_updates / total_cpu:.0f} updates per CPU-second in handle())"
    )
    if slowest:
        print("\nslowest statements (total ms, count, ms each):")
        ranked = sorted(by_statement.items(), key=lambda kv: -kv[1][1])[:slowest]
        for text, (calls, seconds) in ranked:
            print(f"{1000 * seconds:8.1f} {calls:6d} {1000 * seconds / calls:7.3f}  {text}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        by_package: dict[str, float] = defaultdict(float)
        for (path, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
            by_package[_package(path, func)] += row[2]
        total = sum(by_package.values())
        print("self time by package:")
        for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1]):
            print(f"  {100 * seconds / total:5.1f}%  {package}")
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="engineers, one job each")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--profile", action="store_true", help="cProfile the handler")
    parser.add_argument("--only", help="profile only this step (e.g. submit)")
    parser.add_argument("--slowest", type=int, default=0, help="list the N slowest statements")
    parser.add_argument("--trace", action="store_true", help="print every statement")
    parser.add_argument("--top", type=int, default=40, help="rows of the profile listing")
    args = parser.parse_args()
    asyncio.run(
        run(args.n, args.database, args.profile, args.top, args.only, args.slowest, args.trace)
    )


if __name__ == "__main__":
    main()
