"""The unit of work, the migrations and start-up's schema check."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import session as async_session_module

from bot.bootstrap import SchemaBehind, prepare_database
from bot.cli import main as cli
from bot.db import migrate
from bot.db.engine import make_engine
from bot.db.models import Base, Customer, Timer
from bot.db.sqlite_inloop import InLoopSession
from bot.services import timers
from tests.conftest import reset_database


async def test_leaving_the_unit_of_work_without_commit_writes_nothing(services) -> None:
    async with services.uow() as uow:
        uow.session.add(Customer(name="Ghost Ltd", created_at=uow.clock.now()))
        await timers.schedule(uow, kind="x", subject="s", due_at=uow.clock.now())
        await uow.session.flush()
    async with services.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Customer)) == 0
        assert await uow.session.scalar(select(func.count()).select_from(Timer)) == 0


async def test_an_error_inside_the_unit_of_work_rolls_back(services) -> None:
    with pytest.raises(RuntimeError):
        async with services.uow() as uow:
            uow.session.add(Customer(name="Ghost Ltd", created_at=uow.clock.now()))
            await uow.session.flush()
            raise RuntimeError("boom")
    async with services.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Customer)) == 0


async def test_timers_are_cancelled_with_their_transaction(services) -> None:
    async with services.uow() as uow:
        await timers.schedule(uow, kind="x", subject="dispatch:1", due_at=uow.clock.now())
        await uow.commit()
    async with services.uow() as uow:
        assert await timers.cancel(uow, subject="dispatch:1") == 1
        # rolled back: the timer stays pending
    async with services.uow() as uow:
        status = await uow.session.scalar(select(Timer.status))
    assert status == "pending"


async def test_migrations_match_the_models(db_url) -> None:
    await reset_database(db_url, migrations=True)
    engine = make_engine(db_url)

    def diff(connection) -> list:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


async def test_sqlite_runs_in_wal_mode(services) -> None:
    if not services.settings.is_sqlite:
        pytest.skip("SQLite only")
    async with services.uow() as uow:
        mode = await uow.session.scalar(text("PRAGMA journal_mode"))
    assert mode == "wal"


async def test_start_up_creates_an_empty_database_and_refuses_an_old_one(tmp_path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/new.db")
    try:
        await prepare_database(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        with pytest.raises(SchemaBehind, match="fieldbot db upgrade"):
            await prepare_database(engine)
    finally:
        await engine.dispose()


def test_db_upgrade_command(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "upgraded" in result.output


def test_run_refuses_a_bad_setting_with_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OFFER_TIMEOUT", "ten minutes")
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "OFFER_TIMEOUT" in result.output


def test_run_without_a_token_points_to_the_demo(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 2 and "fieldbot demo" in result.output


async def test_invite_ttl_is_a_setting(make_settings) -> None:
    assert make_settings(invite_ttl="2h").invite_ttl == timedelta(hours=2)


def test_org_set_configures_the_supervisors_chat(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/org.db")
    runner = CliRunner()
    done = runner.invoke(
        cli, ["org", "set", "--name", "Acme Service", "--supervisors-chat", "-1001234567890"]
    )
    assert done.exit_code == 0, done.output
    assert "Acme Service" in done.output and "-1001234567890" in done.output
    bad = runner.invoke(cli, ["org", "set", "--supervisors-chat", "the group"])
    assert bad.exit_code == 1 and "is a number" in bad.output
    cleared = runner.invoke(cli, ["org", "set", "--supervisors-chat", "none"])
    assert "supervisors' chat: None" in cleared.output


async def test_a_subjects_timers_are_found_by_the_subject_index(services) -> None:
    """Cancelling or listing one job's timers reads that job's rows, not every pending timer
    (SQLite's planner used to pick the (status, due_at) index and scan them all)."""
    if not services.settings.is_sqlite:
        pytest.skip("SQLite's query planner")
    engine = services.sessionmaker.kw["bind"]
    seen: list[tuple[str, tuple[object, ...]]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith(("SELECT", "UPDATE timers")) and " timers" in statement:
            seen.append((statement, tuple(parameters)))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with services.uow() as uow:
            await timers.schedule(uow, kind="a", subject="job:1", due_at=uow.clock.now())
            await timers.pending(uow, subject="job:1")
            await timers.cancel(uow, subject="job:1", kinds=("a", "b"))
            await timers.cancel(uow, subject="job:1")
            conn = await uow.session.connection()
            plans = []
            for statement, params in list(seen):
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
                plans.append(" ".join(str(row[-1]) for row in rows))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(plans) == 3
    for plan in plans:
        assert "USING INDEX ix_timers_subject" in plan, plan


# ---- SQLite in the loop: a unit of work holding its connection calls the session directly


def _inloop(services) -> bool:
    return bool(services.settings.database_url.startswith("sqlite"))


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the session calls AsyncSession ran in a greenlet of their own."""
    calls: list[str] = []
    real = async_session_module.greenlet_spawn

    async def counting(fn, *args, **kwargs):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(async_session_module, "greenlet_spawn", counting)
    return calls


async def _open_the_connection(services, spawns: list[str]) -> None:
    async with services.uow() as uow:
        await uow.session.execute(select(1))
    spawns.clear()


async def test_a_unit_of_work_with_the_connection_free_spawns_no_greenlet(services, spawns) -> None:
    if not _inloop(services):
        pytest.skip("the in-loop session is SQLite's")
    assert services.sessionmaker.class_ is InLoopSession
    await _open_the_connection(services, spawns)
    async with services.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Customer)) == 0
        customer = Customer(name="Acme", created_at=uow.clock.now())
        uow.session.add(customer)
        await uow.session.flush()
        assert await uow.session.get(Customer, customer.id) is customer
        assert (await uow.session.execute(select(Customer.name))).scalar_one() == "Acme"
        await uow.commit()
    # The pool had the connection idle: every call, the commit and the close ran the
    # synchronous session directly. (Opening it took one greenlet: the pool's first-connect
    # events run under an asyncio lock.)
    assert spawns == []
    async with services.uow() as uow:
        assert await uow.session.scalar(select(Customer.name)) == "Acme"


async def test_a_session_knows_when_it_holds_its_connection(services) -> None:
    if not _inloop(services):
        pytest.skip("the in-loop session is SQLite's")
    async with services.uow() as uow:
        assert uow.session.sync_session.holds_connection is False
        uow.session.add(Customer(name="First", created_at=uow.clock.now()))
        await uow.session.commit()
        assert uow.session.sync_session.holds_connection is False
        uow.session.add(Customer(name="Second", created_at=uow.clock.now()))
        await uow.session.flush()  # a new transaction checks the connection out again
        assert uow.session.sync_session.holds_connection is True
        async with uow.savepoint():
            uow.session.add(Customer(name="Third", created_at=uow.clock.now()))
        assert uow.session.sync_session.holds_connection is True  # a savepoint's end is not
        await uow.session.rollback()
        assert uow.session.sync_session.holds_connection is False
    async with services.uow() as uow:
        names = (await uow.session.scalars(select(Customer.name))).all()
    assert names == ["First"]


async def test_a_unit_of_work_waits_for_the_connection_another_holds(services, spawns) -> None:
    """SQLite has one connection per process: a second unit of work waits for it in the
    pool (a real await, in a greenlet), then calls directly once it holds it."""
    if not _inloop(services):
        pytest.skip("the in-loop session is SQLite's")
    await _open_the_connection(services, spawns)
    first_holds = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with services.uow() as uow:
            uow.session.add(Customer(name="First", created_at=uow.clock.now()))
            await uow.session.flush()
            first_holds.set()
            await release.wait()
            await uow.commit()

    async def second() -> list[str]:
        await first_holds.wait()
        async with services.uow() as uow:
            names = (await uow.session.scalars(select(Customer.name))).all()
            uow.session.add(Customer(name="Second", created_at=uow.clock.now()))
            await uow.commit()
            return list(names)

    one = asyncio.create_task(first())
    two = asyncio.create_task(second())
    await first_holds.wait()
    await asyncio.sleep(0.05)
    assert not two.done()  # waiting for the connection
    release.set()
    await one
    assert await two == ["First"]  # it ran after the first had committed
    assert spawns == ["execute"]  # only the call that had to wait for the connection
