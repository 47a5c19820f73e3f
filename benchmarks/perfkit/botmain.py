"""A bot process for the benchmarks: ``python -m perfkit.botmain`` with PERF_KIND set.

PERF_KIND=fieldbot runs the real FieldBot (settings from the environment, exactly as
``fieldbot run`` reads them); PERF_KIND=aiogram / ptb runs the bare baseline of perfkit.bare.
Prints ``READY <http url or ->`` once it serves, stops gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal


def count_sql(path: str) -> None:
    """Count the SQL statements and transactions the process runs; written to ``path`` at exit
    (SIGUSR1 writes and resets, to count one phase)."""
    import atexit
    import json
    import re
    from collections import Counter

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts: Counter[str] = Counter()
    words = re.compile(r"\s+")

    def shape(statement: str) -> str:
        text = words.sub(" ", statement.strip())
        head = text.split(" ", 1)[0].upper()
        if head == "SELECT":
            table = (
                text.upper().split(" FROM ", 1)[1].split(" ", 1)[0]
                if " FROM " in text.upper()
                else "?"
            )
            return f"SELECT {table.lower()}"
        if head in ("INSERT", "UPDATE", "DELETE"):
            target = text.split(" ", 3)[2] if head != "UPDATE" else text.split(" ", 2)[1]
            return f"{head} {target.lower()}"
        return " ".join(text.split(" ", 2)[:2]).upper()

    import gc
    import time as _time

    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started.append(_time.perf_counter())
        elif gc_started:
            spent = _time.perf_counter() - gc_started.pop()
            counts[f"~gc{info['generation']} µs"] += int(spent * 1e6)
            counts[f"~gc{info['generation']} runs"] += 1

    gc.callbacks.append(on_gc)

    from sqlalchemy.engine.interfaces import CacheStats

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        counts[shape(statement)] += 1
        counts["~statements"] += 1
        if context is not None and context.cache_hit != CacheStats.CACHE_HIT:
            # compiled for this execution: not built once, or not cacheable at all
            counts["~compiled"] += 1
            counts[f"~compiled: {shape(statement)}"] += 1

    @event.listens_for(Engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        counts["~commits"] += 1

    @event.listens_for(Engine, "rollback")
    def _rollback(conn):  # type: ignore[no-untyped-def]
        counts["~rollbacks"] += 1

    def dump(to: str = path) -> None:
        with open(to, "w") as fh:
            json.dump(dict(counts), fh, indent=1, sort_keys=True)

    def reset(*_: object) -> None:
        dump()
        counts.clear()

    import signal as _signal

    _signal.signal(_signal.SIGUSR1, reset)
    atexit.register(dump, path + ".exit")


async def run_fieldbot() -> None:
    from bot.bootstrap import FieldBot, settle_process
    from bot.config import load_settings
    from bot.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)
    bot = FieldBot(settings)
    await bot.start()
    settle_process()  # as `fieldbot run` does
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {bot.http_url if bot.http_server else '-'}", flush=True)
    await stop.wait()
    await bot.stop()


def main() -> None:
    kind = os.environ["PERF_KIND"]
    if os.environ.get("PERF_SQL_STATS"):
        count_sql(os.environ["PERF_SQL_STATS"])
    if os.environ.get("PERF_PATCHES"):
        from perfkit import patches

        patches.apply([p for p in os.environ["PERF_PATCHES"].split(",") if p])
    if kind == "fieldbot":
        asyncio.run(run_fieldbot())
        return
    from perfkit import bare

    args = (os.environ["BOT_TOKEN"], os.environ["TELEGRAM_API_URL"], os.environ["DATABASE_URL"])
    if kind == "aiogram":
        asyncio.run(bare.run_aiogram(*args))
    elif kind == "ptb":
        asyncio.run(bare.run_ptb(*args))
    else:
        raise SystemExit(f"unknown PERF_KIND {kind!r}")


if __name__ == "__main__":
    main()
