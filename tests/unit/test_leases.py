"""A polling bot starting up frees the leases its dead predecessor held (it is the only one)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

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
