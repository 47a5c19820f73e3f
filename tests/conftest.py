"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.bootstrap import build_services
from bot.config import Settings, load_settings
from bot.core.clock import FakeClock
from bot.db import migrate
from bot.db.engine import make_engine
from bot.db.models import Base, Outbox
from bot.i18n import Renderer
from bot.services.context import Services

PG_URL = os.environ.get("FIELDBOT_TEST_DATABASE_URL", "")
_PG_BUILT: set[str] = set()  # PostgreSQL URLs whose schema this process built


async def reset_database(url: str, *, migrations: bool = False) -> None:
    """An empty database at the newest schema (the models' tables, stamped at head).

    ``migrations=True`` builds it by running every Alembic migration instead; a test
    checks that both give the same schema.
    """
    engine = make_engine(url)
    try:
        if url.startswith("postgresql") and not migrations and url in _PG_BUILT:
            # The schema is already current in this process: emptying it is much faster.
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return
        if url.startswith("postgresql"):
            _PG_BUILT.add(url)
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        if migrations:
            await migrate.upgrade(engine)
        else:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
                await conn.run_sync(_stamp_head)
    finally:
        await engine.dispose()


def _stamp_head(connection: Any) -> None:
    from alembic import command

    cfg = migrate.alembic_config()
    cfg.attributes["connection"] = connection
    command.stamp(cfg, "head")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return PG_URL or f"sqlite+aiosqlite:///{tmp_path}/fieldbot.db"


@pytest.fixture
def make_settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's folder

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": db_url,
            "bot_token": "123456789:AAEhBOweik9ai0Qa-test-token-xxxxxxxx",
            "api_token": "test-api-token",
            "send_chat_rate": 1000,
            "send_chat_burst": 1000,
            "send_global_rate": 1000,
            "quiet_hours": "off",
            "bot_username": "fieldbot_test_bot",
        }
        base.update(overrides)
        return load_settings(**base)

    return factory


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


_TEMPLATE_DB: list[Path] = []
_RENDERER = Renderer()  # templates compiled once for the whole run


def _copy_database(source: Path, target: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


@pytest.fixture
async def services(
    make_settings: Any, clock: FakeClock, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Services]:
    """Services on a fresh database: on SQLite a copy of one built once, else emptied."""
    prefix = "sqlite+aiosqlite:///"
    if db_url.startswith(prefix):
        if not _TEMPLATE_DB:
            template = tmp_path_factory.mktemp("schema") / "template.db"
            await reset_database(f"{prefix}{template}")
            _TEMPLATE_DB.append(template)
        _copy_database(_TEMPLATE_DB[0], db_url.removeprefix(prefix))
    else:
        await reset_database(db_url)
    svc = build_services(make_settings(), clock=clock)
    svc.renderer = _RENDERER
    yield svc
    await svc.sessionmaker.kw["bind"].dispose()


async def outbox_rows(services: Services, chat_id: int | None = None) -> list[Outbox]:
    async with services.uow() as uow:
        stmt = select(Outbox).order_by(Outbox.id)
        if chat_id is not None:
            stmt = stmt.where(Outbox.chat_id == chat_id)
        return list(await uow.session.scalars(stmt))


async def texts_to(services: Services, chat_id: int) -> list[str]:
    return [
        r.payload.get("text", "")
        for r in await outbox_rows(services, chat_id)
        if r.method in ("sendMessage", "editMessageText")
    ]
