"""Issue 8 item 12: one customer's personal data, exported and erased (bot/services/privacy.py).

The history is built through the real handlers: a job signed off in chat and rated 2 with a
comment (which opens a complaint, relayed to the supervisor), the owner and the customer
talking through the bot, the complaint resolved and closed, the satisfaction follow-up
answered; another customer's job beside it. Raw Telegram updates are stored in the inbox as
the runtime would store them.

The erasure check reads every text, JSON and binary column of every table (``Base.metadata``;
PDFs are read as text), so a table added later that keeps a copy of the customer's data makes
the test fail.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader
from pypdf.errors import PdfReadError
from sqlalchemy import select

from bot.core.events import Kind
from bot.db.models import Base, Dispatch, Inbox, Outbox, Timer, User
from bot.db.models.complaints import Complaint
from bot.db.models.customer import Feedback, SignOff, WorkOrderPdf
from bot.db.models.followups import FollowUp
from bot.flows import reports
from bot.scheduler.sweep import sweep
from bot.services import inbox, privacy, workorder_pdf
from bot.services.context import Services
from tests.conftest import texts_to
from tests.flows.test_customer import NEAR, accept, report, share_contact, staff, user_by_tg
from tests.helpers import new_dispatch, press, say, send_kind

ENG, SUP, CUST, OTHER = 11, 21, 7001, 7002

MINE = {
    "customer": "Li Na Household",
    "contact_name": "Li Na",
    "contact_phone": "+86 138 0013 8000",
    "address": "88 Century Avenue, Pudong",
}
THEIRS = {
    "customer": "Acme Foods",
    "contact_name": "Zhang San",
    "contact_phone": "+86 139 0000 0000",
    "address": "1 Nanjing Road, Huangpu",
}
COMMENT = "Left a mess behind in the kitchen"
ANSWER = "After 3 pm, please ring 13800138000"
ENGINEER_NOTE = "Customer on 138 0013 8000 did not pick up"
PHOTO = "AgACAgIAAxkBAAIcustomer-kitchen-photo"  # a Telegram file id they sent
# Everything that identifies the customer or that they wrote, as it may be written anywhere.
PERSONAL = [
    "13800138000",
    "138 0013 8000",
    "138-0013-8000",
    "Li Na",
    "Lina",
    "Li Na Household",
    "88 Century Avenue",
    COMMENT,
    "After 3 pm",
    PHOTO,
]
KEPT = (Dispatch, Complaint, Feedback, SignOff, FollowUp, User)
OTHERS = ["13900000000", "Zhang San", "Acme Foods", "1 Nanjing Road", "Quick and tidy work"]


@pytest.fixture(autouse=True)
def quick_pdfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The work-order PDF as a binary stand-in holding the same text (the real renderer takes
    seconds; tests/flows/test_customer.py covers it). Not UTF-8, like a real PDF, so the
    erasure must treat it as a file it cannot clean."""

    def render(markup: str, *, title: str, created: Any) -> bytes:
        return b"%PDF-1.3\n%\xe9\xeb\xf1\xbf\n" + markup.encode("utf-8")

    monkeypatch.setattr(workorder_pdf, "render_pdf", render)


# ---- building a history ----------------------------------------------------------------------


async def finished_job(
    services: Services,
    clock: Any,
    customer_tg: int,
    phone: str,
    first_name: str,
    rating: int,
    comment: str,
    fields: dict[str, str],
) -> int:
    """A job done, signed off in chat by ``customer_tg`` and rated with a comment."""
    dispatch = await new_dispatch(services, **fields)
    await share_contact(services, customer_tg, phone, first_name=first_name)
    await accept(services, dispatch.id)
    start = dispatch.window_start
    minutes = lambda t: int(t.timestamp() // 60)  # noqa: E731
    await press(services, ENG, f"job:{dispatch.id}:ctd")
    await press(services, ENG, f"job:{dispatch.id}:eta:{minutes(start + timedelta(minutes=30))}")
    await press(services, ENG, f"job:{dispatch.id}:way")
    await press(services, ENG, f"job:{dispatch.id}:omw:{minutes(start + timedelta(minutes=15))}")
    clock.set(start + timedelta(minutes=10))
    await send_kind(services, ENG, Kind.LOCATION, latitude=NEAR[0], longitude=NEAR[1])
    await report(services, dispatch.id)
    async with services.uow() as uow:
        signoff = await uow.session.scalar(
            select(SignOff).where(SignOff.dispatch_id == dispatch.id, SignOff.status == "pending")
        )
    assert signoff is not None
    await press(services, customer_tg, f"so:{signoff.id}:ok")
    await press(services, customer_tg, f"fb:{dispatch.id}:r:{rating}")
    await say(services, customer_tg, comment)
    return dispatch.id


async def store_update(services: Services, update: dict[str, Any]) -> None:
    async with services.uow() as uow:
        await inbox.store(uow.session, [update], uow.clock.now())
        await uow.commit()


def private_message(update_id: int, telegram_id: int, first_name: str, text: str) -> dict[str, Any]:
    person = {"id": telegram_id, "is_bot": False, "first_name": first_name}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1764464400,
            "chat": {**person, "type": "private"},
            "from": person,
            "text": text,
        },
    }


