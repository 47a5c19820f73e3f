"""Retention: old handled updates and sent messages go; what is still needed stays."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from bot.bootstrap import build_services
from bot.config import SettingsError
from bot.core.enums import InboxStatus, OutboxStatus
from bot.db.models import Inbox, Outbox
from bot.scheduler.sweep import build_scheduler
from bot.services import inbox, retention
from bot.workers.sender import _EDITED
from tests.conftest import outbox_rows

DAY = timedelta(days=1)
NEXT_0315 = datetime(2026, 12, 1, 3, 15)  # the fake clock says 2026-11-30 09:00 in Shanghai


async def _updates(services: Any, *specs: tuple[int, str, timedelta]) -> None:
    """Inbox rows (update_id, status, age) as the poller stores and the handler closes them."""
    now = services.clock.now()
    async with services.uow() as uow:
        for update_id, status, age in specs:
            payload = {"update_id": update_id, "message": {"chat": {"id": 7}, "text": "+8613"}}
            await inbox.store(uow.session, [payload], now - age)
            if status != InboxStatus.PENDING:
                await uow.session.execute(
                    Inbox.__table__.update()
                    .where(Inbox.update_id == update_id)
                    .values(status=status, done_at=now - age)
                )
        await uow.commit()


async def _inbox_ids(services: Any) -> list[int]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(Inbox.update_id).order_by(Inbox.update_id)))


async def _message(
    services: Any,
    age: timedelta,
    *,
    chat: int = 7,
    status: str = OutboxStatus.SENT,
    ref: str | None = None,
    message_id: int | None = None,
) -> int:
    at = services.clock.now() - age
    async with services.uow() as uow:
        row = await uow.session.execute(
            insert(Outbox)
            .values(
                chat_id=chat,
                method="sendMessage",
                payload={"chat_id": chat, "text": "Call Li Wei on +86 138 0013 8000"},
                priority=5,
                status=status,
                attempts=1,
                not_before=at,
                created_at=at,
                sent_at=at if status == OutboxStatus.SENT else None,
                ref=ref,
                message_id=message_id,
                error="blocked" if status == OutboxStatus.FAILED else None,
            )
            .returning(Outbox.id)
        )
        new_id = int(row.scalar_one())
        await uow.commit()
    return new_id


async def test_handled_updates_go_after_the_inbox_retention_but_the_newest_stays(
    services,
) -> None:
    await _updates(
        services,
        (1, InboxStatus.DONE, 8 * DAY),  # handled, old: goes
        (2, InboxStatus.FAILED, 8 * DAY),  # failed, old: goes
        (3, InboxStatus.PENDING, 9 * DAY),  # never handled: stays however old
        (4, InboxStatus.DONE, 6 * DAY),  # within the 7 days: stays
        (5, InboxStatus.DONE, 8 * DAY),  # the newest: the poller resumes after it
    )
    pruned = await retention.prune(services)
    assert await _inbox_ids(services) == [3, 4, 5]
    assert pruned.updates == 2


async def test_sent_messages_go_after_the_outbox_retention_unless_an_edit_may_need_them(
    services,
) -> None:
    old, recent = 31 * DAY, 29 * DAY
    plain = await _message(services, old, message_id=10)
    failed = await _message(services, old, status=OutboxStatus.FAILED, ref="job:1")
    replaced = await _message(services, old, ref="job:1", message_id=11)
    card = await _message(services, old, ref="job:1", message_id=12)  # newest under its ref
    other_chat = await _message(services, old, chat=8, ref="job:1", message_id=13)
    pending = await _message(services, 40 * DAY, status=OutboxStatus.PENDING)
    fresh = await _message(services, recent, message_id=14)

    pruned = await retention.prune(services)

    rows = {r.id: r for r in await outbox_rows(services)}
    assert sorted(rows) == sorted([card, other_chat, pending, fresh])
    assert {plain, failed, replaced}.isdisjoint(rows)
    for kept in (card, other_chat):  # kept for their message id, without the text
        assert rows[kept].payload == {}
        assert rows[kept].message_id is not None and rows[kept].ref == "job:1"
    for untouched in (pending, fresh):
        assert "+86 138 0013 8000" in rows[untouched].payload["text"]
    assert (pruned.messages, pruned.emptied) == (3, 2)
    async with services.uow() as uow:  # an edit of the job card still finds its message
        found = await uow.session.scalar(_EDITED, {"ref": "job:1", "chat": 7})
    assert found == 12
    assert (await retention.prune(services)) == retention.Pruned(0, 0, 0)  # nothing twice


async def test_pruning_works_in_short_transactions(services) -> None:
    await _updates(services, *[(n, InboxStatus.DONE, 10 * DAY) for n in range(1, 8)])
    for _ in range(5):
        await _message(services, 40 * DAY, message_id=1)
    engine = services.sessionmaker.kw["bind"].sync_engine
    changed: list[int] = []

    def rows(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("DELETE", "UPDATE")):
            changed.append(cursor.rowcount)

    event.listen(engine, "after_cursor_execute", rows)
    try:
        pruned = await retention.prune(services, batch=2)
    finally:
        event.remove(engine, "after_cursor_execute", rows)
    assert (pruned.updates, pruned.messages) == (6, 5)
    assert await _inbox_ids(services) == [7]
    assert await outbox_rows(services) == []
    assert changed and max(changed) <= 2  # never more than a batch in one transaction


async def test_retention_is_a_daily_job_and_can_be_switched_off(make_settings, clock) -> None:
    services = build_services(make_settings(), clock=clock)
    quiet = build_services(make_settings(retention_cron="off"), clock=clock)
    try:
        job = build_scheduler(services).get_job("retention")
        assert job is not None and job.func is retention.run
        fire = job.trigger.get_next_fire_time(None, clock.now())
        assert fire.replace(tzinfo=None) == NEXT_0315  # 03:15 in TIMEZONE
        assert fire.utcoffset() == timedelta(hours=8)
        assert build_scheduler(quiet).get_job("retention") is None
    finally:
        for svc in (services, quiet):
            await svc.sessionmaker.kw["bind"].dispose()


async def test_a_failed_run_is_logged_and_left_for_the_next_one(
    services, monkeypatch, caplog
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("+86 138 0013 8000")

    monkeypatch.setattr(retention, "prune", broken)
    await retention.run(services)  # does not raise into APScheduler
    assert "pruning failed (RuntimeError)" in caplog.text
    assert "138" not in caplog.text


@pytest.mark.parametrize("setting", ["inbox_retention", "outbox_retention"])
def test_retention_keeps_rows_at_least_a_day(make_settings, setting: str) -> None:
    with pytest.raises(SettingsError, match=setting.upper()):
        make_settings(**{setting: "12h"})
    assert getattr(make_settings(**{setting: "2d"}), setting) == 2 * DAY
