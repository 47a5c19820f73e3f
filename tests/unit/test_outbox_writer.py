"""The outbox writer queues rows in memory and inserts them when the unit of work commits."""

from __future__ import annotations

import pytest

from bot.core.messages import Msg
from tests.conftest import outbox_rows


async def test_rows_are_inserted_at_commit_in_the_order_they_were_queued(services) -> None:
    async with services.uow() as uow:
        await uow.out.send(Msg("err_too_long", {"limit": 1}, chat_id=42, locale="en"))
        uow.out.queue(42, "sendPhoto", {"chat_id": 42, "photo": "file-1"})
        await uow.out.send(Msg("err_too_long", {"limit": 2}, chat_id=42, locale="en"))
        assert await outbox_rows(services, 42) == []  # nothing before the commit
        await uow.commit()
    rows = await outbox_rows(services, 42)
    assert [r.method for r in rows] == ["sendMessage", "sendPhoto", "sendMessage"]
    assert "1" in rows[0].payload["text"] and "2" in rows[2].payload["text"]
    assert rows[0].id < rows[1].id < rows[2].id


async def test_a_unit_that_does_not_commit_sends_nothing(services) -> None:
    async with services.uow() as uow:
        await uow.out.send(Msg("err_too_long", {"limit": 1}, chat_id=43, locale="en"))
    async with services.uow() as uow:
        await uow.out.send(Msg("err_too_long", {"limit": 2}, chat_id=43, locale="en"))
        await uow.rollback()
        await uow.commit()
    assert await outbox_rows(services, 43) == []


async def test_a_failed_savepoint_takes_its_messages_with_it(services) -> None:
    async with services.uow() as uow:
        await uow.out.send(Msg("err_too_long", {"limit": 1}, chat_id=44, locale="en"))
        with pytest.raises(RuntimeError):
            async with uow.savepoint():
                await uow.out.send(Msg("err_too_long", {"limit": 2}, chat_id=44, locale="en"))
                raise RuntimeError("the nested part fails")
        async with uow.savepoint():
            await uow.out.send(Msg("err_too_long", {"limit": 3}, chat_id=44, locale="en"))
        await uow.commit()
    texts = [r.payload["text"] for r in await outbox_rows(services, 44)]
    assert len(texts) == 2
    assert "1" in texts[0] and "3" in texts[1]