async def history(services: Services, clock: Any) -> dict[str, int]:
    """Both customers' histories; returns the ids the tests look at."""
    await staff(services, ENG)
    await staff(services, SUP, "supervisor", "Zhou Min")
    mine = await finished_job(services, clock, CUST, "8613800138000", "Lina", 2, COMMENT, MINE)
    [complaint] = await _rows(services, Complaint, Complaint.dispatch_id == mine)
    await press(services, SUP, f"cmp:{complaint.id}:take")
    await press(services, SUP, f"cmp:{complaint.id}:reply")
    await say(services, SUP, "We are sorry. When can we call you?")
    await say(services, CUST, ANSWER)
    await send_kind(services, CUST, Kind.PHOTO, file_ids=(PHOTO,), file_size=10)
    await press(services, SUP, f"cmp:{complaint.id}:res")
    await say(services, SUP, "We clean up and refund the visit.")
    await press(services, SUP, f"cmp:{complaint.id}:when:0")
    await press(services, CUST, f"cmp:{complaint.id}:ok")
    await press(services, CUST, f"cmp:{complaint.id}:rate:4")
    clock.advance(timedelta(days=1, hours=1))
    await sweep(services)
    [followup] = await _rows(services, FollowUp, FollowUp.dispatch_id == mine)
    await press(services, CUST, f"fu:{followup.id}:ok")

    theirs = await finished_job(
        services, clock, OTHER, "8613900000000", "Zhang", 5, "Quick and tidy work", THEIRS
    )
    await store_update(services, private_message(90001, CUST, "Lina", ANSWER))
    await store_update(services, private_message(90002, ENG, "Wang", ENGINEER_NOTE))
    await store_update(services, private_message(90003, OTHER, "Zhang", "Quick and tidy work"))
    return {"mine": mine, "theirs": theirs, "complaint": complaint.id, "followup": followup.id}


async def _rows(services: Services, model: Any, *where: Any) -> list[Any]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(select(model).where(*where)))


# ---- reading the whole database --------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    try:
        return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    except PdfReadError:  # the quick stand-in below: its text is plain
        return data.decode("latin-1")


def _readable(value: Any) -> str:
    if isinstance(value, bytes):
        return _pdf_text(value) if value.startswith(b"%PDF") else value.decode("latin-1")
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict) and isinstance(value.get("document_b64"), str):
            data = base64.b64decode(value["document_b64"])
            text += "\n" + (_pdf_text(data) if data.startswith(b"%PDF") else data.decode())
        return text
    return str(value)


async def everything(services: Services) -> dict[str, str]:
    """Every text, JSON and binary value of every table, by table."""
    found: dict[str, str] = {}
    async with services.uow() as uow:
        for table in Base.metadata.sorted_tables:
            rows = (await uow.session.execute(select(table))).all()
            found[table.name] = "\n".join(
                _readable(value) for row in rows for value in row if value is not None
            )
    return found


def occurrences(dump: dict[str, str], needles: list[str]) -> dict[str, list[str]]:
    return {
        table: hits
        for table, text in dump.items()
        if (hits := [n for n in needles if n.lower() in text.lower()])
    }


async def figures(services: Services) -> Any:
    async with services.uow() as uow:
        period = reports.parse_period("monthly", "2026-11", uow.clock.now(), "Asia/Shanghai")
        return await reports.gather(uow, period)


async def erase(services: Services, who: str, **kw: Any) -> privacy.Erasure:
    async with services.uow() as uow:
        subject = await privacy.identify(uow, who)
        done = await privacy.erase(uow, subject, **kw)
        await uow.commit()
        return done


async def export(services: Services, who: str | None = None, **kw: Any) -> dict[str, Any]:
    async with services.uow() as uow:
        return await privacy.export(uow, await privacy.identify(uow, who, **kw))


# ---- the tests -------------------------------------------------------------------------------


