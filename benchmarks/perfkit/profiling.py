"""Summaries of py-spy's collapsed stacks: where a process's CPU went, by package and function."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

PACKAGES = (
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "aiosqlite"),
    ("sqlite3/", "sqlite3"),
    ("asyncpg/", "asyncpg"),
    ("jinja2/", "Jinja2"),
    ("babel/", "Babel"),
    ("markupsafe/", "Jinja2"),
    ("aiogram/", "aiogram"),
    ("telegram/", "python-telegram-bot"),
    ("pydantic/", "pydantic"),
    ("pydantic_core/", "pydantic"),
    ("aiohttp/", "aiohttp"),
    ("httpx/", "httpx/httpcore"),
    ("httpcore/", "httpx/httpcore"),
    ("h11/", "httpx/httpcore"),
    ("anyio/", "anyio"),
    ("uvicorn/", "uvicorn/FastAPI"),
    ("fastapi/", "uvicorn/FastAPI"),
    ("starlette/", "uvicorn/FastAPI"),
    ("apscheduler/", "APScheduler"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("zoneinfo/", "zoneinfo"),
    ("threading.py", "threading"),
    ("concurrent/", "threading"),
    ("queue.py", "threading"),
)


def _ours(path: str) -> bool:
    return "/bot/" in path and "/site-packages/" not in path


def _package(path: str) -> str:
    if _ours(path):
        return "fieldbot (bot/)"
    for needle, name in PACKAGES:
        if needle in path:
            return name
    return "other"


def _parse(line: str) -> tuple[list[tuple[str, str]], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    if not count.isdigit():
        return [], 0  # a piece of a frame name with a line break in it (generated code)
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw)
        if match:
            frames.append((match["func"], match["file"]))
        else:
            frames.append((raw, ""))
    return frames, int(count)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarise(path: Path, top: int = 18) -> str:
    """A text report of a collapsed-stack file: leaf packages, hot functions, our code."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    total = 0
    by_thread: Counter[str] = Counter()
    leaf_pkg: Counter[str] = Counter()
    leaf_fn: Counter[str] = Counter()
    ours_inclusive: Counter[str] = Counter()
    pkg_inclusive: Counter[str] = Counter()
    for line in lines:
        frames, count = _parse(line)
        if not frames:
            continue
        total += count
        thread = frames[0][0] if frames[0][1] == "" else "main"
        by_thread[thread.split(" ")[0] if "thread" in thread else thread] += count
        code = [f for f in frames if f[1]]
        if not code:
            continue
        func, file = code[-1]
        leaf_pkg[_package(file)] += count
        leaf_fn[f"{func} ({_short(file)})"] += count
        seen_ours = set()
        seen_pkg = set()
        for func, file in code:
            pkg = _package(file)
            if pkg not in seen_pkg:
                seen_pkg.add(pkg)
                pkg_inclusive[pkg] += count
            if _ours(file):
                key = f"{func} ({_short(file)})"
                if key not in seen_ours:
                    seen_ours.add(key)
                    ours_inclusive[key] += count
    if total == 0:
        return "(no samples)"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples"]
    out.append("self time by package (the leaf frame's):")
    out += [f"  {pct(n)}  {name}" for name, n in leaf_pkg.most_common(top)]
    out.append("inclusive time by package (any frame on the stack):")
    out += [f"  {pct(n)}  {name}" for name, n in pkg_inclusive.most_common(top)]
    out.append("hottest functions (self time):")
    out += [f"  {pct(n)}  {name}" for name, n in leaf_fn.most_common(top)]
    out.append("our functions (inclusive time):")
    out += [f"  {pct(n)}  {name}" for name, n in ours_inclusive.most_common(top + 10)]
    return "\n".join(out)
