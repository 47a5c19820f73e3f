"""Quiet hours: non-urgent messages wait for the recipient's day time; urgent ones never wait.

Everything goes through the outbox: ``Msg(urgent=False)`` → the row's ``not_before``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.bootstrap import build_services
from bot.core.enums import Priority
from bot.core.messages import Msg
from bot.db.models import Offer, Outbox, User
from bot.scheduler.sweep import sweep
from bot.services.context import Services
from bot.services.quiet import in_quiet_hours, next_allowed
from bot.workers.sender import OutboxSender
from tests.conftest import outbox_rows, reset_database
from tests.helpers import new_dispatch, onboard, press


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def quiet(make_settings, clock, db_url) -> AsyncIterator[Services]:
    """Services with the default quiet hours, 21:00–08:00 (the test settings switch them off)."""
    await reset_database(db_url)
    services = build_services(make_settings(quiet_hours="21:00-08:00"), clock=clock)
    yield services
    await services.sessionmaker.kw["bind"].dispose()


async def add_user(services: Services, chat_id: int, tz: str | None) -> int:
    async with services.uow() as uow:
        user = User(
            role="customer",
            name=f"Customer {chat_id}",
            telegram_id=chat_id,
            chat_id=chat_id,
            locale="en",
            timezone=tz,
            active=True,
            on_duty=False,
            created_at=uow.clock.now(),
        )
        uow.session.add(user)
        await uow.commit()
        return user.id


async def send_at(services: Services, clock, when: datetime, **msg: Any) -> Outbox:
    clock.set(when)
    async with services.uow() as uow:
        assert await uow.out.send(Msg("fu_err_answered", {}, **msg))
        await uow.commit()
    return (await outbox_rows(services))[-1]


# Quiet 21:00–08:00 in the recipient's zone, across midnight, across DST.
CASES = [
    # Asia/Shanghai, UTC+8
    ("Asia/Shanghai", utc(2026, 12, 1, 14, 0), utc(2026, 12, 2, 0, 0)),  # 22:00 → 08:00 next day
    ("Asia/Shanghai", utc(2026, 12, 1, 19, 30), utc(2026, 12, 2, 0, 0)),  # 03:30 → 08:00 today
    ("Asia/Shanghai", utc(2026, 12, 1, 12, 59), utc(2026, 12, 1, 12, 59)),  # 20:59: day time
    ("Asia/Shanghai", utc(2026, 12, 1, 13, 0), utc(2026, 12, 2, 0, 0)),  # 21:00: quiet begins
    ("Asia/Shanghai", utc(2026, 12, 2, 0, 0), utc(2026, 12, 2, 0, 0)),  # 08:00: quiet is over
    ("Asia/Shanghai", utc(2026, 12, 31, 15, 0), utc(2027, 1, 1, 0, 0)),  # New Year's Eve 23:00
    # America/New_York, UTC-5 in winter: the same instant is day time there
    ("America/New_York", utc(2026, 12, 1, 14, 0), utc(2026, 12, 1, 14, 0)),  # 09:00
    ("America/New_York", utc(2026, 12, 2, 3, 0), utc(2026, 12, 2, 13, 0)),  # 22:00 → 08:00 EST
    # Asia/Kolkata, UTC+5:30
    ("Asia/Kolkata", utc(2026, 12, 1, 16, 0), utc(2026, 12, 2, 2, 30)),  # 21:30 → 08:00 IST
    # Europe/Berlin: the night the clocks go forward (28 March 2027, 02:00 → 03:00)
    ("Europe/Berlin", utc(2027, 3, 27, 22, 30), utc(2027, 3, 28, 6, 0)),  # 23:30 CET → 08:00 CEST
    ("Europe/Berlin", utc(2027, 3, 28, 1, 30), utc(2027, 3, 28, 6, 0)),  # 03:30 CEST → 08:00 CEST
    # ... and back (25 October 2026, 03:00 → 02:00)
    ("Europe/Berlin", utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 7, 0)),  # 22:00 CEST → 08:00 CET
]


@pytest.mark.parametrize(("tz", "now", "expected"), CASES)
async def test_a_non_urgent_message_waits_for_the_recipients_day_time(
    quiet, clock, tz, now, expected
) -> None:
    user_id = await add_user(quiet, 501, tz)
    row = await send_at(quiet, clock, now, user_id=user_id, urgent=False)
    assert row.not_before == expected


async def test_without_a_timezone_of_their_own_the_recipient_has_the_organisations(
    quiet, clock
) -> None:
    user_id = await add_user(quiet, 502, None)  # TIMEZONE is Asia/Shanghai
    row = await send_at(quiet, clock, utc(2026, 12, 1, 14, 0), user_id=user_id, urgent=False)
    assert row.not_before == utc(2026, 12, 2, 0, 0)
    row = await send_at(quiet, clock, utc(2026, 12, 1, 14, 0), chat_id=777, urgent=False)
    assert row.not_before == utc(2026, 12, 2, 0, 0)  # a raw chat: the organisation's zone


async def test_urgent_messages_never_wait(quiet, clock) -> None:
    user_id = await add_user(quiet, 503, "Asia/Shanghai")
    night = utc(2026, 12, 1, 17, 0)  # 01:00 in Shanghai
    row = await send_at(quiet, clock, night, user_id=user_id, priority=Priority.URGENT)
    assert row.not_before == night
    row = await send_at(quiet, clock, night, user_id=user_id)  # urgent is the default
    assert row.not_before == night


async def test_job_step_reminders_and_escalations_go_out_at_night(quiet, clock) -> None:
    clock.set(utc(2026, 11, 30, 15, 0))  # 23:00 in Shanghai
    await onboard(quiet, 11)
    await onboard(quiet, 21, role="supervisor", name="Boss", skills=())
    dispatch = await new_dispatch(quiet)
    offer = (await outbox_rows(quiet, 11))[-1]
    assert offer.not_before == clock.now()  # the offer itself does not wait
    async with quiet.uow() as uow:
        the_offer = await uow.session.scalar(select(Offer).where(Offer.dispatch_id == dispatch.id))
        assert the_offer is not None
    await press(quiet, 11, f"off:{the_offer.id}:acc")
    before_11, before_21 = len(await outbox_rows(quiet, 11)), len(await outbox_rows(quiet, 21))
    clock.advance(quiet.settings.contact_deadline)  # reminder, then the supervisor's alert
    assert await sweep(quiet) == 2
    reminders = (await outbox_rows(quiet, 11))[before_11:]
    alerts = (await outbox_rows(quiet, 21))[before_21:]
    assert reminders and alerts
    assert all(r.not_before <= clock.now() for r in reminders + alerts)


async def test_quiet_hours_off_and_within_one_day(make_settings, clock, db_url) -> None:
    await reset_database(db_url)
    for setting, now, expected in [
        ("off", utc(2026, 12, 1, 17, 0), utc(2026, 12, 1, 17, 0)),
        ("12:00-14:00", utc(2026, 12, 1, 5, 0), utc(2026, 12, 1, 6, 0)),  # 13:00 → 14:00
        ("12:00-14:00", utc(2026, 12, 1, 6, 0), utc(2026, 12, 1, 6, 0)),  # 14:00: over
    ]:
        services = build_services(make_settings(quiet_hours=setting), clock=clock)
        try:
            row = await send_at(services, clock, now, chat_id=778, urgent=False)
            assert row.not_before == expected, setting
        finally:
            await services.sessionmaker.kw["bind"].dispose()


def test_a_quiet_end_inside_the_dst_gap_is_the_first_moment_after_it() -> None:
    # 21:00–02:30 in Berlin; on 28 March 2027 02:30 does not exist (02:00 → 03:00 CEST).
    now = utc(2027, 3, 27, 21, 0)  # 22:00 CET
    assert next_allowed(now, "Europe/Berlin", (time(21), time(2, 30))) == utc(2027, 3, 28, 1, 30)
    assert in_quiet_hours(time(23, 59), (time(21), time(8)))
    assert not in_quiet_hours(time(8), (time(21), time(8)))
    assert not in_quiet_hours(time(3), (time(21), time(21)))  # empty window


class RecordingRuntime:
    """Stands in for Telegram: records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        self.calls.append((method, payload))
        return {"message_id": len(self.calls)}


async def test_a_waiting_follow_up_does_not_hold_back_an_urgent_message(quiet, clock) -> None:
    """The chat's queue keeps its order, but a message held by quiet hours is not its head."""
    user_id = await add_user(quiet, 504, "Asia/Shanghai")
    night = utc(2026, 12, 1, 15, 0)  # 23:00 in Shanghai
    await send_at(quiet, clock, night, user_id=user_id, urgent=False)
    urgent = await send_at(quiet, clock, night + timedelta(minutes=5), user_id=user_id)
    runtime = RecordingRuntime()
    sender = OutboxSender(quiet, runtime)  # type: ignore[arg-type]

    assert await sender.run_once() == 1  # the urgent one, now
    await sender.settle()
    [(method, payload)] = runtime.calls
    assert method == "sendMessage" and payload["chat_id"] == 504
    rows = {r.id: r for r in await outbox_rows(quiet, 504)}
    assert rows[urgent.id].status == "sent"
    assert [r.status for r in rows.values()] == ["pending", "sent"]

    clock.set(utc(2026, 12, 2, 0, 0))  # 08:00 in Shanghai
    assert await sender.run_once() == 1
    await sender.settle()
    assert [r.status for r in await outbox_rows(quiet, 504)] == ["sent", "sent"]