async def test_export_holds_their_data_and_nothing_of_another_customer(services, clock) -> None:
    ids = await history(services, clock)
    mine = f"FB{ids['mine']:06d}"
    for who, kw in (("+86 138 0013 8000", {}), (mine, {}), (None, {"telegram_id": CUST})):
        data = await export(services, who, **kw)
        text = json.dumps(data, ensure_ascii=False)
        assert [j["number"] for j in data["jobs"]] == [mine]
        job = data["jobs"][0]
        assert (job["contact_name"], job["contact_phone"]) == ("Li Na", "+8613800138000")
        assert job["site"]["address"] == MINE["address"] and job["status"] == "signed_off"
        assert job["report"]["final"]["work_done"] == "Replaced the compressor relay"
        assert [f["rating"] for f in data["feedback"]] == [2]
        assert data["feedback"][0]["comment"] == COMMENT
        assert [c["id"] for c in data["complaints"]] == [ids["complaint"]]
        assert ANSWER in text and "We are sorry" in text
        assert [f["answer"] for f in data["followups"]] == ["good"]
        assert [s["status"] for s in data["signoffs"]] == ["confirmed"]
        assert len(data["work_order_pdfs"]) == 1
        assert any(r["payload"].get("message", {}).get("text") == ANSWER for r in data["inbox"])
        assert data["outbox"] and all(r["chat_id"] == CUST for r in data["outbox"])
        assert data["telegram_ids"] == [CUST] and data["phones"] == ["+8613800138000"]
        for needle in [*OTHERS, ENGINEER_NOTE]:
            assert needle not in text, needle

    # Who is meant must be clear: staff, unknown people and non-numbers are refused.
    with pytest.raises(privacy.PrivacyError, match="staff"):
        await export(services, telegram_id=ENG)
    with pytest.raises(privacy.NotFound):
        await export(services, "+86 137 1111 2222")
    with pytest.raises(privacy.NotFound):
        await export(services, "FB999999")
    with pytest.raises(privacy.PrivacyError, match="not a phone"):
        await export(services, "call me")

    # A bare number that is both a known phone and a known Telegram id: both ways are listed.
    async with services.uow() as uow:
        uow.session.add(
            User(
                telegram_id=13800138000,
                chat_id=13800138000,
                role="customer",
                name="Somebody Else",
                active=True,
                on_duty=False,
                created_at=uow.clock.now(),
            )
        )
        await uow.commit()
    with pytest.raises(privacy.Ambiguous) as ambiguous:
        await export(services, "13800138000")
    assert "--phone 13800138000" in str(ambiguous.value)
    assert "--telegram-id 13800138000" in str(ambiguous.value)
    data = await export(services, telegram_id=13800138000)
    assert [u["name"] for u in data["customer_records"]] == ["Somebody Else"]
    assert "Somebody Else" not in json.dumps(await export(services, phone="13800138000"))

    # A job whose contact is one person and that another person follows in chat.
    async with services.uow() as uow:
        job = await uow.session.get(Dispatch, ids["mine"])
        assert job is not None
        job.contact_phone = "+8613700000000"
        await uow.commit()
    with pytest.raises(privacy.Ambiguous) as ambiguous:
        await export(services, mine)
    assert "--phone +8613700000000" in str(ambiguous.value)
    assert f"--telegram-id {CUST}" in str(ambiguous.value)


