"""DOMAIN.md §5: the duty roster (and the holiday roster), escalations to whoever is on duty,
/duty, and the shift handover."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main as cli
from bot.db.models import User
from bot.db.models.supervision import DutyShift, Handover
from bot.services import roster
from bot.services.errors import FieldError
from bot.services.staff import organisation, supervisors_on_duty
from tests.conftest import outbox_rows, texts_to
from tests.helpers import new_dispatch, onboard, press, say

ZHOU, QIAN, ZHAO, ENGINEER, MANAGER, STRANGER = 21, 22, 23, 11, 31, 99
# The FakeClock starts at 2026-11-30 01:00 UTC = 09:00 in Asia/Shanghai (TIMEZONE).


async def supervisors(services) -> dict[str, User]:
    return {
        "zhou": (await onboard(services, ZHOU, "supervisor", "Zhou Min", ())).user,
        "qian": (await onboard(services, QIAN, "supervisor", "Qian Hui", ())).user,
        "zhao": (await onboard(services, ZHAO, "supervisor", "Zhao Lei", ())).user,
    }


async def add_shift(services, staff_no: str, starts: str, ends: str, holiday: bool = False):
    async with services.uow() as uow:
        shift, created = await roster.add_shift(
            uow, staff_no=staff_no, starts=starts, ends=ends, holiday=holiday
        )
        await uow.commit()
        return shift, created


async def on_duty_names(services) -> list[str]:
    async with services.uow() as uow:
        return [u.name for u in await supervisors_on_duty(uow)]


async def test_the_roster_decides_who_is_on_duty_and_nobody_means_everybody(services) -> None:
    await supervisors(services)
    assert await on_duty_names(services) == ["Zhou Min", "Qian Hui", "Zhao Lei"]
    await add_shift(services, "S0002", "2026-11-30T08:00", "2026-11-30T20:00")
    await add_shift(services, "S0003", "2026-11-30T20:00", "2026-12-01T08:00")
    assert await on_duty_names(services) == ["Qian Hui"]
    services.clock.set(datetime(2026, 11, 30, 12, 30, tzinfo=UTC))  # 20:30 local
    assert await on_duty_names(services) == ["Zhao Lei"]
    services.clock.set(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # 08:00 local: shift over
    assert await on_duty_names(services) == ["Zhou Min", "Qian Hui", "Zhao Lei"]


async def test_holiday_dates_use_the_holiday_roster(services) -> None:
    await supervisors(services)
    await add_shift(services, "S0001", "2026-11-30T08:00", "2026-11-30T20:00")
    await add_shift(services, "S0003", "2026-11-30T00:00", "2026-12-01T00:00", holiday=True)
    assert await on_duty_names(services) == ["Zhou Min"]
    async with services.uow() as uow:
        await roster.add_holiday(uow, day="2026-11-30", name="Company Day")
        await uow.commit()
    assert await on_duty_names(services) == ["Zhao Lei"]
    async with services.uow() as uow:
        await roster.remove_holiday(uow, "2026-11-30")
        await uow.commit()
    assert await on_duty_names(services) == ["Zhou Min"]
    # a public holiday of the business calendar (fieldbot calendar add-holiday) counts too
    async with services.uow() as uow:
        org = await organisation(uow)
        org.settings = {**org.settings, "business_calendar": {"holidays": ["2026-11-30"]}}
        await uow.commit()
    assert await on_duty_names(services) == ["Zhao Lei"]


async def test_escalations_go_to_the_supervisor_on_duty(services) -> None:
    await supervisors(services)
    await new_dispatch(services)  # nobody qualified: the "assign an engineer" alert
    for chat in (ZHOU, QIAN, ZHAO):
        assert "Nobody is left" in (await texts_to(services, chat))[-1]
    await add_shift(services, "S0002", "2026-11-30T08:00", "2026-11-30T20:00")
    await new_dispatch(services, contact_name="Second")
    alerted = [c for c in (ZHOU, QIAN, ZHAO) if len(await texts_to(services, c)) == 4]
    assert alerted == [QIAN]


async def test_bad_shifts_are_refused_field_by_field(services) -> None:
    await supervisors(services)
    await onboard(services, ENGINEER, "engineer", "Wang Wei")
    cases = [
        (("E0001", "2026-12-01T08:00", "2026-12-01T20:00"), "staff", "not a supervisor"),
        (("S0404", "2026-12-01T08:00", "2026-12-01T20:00"), "staff", "no active staff"),
        (("S0001", "tomorrow", "2026-12-01T20:00"), "from", "not a date and time"),
        (("S0001", "2026-12-01T20:00", "2026-12-01T08:00"), "to", "must be after"),
        (("S0001", "2026-12-01T08:00", "2026-12-09T08:00"), "to", "at most 3 days"),
    ]
    for (staff_no, starts, ends), field, message in cases:
        with pytest.raises(FieldError) as err:
            await add_shift(services, staff_no, starts, ends)
        assert err.value.errors[0][0] == field and message in err.value.errors[0][1]
    shift, created = await add_shift(services, "S0001", "2026-12-01T08:00", "2026-12-01T20:00")
    again, created_again = await add_shift(
        services, "s0001", "2026-12-01T08:00", "2026-12-01T20:00"
    )
    assert created and not created_again and again.id == shift.id
    with pytest.raises(FieldError, match="overlaps"):
        await add_shift(services, "S0001", "2026-12-01T19:00", "2026-12-02T07:00")
    # the holiday roster is separate: the same hours may be planned there
    await add_shift(services, "S0001", "2026-12-01T08:00", "2026-12-01T20:00", holiday=True)
    async with services.uow() as uow:
        assert len(list(await uow.session.scalars(select(DutyShift)))) == 2


async def test_duty_command_shows_who_is_on_duty_and_the_next_shifts(services) -> None:
    await supervisors(services)
    await onboard(services, ENGINEER, "engineer", "Wang Wei")
    await add_shift(services, "S0001", "2026-11-30T08:00", "2026-11-30T20:00")
    await add_shift(services, "S0002", "2026-11-30T20:00", "2026-12-01T08:00")
    await add_shift(services, "S0003", "2026-11-29T08:00", "2026-11-29T20:00")  # over
    await say(services, ENGINEER, "/duty")
    text = (await texts_to(services, ENGINEER))[-1]
    assert "On duty now: Zhou Min" in text
    assert "2026-11-30 08:00 – 2026-11-30 20:00 · Zhou Min (S0001) · now" in text
    assert "2026-11-30 20:00 – 2026-12-01 08:00 · Qian Hui (S0002)" in text
    assert "Zhao Lei" not in text
    await say(services, STRANGER, "/duty")
    assert "Zhou Min" not in " ".join(await texts_to(services, STRANGER))
    services.clock.set(datetime(2026, 12, 5, 1, 0, tzinfo=UTC))
    async with services.uow() as uow:
        await roster.add_holiday(uow, day="2026-12-05", name="Founders' Day")
        await uow.commit()
    await say(services, ZHOU, "/duty")
    text = (await texts_to(services, ZHOU))[-1]
    assert "holiday: Founders&#39; Day" in text or "holiday: Founders' Day" in text
    assert (
        "Nobody is on the roster right now. Escalations go to: Zhou Min, Qian Hui, Zhao Lei" in text
    )
    assert "No shifts are planned." in text


async def test_a_handover_lists_what_is_open_and_the_incoming_supervisor_confirms(services) -> None:
    people = await supervisors(services)
    await new_dispatch(services)  # unassigned: an open escalation
    await say(services, ZHOU, "/handover")
    listing = (await texts_to(services, ZHOU))[-1]
    assert "Shift handover" in listing
    assert "FB000001 — waiting for an engineer" in listing
    assert "Type your notes" in listing
    await say(services, ZHOU, "Call Acme back about FB000001 before 10:00")
    pick = (await outbox_rows(services, ZHOU))[-1]
    labels = [b["text"] for row in pick.payload["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["Hand over to Qian Hui", "Hand over to Zhao Lei"]
    [handover] = await handovers(services)
    assert handover.status == "draft"
    await say(services, ZHOU, "Qian")  # a typed name is not a choice
    assert "use the buttons" in (await texts_to(services, ZHOU))[-1]
    await press(services, ZHOU, f"hov:{handover.id}:to:{people['qian'].id}")
    request = (await outbox_rows(services, QIAN))[-1]
    assert "Zhou Min hands the shift over to you" in request.payload["text"]
    assert "Call Acme back about FB000001 before 10:00" in request.payload["text"]
    assert "FB000001 — waiting for an engineer" in request.payload["text"]
    [[button]] = request.payload["reply_markup"]["inline_keyboard"]
    assert button["text"] == "✅ I take over the shift"
    assert "Handover sent to Qian Hui" in (await texts_to(services, ZHOU))[-1]
    # only the incoming supervisor can confirm
    await press(services, ZHAO, button["callback_data"])
    await press(services, ZHOU, button["callback_data"])
    assert (await handovers(services))[0].status == "pending"
    services.clock.advance(timedelta(minutes=5))
    await press(services, QIAN, button["callback_data"])
    [done] = await handovers(services)
    assert done.status == "confirmed" and done.to_id == people["qian"].id
    assert done.notes == "Call Acme back about FB000001 before 10:00"
    assert done.items["escalations"][0]["number"] == "FB000001"
    assert done.confirmed_at == services.clock.now()
    assert "You confirmed the handover from Zhou Min" in (await texts_to(services, QIAN))[-1]
    assert "Qian Hui confirmed your handover" in (await texts_to(services, ZHOU))[-1]
    # without a roster, the handover decides who gets the escalations
    assert await on_duty_names(services) == ["Qian Hui"]
    await press(services, QIAN, button["callback_data"])  # a second tap does nothing more
    assert len(await handovers(services)) == 1


async def handovers(services) -> list[Handover]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(Handover).order_by(Handover.id)))


async def test_no_handover_while_a_major_fault_is_unresolved(services) -> None:
    people = await supervisors(services)
    await onboard(services, ENGINEER, "engineer", "Wang Wei")
    await say(services, ZHOU, "/handover")
    [draft] = await handovers(services)
    await press(services, ZHOU, f"hov:{draft.id}:nonotes")
    # a major fault is reported while the handover is being written
    await say(services, ENGINEER, "/fault")
    await press(services, ENGINEER, "fltn:0:now")
    for answer in ("Line 3", "All compressors stopped", "Two engineers on the way"):
        await say(services, ENGINEER, answer)
    await press(services, ENGINEER, "fltn:0:nocust")
    await press(services, ZHOU, f"hov:{draft.id}:to:{people['qian'].id}")
    answer = [r for r in await outbox_rows(services, ZHOU) if r.method == "answerCallbackQuery"][-1]
    assert "No handover while a major fault is unresolved (MF000001)" in answer.payload["text"]
    assert (await handovers(services))[0].status == "draft"
    await say(services, ZHOU, "/handover")
    assert "No handover while a major fault is unresolved" in (await texts_to(services, ZHOU))[-1]
    assert len(await handovers(services)) == 1
    assert "hands the shift over" not in " ".join(await texts_to(services, QIAN))


async def test_the_incoming_supervisor_cannot_confirm_while_a_major_fault_is_open(services) -> None:
    people = await supervisors(services)
    await onboard(services, ENGINEER, "engineer", "Wang Wei")
    await say(services, ZHOU, "/handover")
    [draft] = await handovers(services)
    await press(services, ZHOU, f"hov:{draft.id}:nonotes")
    await press(services, ZHOU, f"hov:{draft.id}:to:{people['zhao'].id}")
    assert (await handovers(services))[0].status == "pending"
    await say(services, ENGINEER, "/fault")
    await press(services, ENGINEER, "fltn:0:now")
    for answer in ("Line 3", "All compressors stopped", "Two engineers on the way"):
        await say(services, ENGINEER, answer)
    await press(services, ENGINEER, "fltn:0:nocust")
    await press(services, ZHAO, f"hov:{draft.id}:ok")
    answer = [r for r in await outbox_rows(services, ZHAO) if r.method == "answerCallbackQuery"][-1]
    assert "No handover while a major fault is unresolved" in answer.payload["text"]
    assert (await handovers(services))[0].status == "pending"
    assert await on_duty_names(services) == ["Zhou Min", "Qian Hui", "Zhao Lei"]


async def test_only_supervisors_hand_over(services) -> None:
    await onboard(services, ENGINEER, "engineer", "Wang Wei")
    await onboard(services, MANAGER, "manager", "Liu Yang", ())
    for chat in (ENGINEER, MANAGER):
        await say(services, chat, "/handover")
        assert (await texts_to(services, chat))[-1] == "Sorry, this is not available to you."
    await onboard(services, ZHOU, "supervisor", "Zhou Min", ())
    await say(services, ZHOU, "/handover")
    assert "no other supervisor" in (await texts_to(services, ZHOU))[-1]
    assert await handovers(services) == []


def test_cli_duty_set_list_and_holiday(services, monkeypatch, db_url) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    out = runner.invoke(cli, ["staff", "add", "--role", "supervisor", "--name", "Zhou Min"])
    assert out.exit_code == 0, out.output
    day = (date.today() + timedelta(days=10)).isoformat()  # the CLI runs on the real clock
    args = ["duty", "set", "--staff", "S0001", "--from", f"{day}T08:00", "--to", f"{day}T20:00"]
    out = runner.invoke(cli, [*args, "--json"])
    assert out.exit_code == 0, out.output
    shift = json.loads(out.output)
    assert shift["created"] and shift["from"] == f"{day}T00:00:00+00:00"  # 08:00 in Shanghai
    out = runner.invoke(cli, args)
    assert "already on the roster" in out.output
    bad = runner.invoke(cli, ["duty", "set", "--staff", "S0009", "--from", "x", "--to", "y"])
    assert bad.exit_code == 1
    assert "error: staff: no active staff member" in bad.output
    assert "error: from: 'x' is not a date and time" in bad.output
    out = runner.invoke(cli, ["duty", "holiday", day, "--name", "Test Day"])
    assert "added to the holiday calendar" in out.output
    bad = runner.invoke(cli, ["duty", "holiday", "first of May"])
    assert bad.exit_code == 1 and "error: date:" in bad.output
    out = runner.invoke(cli, ["duty", "list", "--days", "30"])
    assert f"{day} 08:00 – {day} 20:00 S0001 Zhou Min" in out.output
    assert f"holiday {day} Test Day" in out.output
    out = runner.invoke(cli, ["duty", "remove", str(shift["id"])])
    assert out.exit_code == 0 and "removed" in out.output
    assert runner.invoke(cli, ["duty", "remove", str(shift["id"])]).exit_code == 1


async def test_local_dates_follow_the_timezone(services) -> None:
    async with services.uow() as uow:
        late_evening = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)  # 00:30 on 1 Dec in Shanghai
        assert roster.local_date(uow, late_evening) == date(2026, 12, 1)
