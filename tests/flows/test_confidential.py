"""DOMAIN.md §7: an engineer sees the customer's contact and address only while holding the job.

Messages go through the real sender to a stand-in for Telegram that keeps what each chat
shows, so the tests read the engineer's chat as the engineer would, after the edits.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from bot.core.enums import DispatchStatus
from bot.db.models import Outbox, User
from bot.flows.confidential import end_hold
from bot.scheduler.sweep import sweep
from bot.services import dispatches as svc
from bot.services.context import Services
from bot.workers.sender import OutboxSender
from tests.conftest import outbox_rows
from tests.flows.test_customer import pending_signoff, submitted_job
from tests.flows.test_job import (
    CUST,
    ENG,
    OTHER,
    SUP,
    accepted_job,
    contact,
    offer_id,
    onboard_id,
)
from tests.helpers import new_dispatch, onboard, press

PRIVATE = ("+8613800138000", "88 Century Avenue", "Li Na")  # phone, address, contact
REMOVED = "The customer's contact details and address have been removed from this chat"


class Chats:
    """Stands in for Telegram: what each chat shows now, message by message."""

    def __init__(self) -> None:
        self.shown: dict[int, dict[int, dict[str, Any]]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, payload: dict[str, Any]) -> Any:
        self.calls.append((method, payload))
        if "chat_id" not in payload:
            return True  # a button's answer
        chat = self.shown.setdefault(payload["chat_id"], {})
        if method == "deleteMessage":
            del chat[payload["message_id"]]
            return True
        if method == "editMessageText":
            chat[payload["message_id"]] = payload  # the text and buttons are replaced
            return {"message_id": payload["message_id"]}
        message_id = len(self.calls)
        chat[message_id] = payload
        return {"message_id": message_id}

    def view(self, chat_id: int) -> dict[int, dict[str, Any]]:
        return dict(self.shown.get(chat_id, {}))

    def showing(self, chat_id: int, needle: str) -> dict[int, dict[str, Any]]:
        return {k: v for k, v in self.view(chat_id).items() if needle in v.get("text", "")}

    def pins(self, chat_id: int) -> list[tuple[float, float]]:
        """The location pins the chat shows (a site's location is as private as its address)."""
        return [
            (m["latitude"], m["longitude"]) for m in self.view(chat_id).values() if "latitude" in m
        ]


async def deliver(services: Services, chats: Chats) -> None:
    """Run the real sender until the outbox is empty."""
    sender = OutboxSender(services, chats)  # type: ignore[arg-type]
    while await sender.run_once():
        await sender.settle()


def assert_scrubbed(shown: dict[str, Any], heading: str) -> None:
    text = shown["text"]
    assert heading in text and REMOVED in text, text
    assert not any(needle in text for needle in PRIVATE), text
    assert "Acme Foods" in text and "CH-200 chiller" in text  # the job itself stays
    assert "reply_markup" not in shown  # buttons removed


async def test_sign_off_edits_every_private_message_in_the_engineers_chat(services, clock) -> None:
    chats = Chats()
    job = await submitted_job(services, clock)
    await deliver(services, chats)
    private = chats.showing(ENG, "88 Century Avenue")
    # the accepted-job card (the offer, edited), the call prompt, two arrival prompts
    assert len(private) == 4, [p["text"] for p in private.values()]
    assert len(chats.pins(ENG)) == 1  # the site's location, sent with the offer
    customer_before = chats.view(CUST)

    await press(services, CUST, f"so:{(await pending_signoff(services, job)).id}:ok")
    await deliver(services, chats)

    shown = chats.view(ENG)
    for message_id in private:
        assert_scrubbed(shown[message_id], "🔒 Job FB000001 is finished.")
    assert not any(n in p.get("text", "") for p in shown.values() for n in PRIVATE[:2])
    assert len(chats.showing(ENG, REMOVED)) == len(private)
    assert chats.pins(ENG) == []  # deleted: a pin cannot be edited into text
    assert chats.showing(ENG, "The customer signed off job FB000001")  # told as before
    customer_after = chats.view(CUST)
    assert not chats.showing(CUST, REMOVED)
    assert any("88 Century Avenue" in p.get("text", "") for p in customer_after.values())
    assert {k: customer_after[k] for k in customer_before} == customer_before


async def test_reassignment_scrubs_only_that_engineers_messages_of_that_job(services) -> None:
    chats = Chats()
    job = await accepted_job(services, second_engineer=True)
    other_id = await onboard_id(services, OTHER)
    theirs = await new_dispatch(services)  # the least busy engineer gets it: OTHER
    await press(services, OTHER, f"off:{await offer_id(services, theirs.id, other_id)}:acc")
    mine = await new_dispatch(services, address="1 Nanjing Road")  # ENG's second job
    await press(services, ENG, f"off:{await offer_id(services, mine.id, job.engineer_id)}:acc")
    await contact(services, job)  # the arrival prompt shows the address too
    await deliver(services, chats)
    private = chats.showing(ENG, "88 Century Avenue")
    assert len(private) == 3  # the accepted-job card, the call prompt, the arrival prompt
    second_job = chats.showing(ENG, "1 Nanjing Road")
    assert len(second_job) == 2 and all("+8613800138000" in p["text"] for p in second_job.values())
    other_before, customer_before = chats.view(OTHER), chats.view(CUST)
    assert chats.showing(OTHER, "+8613800138000")

    await press(services, SUP, f"job:{job.id}:reasg")
    await deliver(services, chats)

    shown = chats.view(ENG)
    for message_id in private:
        assert_scrubbed(shown[message_id], "🔒 Job FB000001 was reassigned.")
    assert chats.showing(ENG, "has been reassigned by your supervisor")
    assert not chats.showing(ENG, "88 Century Avenue")
    assert len(chats.pins(ENG)) == 1  # the pin of the job still open, not the one taken away
    assert {k: shown[k] for k in second_job} == second_job  # the job still open: untouched
    assert chats.view(OTHER) == other_before  # another engineer's messages: untouched
    assert chats.view(CUST) == customer_before  # the customer's: untouched


@pytest.mark.parametrize("tried", [False, True])
async def test_a_private_message_not_sent_yet_never_shows_the_contact(services, tried) -> None:
    """Never tried: withdrawn from the outbox. Tried (it may have arrived): sent, then edited."""
    chats = Chats()
    job = await accepted_job(services)
    await deliver(services, chats)
    await contact(services, job)  # the arrival prompt waits in the outbox
    prompt = [r for r in await outbox_rows(services, ENG) if r.status == "pending"]
    assert any("88 Century Avenue" in r.payload.get("text", "") for r in prompt)
    if tried:
        async with services.uow() as uow:
            await uow.session.execute(
                update(Outbox).where(Outbox.status == "pending").values(attempts=1)
            )
            await uow.commit()

    await press(services, SUP, f"job:{job.id}:reasg")
    await deliver(services, chats)

    assert not chats.showing(ENG, "88 Century Avenue")
    assert not chats.showing(ENG, "+8613800138000")
    arrival_prompts = chats.showing(ENG, "was reassigned.")
    assert len(arrival_prompts) == (3 if tried else 2)
    sent = [p.get("text", "") for _, p in chats.calls if p.get("chat_id") == ENG]
    assert any("ETA 11:30 saved for job FB000001" in t for t in sent) is tried
    assert all(r.status == "sent" for r in await outbox_rows(services, ENG))


async def test_a_job_taken_away_before_anything_went_out_leaves_nothing_to_send(services) -> None:
    """Nothing sent yet when the job is taken away: the offer is withdrawn, and so is its edit
    into the accepted-job card (queued by the accept), instead of failing at the sender."""
    chats = Chats()
    job = await accepted_job(services)
    await press(services, SUP, f"job:{job.id}:reasg")
    await deliver(services, chats)

    assert not any(n in p.get("text", "") for p in chats.view(ENG).values() for n in PRIVATE[:2])
    assert not [r for r in await outbox_rows(services, ENG) if r.status == "failed"]
    assert not [r for r in await outbox_rows(services, ENG) if r.edit_of]
    assert not chats.showing(ENG, REMOVED)  # nothing to edit: nothing was shown


async def test_an_edit_not_sent_yet_does_not_show_the_contact_once_more(services) -> None:
    """The offer went out, the accept's edit of it into the job card (with the contact) has
    not: taken away now, the card never shows; the offer is edited without the contact."""
    chats = Chats()
    engineer = await onboard(services, ENG)
    await onboard(services, SUP, role="supervisor", name="Boss", skills=())
    dispatch = await new_dispatch(services)
    offer = await offer_id(services, dispatch.id, engineer.user.id)
    await deliver(services, chats)  # the offer and its pin
    await press(services, ENG, f"off:{offer}:acc")  # the card edit waits in the outbox
    await press(services, SUP, f"job:{dispatch.id}:reasg")
    await deliver(services, chats)

    edits = [p for m, p in chats.calls if m == "editMessageText"]
    assert edits and all(REMOVED in p["text"] for p in edits)  # only the scrub went out
    assert not any(n in p.get("text", "") for p in chats.view(ENG).values() for n in PRIVATE)
    assert chats.pins(ENG) == []


async def test_a_cancelled_job_is_scrubbed_in_the_engineers_language(services) -> None:
    """There is no cancel command yet: the status change plus ``end_hold``, as one will do."""
    chats = Chats()
    job = await accepted_job(services)
    async with services.uow() as uow:  # the engineer reads Chinese from now on
        engineer = await uow.session.get(User, job.engineer_id)
        assert engineer is not None
        engineer.locale = "zh_Hans"
        await uow.commit()
    await deliver(services, chats)
    private = chats.showing(ENG, "+8613800138000")
    assert len(private) == 2  # the accepted-job card and the call prompt

    async with services.uow() as uow:
        dispatch = await svc.get_dispatch(uow, job.id)
        assert dispatch is not None
        await svc.record(uow, dispatch, "cancelled", to_status=DispatchStatus.CANCELLED)
        await end_hold(uow, dispatch, job.engineer_id)
        await uow.commit()
    await deliver(services, chats)

    for message_id in private:
        text = chats.view(ENG)[message_id]["text"]
        assert "🔒 工单 FB000001 已取消。" in text and "保密" in text
        assert not any(needle in text for needle in PRIVATE)


@pytest.mark.parametrize("ending", ["declined", "expired"])
async def test_an_offer_that_ends_unaccepted_takes_the_sites_location_pin_with_it(
    services, clock, ending
) -> None:
    chats = Chats()
    engineer = await onboard(services, ENG)
    dispatch = await new_dispatch(services)
    offer = await offer_id(services, dispatch.id, engineer.user.id)
    await deliver(services, chats)
    assert len(chats.pins(ENG)) == 1 and chats.showing(ENG, "88 Century Avenue")

    if ending == "declined":
        await press(services, ENG, f"off:{offer}:dec")
        await press(services, ENG, f"off:{offer}:dr:far")
    else:
        clock.advance(services.settings.offer_timeout)
        assert await sweep(services) == 1
    await deliver(services, chats)

    assert chats.pins(ENG) == []
    assert not chats.showing(ENG, "88 Century Avenue")  # the offer, edited as before
    deleted = [p for m, p in chats.calls if m == "deleteMessage"]
    assert [p["chat_id"] for p in deleted] == [ENG]


async def test_a_pin_not_sent_yet_is_withdrawn_with_the_offer(services) -> None:
    engineer = await onboard(services, ENG)
    dispatch = await new_dispatch(services)
    offer = await offer_id(services, dispatch.id, engineer.user.id)
    await press(services, ENG, f"off:{offer}:dec")
    await press(services, ENG, f"off:{offer}:dr:far")
    methods = [r.method for r in await outbox_rows(services, ENG)]
    assert "sendLocation" not in methods and "deleteMessage" not in methods