async def test_erase_leaves_no_trace_and_keeps_the_history(services, clock) -> None:
    ids = await history(services, clock)
    mine = f"FB{ids['mine']:06d}"
    dump = await everything(services)
    hits = occurrences(dump, PERSONAL)  # the history is realistic: they are everywhere
    for table in ("users", "dispatches", "sites", "customers", "signoffs", "work_order_pdfs"):
        assert table in hits, table
    for table in ("feedback", "complaints", "complaint_events", "inbox", "outbox"):
        assert table in hits, table
    assert COMMENT in hits["outbox"] and "138 0013 8000" in hits["inbox"]
    assert PHOTO in hits["outbox"] and PHOTO in hits["complaints"]  # relayed to the owner
    before = await figures(services)
    counts = {m.__tablename__: len(await _rows(services, m)) for m in KEPT}
    pending = [r.id for r in await _rows(services, Outbox, Outbox.chat_id == CUST)]
    pending = [
        i
        for i in pending
        if i in {r.id for r in await _rows(services, Outbox, Outbox.status == "pending")}
    ]
    assert pending  # flow tests run no sender: messages to them are still queued

    done = await erase(services, "13800138000")

    assert not done.nothing_left
    after_dump = await everything(services)
    assert occurrences(after_dump, PERSONAL) == {}
    # The company's history is whole: every row, status and rating, and the same figures.
    assert {m.__tablename__: len(await _rows(services, m)) for m in KEPT} == counts
    [job] = await _rows(services, Dispatch, Dispatch.id == ids["mine"])
    assert (job.status, job.contact_phone, job.number) == ("signed_off", "", mine)
    assert job.contact_name == done.label and job.report["final"]["parts"]
    assert job.arrival["distance_m"] is not None and job.arrival["latitude"] == round(NEAR[0], 1)
    [feedback] = await _rows(services, Feedback, Feedback.dispatch_id == ids["mine"])
    assert (feedback.rating, feedback.comment) == (2, None)
    [complaint] = await _rows(services, Complaint, Complaint.id == ids["complaint"])
    assert (complaint.status, complaint.rating, complaint.category) == ("closed", 4, "quality")
    [signoff] = await _rows(services, SignOff, SignOff.dispatch_id == ids["mine"])
    assert signoff.status == "confirmed" and signoff.telegram_id is None
    assert await _rows(services, WorkOrderPdf, WorkOrderPdf.dispatch_id == ids["mine"]) == []
    after = await figures(services)
    assert after.total == before.total and after.engineers == before.engineers
    assert (after.complaints_opened, after.complaints_closed) == (
        before.complaints_opened,
        before.complaints_closed,
    )
    assert sorted(r.rating or 0 for r in after.jobs) == sorted(r.rating or 0 for r in before.jobs)
    # The other customer's data is exactly where it was.
    [theirs] = await _rows(services, Dispatch, Dispatch.id == ids["theirs"])
    assert (theirs.contact_name, theirs.contact_phone) == ("Zhang San", "+8613900000000")
    for needle in OTHERS:
        for table, text in dump.items():
            assert text.count(needle) == after_dump[table].count(needle), (needle, table)
    # No Telegram id of theirs is kept, and nothing queued for them is sent.
    assert await _rows(services, User, User.telegram_id == CUST) == []
    assert await _rows(services, Outbox, Outbox.chat_id == CUST) == []
    assert await _rows(services, Inbox, Inbox.chat_id == CUST) == []
    assert await _rows(services, Outbox, Outbox.id.in_(pending)) == []

    # Idempotent: by phone nobody is left; by job number the job is, with nothing to erase.
    with pytest.raises(privacy.NotFound):
        await erase(services, "+86 138 0013 8000")
    again = await erase(services, mine)
    assert again.nothing_left, again.counts

    # The bot treats the account as a stranger; its old buttons and its number link nothing.
    await say(services, CUST, "/start")
    assert "share your phone number" in (await texts_to(services, CUST))[-1]
    await say(services, CUST, "/myjobs")
    assert mine not in (await texts_to(services, CUST))[-1]
    await press(services, CUST, f"fb:{ids['mine']}:r:5")
    assert [f.rating for f in await _rows(services, Feedback, Feedback.id == feedback.id)] == [2]
    await share_contact(services, CUST, "8613800138000")
    fresh = await user_by_tg(services, CUST)
    [job] = await _rows(services, Dispatch, Dispatch.id == ids["mine"])
    assert fresh is not None and job.customer_user_id != fresh.id


async def test_open_work_is_refused_without_force(services, clock) -> None:
    ids = await history(services, clock)
    # A new problem reported at the follow-up opens a repair job for the same contact.
    async with services.uow() as uow:
        followup = await uow.session.get(FollowUp, ids["followup"])
        assert followup is not None
        followup.status, followup.answer = "asked", None
        await uow.commit()
    await press(services, CUST, f"fu:{ids['followup']}:fix")
    await say(services, CUST, "The chiller is noisy again at night")
    [repair] = await _rows(services, Dispatch, Dispatch.parent_id == ids["mine"])
    assert repair.status not in privacy.FINISHED_JOBS
    with pytest.raises(privacy.OpenWork, match=repair.number) as refused:
        await erase(services, "13800138000")
    assert "--force" in str(refused.value)
    assert await _rows(services, User, User.telegram_id == CUST)  # nothing changed

    done = await erase(services, "13800138000", force=True)
    assert not done.nothing_left
    assert occurrences(await everything(services), [*PERSONAL, "noisy again"]) == {}
    [still] = await _rows(services, Dispatch, Dispatch.id == repair.id)
    assert still.status == repair.status and still.contact_phone == ""
    reminders = await _rows(
        services, Timer, Timer.kind.in_(privacy.CUSTOMER_TIMER_KINDS), Timer.status == "pending"
    )
    assert not [t for t in reminders if t.subject.endswith(f":{ids['mine']}")]


def test_phone_forms_cover_the_ways_a_number_is_written() -> None:
    forms = privacy.phone_forms("+8613800138000")
    for form in ("+8613800138000", "8613800138000", "13800138000", "138 0013 8000"):
        assert form in forms
    assert "+86 138 0013 8000" in forms and "138-0013-8000" in forms
