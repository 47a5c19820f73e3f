"""A polling bot starting up frees the leases its dead predecessor held (it is the only one)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, func, select
from sqlalchemy.engine.interfaces import CacheStats

from bot.core.messages import Msg
from bot.db.models import Inbox, Outbox
from bot.services import inbox, outbox


async def test_release_leases_frees_claimed_unfinished_rows_only(services) -> None:
    now = services.clock.now()
    async with services.uow() as uow:
        await inbox.store(
            uow.session,
            [
                {"update_id": 1, "message": {"chat": {"id": 7}}},
                {"update_id": 2, "message": {"chat": {"id": 8}}},
            ],
            now,
        )
        await uow.out.send(Msg("err_too_long", {"limit": 1}, chat_id=7, locale="en"))
        await uow.out.send(Msg("err_too_long", {"limit": 2}, chat_id=8, locale="en"))
        await uow.commit()
    async with services.uow() as uow:
        claimed = await inbox.claim(uow.session, now, timedelta(seconds=60), 1)
        assert [c.update_id for c in claimed] == [1]
        first = await uow.session.scalar(select(Outbox).order_by(Outbox.id).limit(1))
        assert first is not None
        first.locked_until = now + timedelta(seconds=60)
        await uow.commit()

    async with services.uow() as uow:
        assert await inbox.release_leases(uow.session) == 1
        assert await outbox.release_leases(uow.session) == 1
        await uow.commit()

    async with services.uow() as uow:
        assert list(await uow.session.scalars(select(Inbox.locked_until))) == [None, None]
        assert list(await uow.session.scalars(select(Outbox.locked_until))) == [None, None]


async def test_storing_updates_compiles_the_insert_once_whatever_the_batch_size(services) -> None:
    """The poller stores a batch per poll: one statement built once and run with a row each,
    not a VALUES list compiled afresh for every batch (docs/PERFORMANCE.md)."""
    engine = services.sessionmaker.kw["bind"].sync_engine
    inserts: list[CacheStats] = []

    def seen(_conn, _cursor, statement: str, _params, context, _many) -> None:
        if statement.startswith("INSERT INTO inbox"):
            inserts.append(context.cache_hit)

    event.listen(engine, "after_cursor_execute", seen)
    try:
        next_id = 100
        for size in (1, 3, 2, 3, 5):
            batch = [
                {"update_id": next_id + n, "message": {"chat": {"id": 7}}} for n in range(size)
            ]
            next_id += size
            async with services.uow() as uow:
                await inbox.store(uow.session, batch, services.clock.now())
                await uow.commit()
    finally:
        event.remove(engine, "after_cursor_execute", seen)
    assert len(inserts) == 5  # one statement a batch
    # compiled once for a single row and once for a batch; never again
    assert all(hit == CacheStats.CACHE_HIT for hit in inserts[2:]), inserts
    async with services.uow() as uow:
        stored = await uow.session.scalar(select(func.count()).select_from(Inbox))
    assert stored == 14
