"""Scratch databases for benchmark runs: a SQLite file in a temp folder, or a PostgreSQL
database of its own (never the test suite's ``test`` database, which tests drop and rebuild)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import migrate
from bot.db.engine import async_url, make_engine
from bot.db.models import Base

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_SCRATCH_DB = "fieldbot_perf"


def sqlite_url(folder: Path | None = None, name: str = "bench.db") -> str:
    """A database file in ``folder``, or in a temp folder removed when the script exits."""
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="fieldbot-bench-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return f"sqlite+aiosqlite:///{folder}/{name}"


async def pg_scratch_url(admin_url: str = PG_ADMIN_URL, database: str = PG_SCRATCH_DB) -> str:
    """Create (once) a database of our own on the server of ``admin_url``; return its URL."""
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}
            )
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        await engine.dispose()
    url = make_url(async_url(admin_url)).set(database=database)
    return url.render_as_string(hide_password=False)


async def pg_available(admin_url: str = PG_ADMIN_URL) -> bool:
    engine = make_engine(admin_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


def _stamp_head(connection: Any) -> None:
    from alembic import command

    cfg = migrate.alembic_config()
    cfg.attributes["connection"] = connection
    command.stamp(cfg, "head")


def _remove_sqlite_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


async def reset(url: str) -> None:
    """An empty database at the models' schema, stamped at head (as tests/conftest.py does)."""
    engine = make_engine(url)
    try:
        if url.startswith("postgresql"):
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        else:
            _remove_sqlite_files(make_url(url).database or "")
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.run_sync(_stamp_head)
    finally:
        await engine.dispose()


def label(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"
