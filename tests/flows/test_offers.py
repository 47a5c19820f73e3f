"""DOMAIN.md §1 step 1: offers, declines with reasons, timeouts, and assignment by hand."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.core.events import Event, Kind
from bot.db.models import Dispatch, DispatchEvent, Offer, Timer
from bot.handlers.router import handle
from bot.scheduler.sweep import sweep
from tests.conftest import outbox_rows, texts_to
from tests.helpers import new_dispatch, onboard, press, say


async def offer_of(services, dispatch_id: int, engineer_id: int) -> Offer:
    async with services.uow() as uow:
        offer = await uow.session.scalar(
            select(Offer).where(Offer.dispatch_id == dispatch_id, Offer.engineer_id == engineer_id)
        )
        assert offer is not None
        return offer


async def status_of(services, dispatch_id: int) -> str:
    async with services.uow() as uow:
        d = await uow.session.get(Dispatch, dispatch_id)
        assert d is not None
        return d.status


async def test_accept_takes_the_job_and_edits_the_offer(services) -> None:
    eng = await onboard(services, 11)
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, eng.user.id)
    await press(services, 11, f"off:{offer.id}:acc")
    assert await status_of(services, dispatch.id) == "accepted"
    rows = await outbox_rows(services, 11)
    edit = [r for r in rows if r.method == "editMessageText"]
    assert (
        edit
        and edit[0].edit_of == f"offer:{offer.id}"
        and "You accepted" in edit[0].payload["text"]
    )
    async with services.uow() as uow:
        pending = list(
            await uow.session.scalars(
                select(Timer).where(Timer.kind == "offer_timeout", Timer.status == "pending")
            )
        )
    assert pending == []


async def test_double_tap_on_accept_acts_once(services) -> None:
    eng = await onboard(services, 11)
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, eng.user.id)
    await press(services, 11, f"off:{offer.id}:acc")
    await press(services, 11, f"off:{offer.id}:acc")
    async with services.uow() as uow:
        kinds = list(
            await uow.session.scalars(
                select(DispatchEvent.kind).where(DispatchEvent.dispatch_id == dispatch.id)
            )
        )
    assert kinds.count("accepted") == 1
    answers = [r for r in await outbox_rows(services, 11) if r.method == "answerCallbackQuery"]
    assert "no longer open" in answers[-1].payload["text"]


async def test_the_same_update_handled_twice_at_once_acts_once(services) -> None:
    """A redelivered update (a webhook retry, a re-fed update after a crash) racing the first."""
    eng = await onboard(services, 11)
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, eng.user.id)
    event = Event(
        update_id=424_242,
        kind=Kind.BUTTON,
        telegram_id=11,
        chat_id=11,
        language="en",
        data=f"off:{offer.id}:acc",
        callback_id="cq-twice",
        message_id=1,
    )
    before = len(await outbox_rows(services, 11))
    await asyncio.gather(handle(services, event), handle(services, event))
    await handle(services, event)
    assert await status_of(services, dispatch.id) == "accepted"
    async with services.uow() as uow:
        kinds = list(
            await uow.session.scalars(
                select(DispatchEvent.kind).where(DispatchEvent.dispatch_id == dispatch.id)
            )
        )
    assert kinds.count("accepted") == 1
    rows = (await outbox_rows(services, 11))[before:]
    assert [r.method for r in rows].count("answerCallbackQuery") == 1


async def test_another_engineer_cannot_press_someone_elses_offer(services) -> None:
    eng = await onboard(services, 11)
    await onboard(services, 12, name="Intruder")
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, eng.user.id)
    await press(services, 12, f"off:{offer.id}:acc")
    assert await status_of(services, dispatch.id) == "offered"
    answers = [r for r in await outbox_rows(services, 12) if r.method == "answerCallbackQuery"]
    assert answers[-1].payload["text"] == "This job is not yours."


async def test_customers_and_strangers_cannot_press_offer_buttons(services) -> None:
    eng = await onboard(services, 11)
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, eng.user.id)
    await press(services, 99, f"off:{offer.id}:acc")
    assert await status_of(services, dispatch.id) == "offered"
    answers = [r for r in await outbox_rows(services, 99) if r.method == "answerCallbackQuery"]
    assert answers[-1].payload["show_alert"] is True


async def test_forged_button_data_changes_nothing(services) -> None:
    await onboard(services, 11)
    dispatch = await new_dispatch(services)
    for data in ["off:999:acc", "off:1:zzz", "nonsense", "job:1:asg:1", "off:1:dr:vacation"]:
        await press(services, 11, data)
    assert await status_of(services, dispatch.id) == "offered"


async def test_decline_with_a_reason_button_moves_to_the_next_engineer(services) -> None:
    first = await onboard(services, 11, name="First")
    second = await onboard(services, 12, name="Second")
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, first.user.id)
    await press(services, 11, f"off:{offer.id}:dec")
    assert "Why are you declining" in (await texts_to(services, 11))[-1]
    await press(services, 11, f"off:{offer.id}:dr:far")
    offer = await offer_of(services, dispatch.id, first.user.id)
    assert offer.status == "declined" and offer.reason == "Too far away"
    await offer_of(services, dispatch.id, second.user.id)  # offered to the second now


async def test_decline_with_a_typed_reason(services) -> None:
    first = await onboard(services, 11, name="First")
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, first.user.id)
    await press(services, 11, f"off:{offer.id}:dec")
    await say(services, 11, "My van broke down")
    offer = await offer_of(services, dispatch.id, first.user.id)
    assert offer.status == "declined" and offer.reason == "My van broke down"
    assert await status_of(services, dispatch.id) == "unassigned"


async def test_timeout_withdraws_and_reoffers_then_alerts_the_supervisor(services, clock) -> None:
    first = await onboard(services, 11, name="First")
    second = await onboard(services, 12, name="Second")
    await onboard(services, 21, role="supervisor", name="Boss", skills=())
    dispatch = await new_dispatch(services)
    clock.advance(services.settings.offer_timeout)
    assert await sweep(services) == 1
    assert (await offer_of(services, dispatch.id, first.user.id)).status == "expired"
    withdrawn = [r for r in await outbox_rows(services, 11) if r.method == "editMessageText"]
    assert "withdrawn" in withdrawn[-1].payload["text"]
    assert "+8613800138000" not in withdrawn[-1].payload["text"]  # details gone with the offer
    await offer_of(services, dispatch.id, second.user.id)
    clock.advance(services.settings.offer_timeout)
    assert await sweep(services) == 1
    assert await status_of(services, dispatch.id) == "unassigned"
    alert = (await outbox_rows(services, 21))[-1]
    assert "Nobody is left" in alert.payload["text"]
    buttons = [row[0]["callback_data"] for row in alert.payload["reply_markup"]["inline_keyboard"]]
    assert buttons == [
        f"job:{dispatch.id}:asg:{first.user.id}",
        f"job:{dispatch.id}:asg:{second.user.id}",
    ]
    assert await sweep(services) == 0  # fired once


async def test_late_answer_after_withdrawal_is_refused(services, clock) -> None:
    first = await onboard(services, 11, name="First")
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, first.user.id)
    clock.advance(services.settings.offer_timeout)
    await sweep(services)
    await press(services, 11, f"off:{offer.id}:acc")
    assert await status_of(services, dispatch.id) == "unassigned"


async def test_supervisor_assigns_by_hand_with_one_tap(services) -> None:
    eng = await onboard(services, 11)
    await onboard(services, 21, role="supervisor", name="Boss", skills=())
    dispatch = await new_dispatch(services)
    offer = await offer_of(services, dispatch.id, eng.user.id)
    await press(services, 11, f"off:{offer.id}:dr:busy")
    assert await status_of(services, dispatch.id) == "unassigned"
    await press(services, 11, f"job:{dispatch.id}:asg:{eng.user.id}")  # engineers may not
    assert await status_of(services, dispatch.id) == "unassigned"
    await press(services, 21, f"job:{dispatch.id}:asg:{eng.user.id}")
    assert await status_of(services, dispatch.id) == "offered"
    new_offer = await offer_of(services, dispatch.id, eng.user.id)
    await press(services, 11, f"off:{new_offer.id}:acc")
    assert await status_of(services, dispatch.id) == "accepted"


async def test_two_engineers_can_never_both_hold_a_job(services) -> None:
    """Both press at once on the same dispatch (a supervisor offered it to each)."""
    a = await onboard(services, 11, name="A")
    b = await onboard(services, 12, name="B")
    dispatch = await new_dispatch(services)
    offer_a = await offer_of(services, dispatch.id, a.user.id)
    # Force a second pending offer for B as if offered concurrently by hand.
    async with services.uow() as uow:
        from bot.flows.offers import make_offer

        d = await uow.session.get(Dispatch, dispatch.id)
        from bot.db.models import User

        user_b = await uow.session.get(User, b.user.id)
        assert d is not None and user_b is not None
        await make_offer(uow, d, user_b)
        await uow.commit()
    offer_b = await offer_of(services, dispatch.id, b.user.id)
    await asyncio.gather(
        press(services, 11, f"off:{offer_a.id}:acc"), press(services, 12, f"off:{offer_b.id}:acc")
    )
    async with services.uow() as uow:
        d = await uow.session.get(Dispatch, dispatch.id)
        accepted = list(
            await uow.session.scalars(
                select(Offer).where(Offer.dispatch_id == dispatch.id, Offer.status == "accepted")
            )
        )
    assert d is not None and d.status == "accepted"
    assert len(accepted) == 1 and d.engineer_id == accepted[0].engineer_id
