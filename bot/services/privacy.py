"""One customer's personal data: find it, export it, erase it (issue 8 item 12).

A *subject* is one natural person: the customer records (``users`` rows with the customer
role) bound to their Telegram account(s), the phone number(s) they are known by, the jobs
whose contact they are, the jobs they follow in chat, their complaints, sign-offs, feedback,
follow-ups, conversations, and what went through their chat (inbox and outbox rows).

Erasure keeps the company's history: every job, complaint, sign-off, rating and follow-up
row stays with its number, status, dates and technical content; what identifies the person
(name, phone, address, Telegram id, what they wrote, files they sent) is replaced by a
placeholder, and anything still waiting to reach them is cancelled. The last step is a sweep
over every text and JSON column of every table (``Base.metadata``, so a new table is covered
the day it is added) that replaces the remaining copies (their phone in a message to an
engineer, their comment relayed to a supervisor) in the rows that concern them.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import phonenumbers
from sqlalchemy import JSON, Float, LargeBinary, String, Table, and_, delete, func, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy import update as sql_update
from sqlalchemy.sql.elements import ColumnElement

from bot.core.enums import DispatchStatus, OutboxStatus, Role, TimerStatus
from bot.db.models import (
    Base,
    Conversation,
    Customer,
    Dispatch,
    DispatchEvent,
    Inbox,
    Outbox,
    Site,
    Timer,
    User,
)
from bot.db.models.complaints import Complaint, ComplaintEvent
from bot.db.models.customer import Feedback, SignOff, WorkOrderPdf
from bot.db.models.followups import FollowUp
from bot.db.models.supervision import MajorFault
from bot.services.customers import phones_of_contact
from bot.services.phones import mask_phone
from bot.services.uow import UnitOfWork

ERASED = "[erased]"
ERASED_PHONE = "[phone erased]"
ERASED_ADDRESS = "[address erased]"
JOB_NUMBER = re.compile(r"^[A-Za-z]{2}\d{6,}$")

# Jobs that are still running: erasing their contact would leave the engineer without one.
FINISHED_JOBS = frozenset(
    {DispatchStatus.SIGNED_OFF.value, DispatchStatus.CLOSED.value, DispatchStatus.CANCELLED.value}
)
# Complaints whose clocks still run (resolved ones only wait for the call-back).
OPEN_COMPLAINTS = frozenset({"new", "open", "waiting"})
UNANSWERED_FOLLOWUPS = frozenset({"scheduled", "asked", "unreachable"})
FOLLOWUP_CANCELLED = "cancelled"
# Timers whose only purpose is to write to the customer.
CUSTOMER_TIMER_KINDS = ("signoff_reminder", "followup_ask", "cmp_callback")
# Complaint history lines whose text is the customer's, or was written to them.
CUSTOMER_TEXT_EVENTS = frozenset({"opened", "customer_message", "owner_message", "owner_question"})
TEXT_KEYS = ("text", "description", "comment", "reason", "note", "caption")
FILE_KEYS = ("file_id", "photo", "voice", "document", "photo_file_id")
COORDINATE_DECIMALS = 1  # about 10 km: the region stays, the house does not


class PrivacyError(Exception):
    """Something the operator must read: no such customer, ambiguous, work still open."""


class NotFound(PrivacyError):
    pass


class Ambiguous(PrivacyError):
    def __init__(self, message: str, options: list[str]) -> None:
        super().__init__(message + "\n" + "\n".join(f"  {o}" for o in options))
        self.options = options


class OpenWork(PrivacyError):
    def __init__(self, jobs: list[str], complaints: list[str]) -> None:
        parts = []
        if jobs:
            parts.append("open jobs " + ", ".join(jobs))
        if complaints:
            parts.append("open complaints " + ", ".join(complaints))
        super().__init__(
            "this customer has "
            + " and ".join(parts)
            + ": finish or cancel them first, or erase anyway with --force (the engineer and "
            "staff then work on without the customer's name, phone and address)"
        )
        self.jobs = jobs
        self.complaints = complaints


@dataclass
class Subject:
    """Everything that identifies one person, and the rows that are theirs."""

    identified_by: str
    phones: set[str] = field(default_factory=set)  # E.164
    user_ids: set[int] = field(default_factory=set)
    chat_ids: set[int] = field(default_factory=set)  # Telegram user and chat ids
    contact_jobs: set[int] = field(default_factory=set)  # they are the job's contact
    followed_jobs: set[int] = field(default_factory=set)  # they follow it in chat
    complaints: set[int] = field(default_factory=set)

    @property
    def jobs(self) -> set[int]:
        return self.contact_jobs | self.followed_jobs

    def label(self) -> str:
        if self.user_ids:
            return f"erased customer #{min(self.user_ids)}"
        if self.contact_jobs:
            return f"erased customer (job #{min(self.contact_jobs)})"
        return "erased customer"


# ---- identifying the person ----------------------------------------------------------------


def _phone(raw: str, region: str) -> str | None:
    """In E.164 the way the bot reads a shared contact (a valid number first), or None."""
    found = phones_of_contact(raw, region)
    return found[0] if found else None


async def _customer_by_telegram(uow: UnitOfWork, telegram_id: int) -> User | None:
    user = await uow.session.scalar(
        select(User).where(or_(User.telegram_id == telegram_id, User.chat_id == telegram_id))
    )
    if user is not None and user.role != Role.CUSTOMER.value:
        raise PrivacyError(
            f"Telegram id {telegram_id} belongs to a staff member ({user.role} "
            f"{user.staff_no or user.id}); this command is for customers"
        )
    return user


async def _phone_known(uow: UnitOfWork, phone: str) -> bool:
    found = await uow.session.scalar(
        select(func.count()).select_from(Dispatch).where(Dispatch.contact_phone == phone)
    )
    if found:
        return True
    for stmt in (
        select(func.count())
        .select_from(User)
        .where(User.phone == phone, User.role == Role.CUSTOMER.value),
        select(func.count()).select_from(Complaint).where(Complaint.contact_phone == phone),
    ):
        if await uow.session.scalar(stmt):
            return True
    return False


async def identify(
    uow: UnitOfWork,
    who: str | None = None,
    *,
    phone: str | None = None,
    job: str | None = None,
    telegram_id: int | None = None,
) -> Subject:
    """The person named by a phone number, a job number (FB000123) or a Telegram user id.

    ``who`` guesses which one it is; a bare number that is both a known phone and a known
    Telegram id is ambiguous and the error lists both ways to say it.
    """
    region = uow.settings.phone_region
    given = [x for x in (who, phone, job, telegram_id) if x not in (None, "")]
    if len(given) != 1:
        raise PrivacyError("name the customer once: a phone number, a job number or a Telegram id")
    if who is not None:
        text = who.strip()
        if JOB_NUMBER.match(text):
            job = text
        elif text.isdigit():
            as_phone = _phone(text, region)
            by_phone = as_phone is not None and await _phone_known(uow, as_phone)
            by_tg = await _customer_by_telegram(uow, int(text)) if len(text) <= 15 else None
            if by_phone and by_tg is not None and by_tg.phone != as_phone:
                raise Ambiguous(
                    f"{text!r} is both a phone number and a Telegram id we know; say which:",
                    [
                        f"--phone {text}    (the phone number {as_phone})",
                        f"--telegram-id {text}    (customer record #{by_tg.id})",
                    ],
                )
            if by_tg is not None:
                telegram_id = int(text)
            else:
                phone = text
        else:
            phone = text
    subject = Subject(identified_by="")
    if telegram_id is not None:
        user = await _customer_by_telegram(uow, telegram_id)
        if user is None:
            raise NotFound(f"no customer with Telegram id {telegram_id}")
        subject.identified_by = f"Telegram id {telegram_id}"
        subject.user_ids.add(user.id)
    elif job is not None:
        dispatch = await uow.session.scalar(
            select(Dispatch).where(func.upper(Dispatch.number) == job.strip().upper())
        )
        if dispatch is None:
            raise NotFound(f"no job {job}")
        subject.identified_by = f"job {dispatch.number}"
        if dispatch.contact_phone:
            subject.phones.add(dispatch.contact_phone)
        if dispatch.customer_user_id is not None:
            follower = await uow.session.get(User, dispatch.customer_user_id)
            if follower is not None and follower.phone and follower.phone != dispatch.contact_phone:
                raise Ambiguous(
                    f"job {dispatch.number} has a contact and is followed in chat by another "
                    "person; say which one:",
                    [
                        f"--phone {dispatch.contact_phone}    (the job's contact)",
                        f"--telegram-id {follower.telegram_id}    (who follows it in chat)"
                        if follower.telegram_id
                        else f"--phone {follower.phone}    (who follows it in chat)",
                    ],
                )
            if follower is not None:
                subject.user_ids.add(follower.id)
        if not subject.phones and not subject.user_ids:
            subject.contact_jobs.add(dispatch.id)  # already erased: only the job is left
    else:
        assert phone is not None
        normal = _phone(phone, region)
        if normal is None:
            raise PrivacyError(f"{phone!r} is not a phone number")
        subject.identified_by = f"phone {mask_phone(normal)}"
        subject.phones.add(normal)
    await _expand(uow, subject)
    if not (subject.user_ids or subject.contact_jobs or subject.complaints):
        raise NotFound(f"no customer data found for {subject.identified_by}")
    return subject


async def _expand(uow: UnitOfWork, subject: Subject) -> None:
    """Follow phones ↔ customer records until nothing new turns up; then collect their rows."""
    for _ in range(5):
        before = (len(subject.phones), len(subject.user_ids))
        if subject.phones:
            rows = await uow.session.scalars(
                select(User.id).where(
                    User.phone.in_(subject.phones), User.role == Role.CUSTOMER.value
                )
            )
            subject.user_ids.update(rows)
        if subject.user_ids:
            for user in await uow.session.scalars(
                select(User).where(User.id.in_(subject.user_ids))
            ):
                if user.phone:
                    subject.phones.add(user.phone)
                subject.chat_ids.update(x for x in (user.telegram_id, user.chat_id) if x)
        if (len(subject.phones), len(subject.user_ids)) == before:
            break
    if subject.phones:
        subject.contact_jobs.update(
            await uow.session.scalars(
                select(Dispatch.id).where(Dispatch.contact_phone.in_(subject.phones))
            )
        )
    if subject.user_ids:
        subject.followed_jobs.update(
            await uow.session.scalars(
                select(Dispatch.id).where(Dispatch.customer_user_id.in_(subject.user_ids))
            )
        )
    conditions: list[ColumnElement[bool]] = []
    if subject.user_ids:
        conditions.append(Complaint.customer_user_id.in_(subject.user_ids))
    if subject.phones:
        conditions.append(Complaint.contact_phone.in_(subject.phones))
    if conditions:
        subject.complaints.update(
            await uow.session.scalars(select(Complaint.id).where(or_(*conditions)))
        )


# ---- reading ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def row_dict(row: Any, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every column of an ORM row as JSON-ready values (bytes as base64)."""
    left_out = set(skip)
    return {
        c.key: _plain(getattr(row, c.key)) for c in row.__table__.columns if c.key not in left_out
    }


async def _rows(uow: UnitOfWork, model: Any, *conditions: ColumnElement[bool]) -> list[Any]:
    if not conditions:
        return []
    stmt = select(model).where(or_(*conditions)).order_by(*model.__table__.primary_key.columns)
    return list(await uow.session.scalars(stmt))


def _in(column: Any, ids: set[int]) -> list[ColumnElement[bool]]:
    return [column.in_(ids)] if ids else []


async def _signoffs(uow: UnitOfWork, subject: Subject) -> list[SignOff]:
    return await _rows(
        uow,
        SignOff,
        *_in(SignOff.customer_user_id, subject.user_ids),
        *(
            [
                and_(
                    SignOff.customer_user_id.is_(None),
                    SignOff.dispatch_id.in_(subject.contact_jobs),
                )
            ]
            if subject.contact_jobs
            else []
        ),
    )


async def _followups(uow: UnitOfWork, subject: Subject) -> list[FollowUp]:
    return await _rows(
        uow,
        FollowUp,
        *_in(FollowUp.user_id, subject.user_ids),
        *_in(FollowUp.dispatch_id, subject.contact_jobs),
    )


async def export(uow: UnitOfWork, subject: Subject) -> dict[str, Any]:
    """Everything held about the person, as one JSON-ready document."""
    users = await _rows(uow, User, *_in(User.id, subject.user_ids))
    jobs = await _rows(uow, Dispatch, *_in(Dispatch.id, subject.jobs))
    out_jobs = []
    for job in jobs:
        item = row_dict(job, skip=("customer_link_hash", "import_key"))
        if job.id not in subject.contact_jobs:
            # A job they follow whose contact is someone else: not theirs to read.
            item["contact_name"] = item["contact_phone"] = None
        site = await uow.session.get(Site, job.site_id)
        unit = await uow.session.get(Customer, job.customer_id)
        engineer = await uow.session.get(User, job.engineer_id) if job.engineer_id else None
        item["site"] = row_dict(site) if site and job.id in subject.contact_jobs else None
        item["customer_unit"] = unit.name if unit else None
        item["engineer"] = (
            {"name": engineer.name, "staff_no": engineer.staff_no} if engineer else None
        )
        events = await _rows(uow, DispatchEvent, DispatchEvent.dispatch_id == job.id)
        if job.id in subject.contact_jobs:
            item["history"] = [row_dict(e, skip=("actor_id",)) for e in events]
        else:  # only what they were told of someone else's job
            item["history"] = [
                {"at": _plain(e.at), "kind": e.kind, "to_status": e.to_status} for e in events
            ]
        out_jobs.append(item)
    signoffs = await _signoffs(uow, subject)
    pdfs = await _rows(uow, WorkOrderPdf, *_in(WorkOrderPdf.signoff_id, {s.id for s in signoffs}))
    complaints = await _rows(uow, Complaint, *_in(Complaint.id, subject.complaints))
    out_complaints = []
    for complaint in complaints:
        item = row_dict(complaint)
        events = await _rows(uow, ComplaintEvent, ComplaintEvent.complaint_id == complaint.id)
        item["history"] = [row_dict(e) for e in events]
        out_complaints.append(item)
    return {
        "exported_at": uow.clock.now().isoformat(),
        "identified_by": subject.identified_by,
        "phones": sorted(subject.phones),
        "telegram_ids": sorted(subject.chat_ids),
        "customer_records": [row_dict(u) for u in users],
        "jobs": out_jobs,
        "signoffs": [row_dict(s) for s in signoffs],
        "work_order_pdfs": [row_dict(p) for p in pdfs],
        "feedback": [
            row_dict(f)
            for f in await _rows(uow, Feedback, *_in(Feedback.customer_user_id, subject.user_ids))
        ],
        "complaints": out_complaints,
        "followups": [row_dict(f) for f in await _followups(uow, subject)],
        "conversations": [
            row_dict(c)
            for c in await _rows(uow, Conversation, *_in(Conversation.user_id, subject.user_ids))
        ],
        "inbox": [
            row_dict(r) for r in await _rows(uow, Inbox, *_in(Inbox.chat_id, subject.chat_ids))
        ],
        "outbox": [
            row_dict(r) for r in await _rows(uow, Outbox, *_in(Outbox.chat_id, subject.chat_ids))
        ],
    }


# ---- what to look for in text ---------------------------------------------------------------


def phone_forms(phone: str) -> list[str]:
    """The ways a number is written (E.164, digits, national, spaced): each one is erased."""
    forms = {phone, phone.lstrip("+")}
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return sorted(forms, key=len, reverse=True)
    forms.add(str(number.national_number))
    for style in (
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.NATIONAL,
    ):
        written = phonenumbers.format_number(number, style)
        forms.update({written, written.replace(" ", "-"), written.replace(" ", "")})
    return sorted((f for f in forms if sum(ch.isdigit() for ch in f) >= 7), key=len, reverse=True)


def _has_cjk(text: str) -> bool:
    return any(ord(ch) > 0x2E80 for ch in text)


def _name_ok(name: str) -> bool:
    text = name.strip()
    if text.startswith("erased customer") or text in (ERASED, "-"):
        return False
    return len(text) >= 2 if _has_cjk(text) else len(text) >= 3


def _free_text_ok(text: str) -> bool:
    """Long enough to be theirs and not a word of our own vocabulary ("private", "done")."""
    body = text.strip()
    if len(body) < 6 or body == ERASED:
        return False
    return any(ch.isspace() for ch in body) or _has_cjk(body) or len(body) >= 16


@dataclass
class Scrubber:
    """Replaces a person's identifiers and words in text, JSON and PDF-free values."""

    label: str
    phones: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)  # job and complaint numbers
    files: list[str] = field(default_factory=list)  # Telegram file ids of what they sent

    def __post_init__(self) -> None:
        self._rules: list[tuple[re.Pattern[str], str]] = []
        self._files: frozenset[str] = frozenset()

    def compile(self) -> Scrubber:
        rules: list[tuple[str, str, int]] = []

        def add(needle: str, replacement: str, *, words: bool, flags: int = 0) -> None:
            for form in {needle, html.escape(needle, quote=False), html.escape(needle)}:
                pattern = re.escape(form)
                if words and not _has_cjk(form):
                    pattern = rf"(?<!\w){pattern}(?!\w)"
                rules.append((pattern, replacement, flags))

        for text in sorted(set(self.texts), key=len, reverse=True):
            add(text, ERASED, words=False)
        for address in sorted(set(self.addresses), key=len, reverse=True):
            add(address, ERASED_ADDRESS, words=True, flags=re.IGNORECASE)
        for phone in self.phones:
            rules.append((rf"(?<!\d){re.escape(phone)}(?!\d)", ERASED_PHONE, 0))
        for name in sorted(set(self.names), key=len, reverse=True):
            add(name, self.label, words=True, flags=re.IGNORECASE)
        self._files = frozenset(f for f in self.files if f)
        seen: set[tuple[str, int]] = set()
        for pattern, replacement, flags in rules:
            if (pattern, flags) not in seen:
                seen.add((pattern, flags))
                self._rules.append((re.compile(pattern, flags), replacement))
        return self

    def text(self, value: str) -> str:
        for pattern, replacement in self._rules:
            if pattern.search(value):
                value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return ERASED if value in self._files else self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            out = {k: self.value(v) for k, v in value.items() if k != "document_b64"}
            if isinstance(value.get("document_b64"), str):
                out.update(self._document(value["document_b64"]))
            return out
        return value

    def _document(self, encoded: str) -> dict[str, Any]:
        """A file queued as base64: text (a CSV) is scrubbed; anything else (a PDF, whose
        text is compressed) cannot be and is dropped."""
        try:
            text = base64.b64decode(encoded).decode("utf-8")
        except ValueError:
            return {"document_erased": True}
        return {"document_b64": base64.b64encode(self.text(text).encode()).decode("ascii")}

    def mentions(self, value: Any) -> bool:
        """Does the value name one of their jobs or complaints, or one of their numbers?"""
        dumped = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for marker in self.markers:
            if re.search(rf"(?<![A-Za-z0-9]){re.escape(marker)}(?!\d)", dumped):
                return True
        if any(f in dumped for f in self._files):
            return True
        return any(re.search(rf"(?<!\d){re.escape(p)}(?!\d)", dumped) for p in self.phones)


def _texts_of_update(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Free texts and names in one raw Telegram update."""
    texts: list[str] = []
    names: list[str] = []
    for key in ("message", "edited_message"):
        message = payload.get(key) or {}
        for part in ("text", "caption"):
            if isinstance(message.get(part), str):
                texts.append(message[part])
        for person in (message.get("from") or {}, message.get("contact") or {}):
            names.extend(
                str(person.get(k)) for k in ("first_name", "last_name", "username") if person.get(k)
            )
            first, last = person.get("first_name"), person.get("last_name")
            if first and last:
                names.append(f"{first} {last}")
    query = payload.get("callback_query") or {}
    person = query.get("from") or {}
    names.extend(
        str(person.get(k)) for k in ("first_name", "last_name", "username") if person.get(k)
    )
    return texts, names


# ---- erasing -------------------------------------------------------------------------------


@dataclass
class Erasure:
    """What one erasure changed, table by table (rows changed, not rows looked at)."""

    label: str
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] = self.counts.get(what, 0) + n

    @property
    def nothing_left(self) -> bool:
        return not self.counts


def _set(row: Any, erasure: Erasure, what: str, **values: Any) -> None:
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    if changed:
        erasure.add(what)


def _coarse(value: float | None) -> float | None:
    return None if value is None else round(value, COORDINATE_DECIMALS)


def open_work(jobs: list[Dispatch], complaints: list[Complaint]) -> tuple[list[str], list[str]]:
    return (
        [j.number for j in jobs if j.status not in FINISHED_JOBS],
        [c.number for c in complaints if c.status in OPEN_COMPLAINTS],
    )


async def erase(uow: UnitOfWork, subject: Subject, *, force: bool = False) -> Erasure:
    """Replace the person's data by placeholders, in the caller's transaction (not committed).

    Refuses (OpenWork, after which the caller must not commit) while one of their jobs or
    complaints is still open, unless ``force``.
    """
    label = subject.label()
    erasure = Erasure(label)
    now = uow.clock.now()
    users = await _rows(uow, User, *_in(User.id, subject.user_ids))
    jobs = await _rows(uow, Dispatch, *_in(Dispatch.id, subject.jobs))
    complaints = await _rows(uow, Complaint, *_in(Complaint.id, subject.complaints))
    contact_jobs = [j for j in jobs if j.id in subject.contact_jobs]
    open_jobs, open_complaints = open_work(jobs, complaints)

    # What to look for elsewhere, gathered before anything is overwritten.
    scrub = Scrubber(label=label)
    for phone in subject.phones:
        scrub.phones.extend(phone_forms(phone))
    scrub.names.extend(u.name for u in users if _name_ok(u.name))
    scrub.names.extend(j.contact_name for j in contact_jobs if _name_ok(j.contact_name))
    scrub.names.extend(c.contact_name for c in complaints if _name_ok(c.contact_name))
    scrub.addresses.extend(c.address for c in complaints if c.address and len(c.address) >= 6)
    scrub.markers.extend(j.number for j in jobs)
    scrub.markers.extend(c.number for c in complaints)

    # Customer units and sites that serve nobody else go with the person.
    sole_units: set[int] = set()
    sole_sites: set[int] = set()
    for unit_id in {j.customer_id for j in contact_jobs}:
        others = await uow.session.scalar(
            select(func.count())
            .select_from(Dispatch)
            .where(Dispatch.customer_id == unit_id, Dispatch.id.not_in(subject.contact_jobs))
        )
        if not others:
            sole_units.add(unit_id)
    for site_id in {j.site_id for j in contact_jobs}:
        others = await uow.session.scalar(
            select(func.count())
            .select_from(Dispatch)
            .where(Dispatch.site_id == site_id, Dispatch.id.not_in(subject.contact_jobs))
        )
        if not others:
            sole_sites.add(site_id)
    units = await _rows(uow, Customer, *_in(Customer.id, sole_units))
    sites = await _rows(uow, Site, *_in(Site.id, sole_sites))
    scrub.names.extend(u.name for u in units if _name_ok(u.name))
    scrub.addresses.extend(
        s.address for s in sites if len(s.address) >= 6 and s.address != ERASED_ADDRESS
    )

    # Their own words: complaint texts, comments, answers, reasons, messages.
    for complaint in complaints:
        scrub.texts.extend(p for p in complaint.description.split("\n\n") if _free_text_ok(p))
    complaint_events = await _rows(
        uow, ComplaintEvent, *_in(ComplaintEvent.complaint_id, subject.complaints)
    )
    for event in complaint_events:
        if event.kind in CUSTOMER_TEXT_EVENTS or event.actor_id in subject.user_ids:
            scrub.texts.extend(
                str(event.data[k]) for k in TEXT_KEYS if _free_text_ok(str(event.data.get(k) or ""))
            )
    feedback = await _rows(uow, Feedback, *_in(Feedback.customer_user_id, subject.user_ids))
    scrub.texts.extend(f.comment for f in feedback if f.comment and _free_text_ok(f.comment))
    followups = await _followups(uow, subject)
    scrub.texts.extend(f.note for f in followups if f.note and _free_text_ok(f.note))
    signoffs = await _signoffs(uow, subject)
    scrub.texts.extend(s.reason for s in signoffs if s.reason and _free_text_ok(s.reason))
    inbox = await _rows(uow, Inbox, *_in(Inbox.chat_id, subject.chat_ids))
    for row in inbox:
        texts, names = _texts_of_update(row.payload or {})
        scrub.texts.extend(t for t in texts if _free_text_ok(t))
        scrub.names.extend(n for n in names if _name_ok(n))
    for complaint in complaints:
        scrub.files.extend(
            str(a["file_id"])
            for a in complaint.attachments or []
            if isinstance(a, dict) and a.get("file_id")
        )
    for event in complaint_events:
        if event.kind in CUSTOMER_TEXT_EVENTS or event.actor_id in subject.user_ids:
            scrub.files.extend(str(event.data[k]) for k in FILE_KEYS if event.data.get(k))
    scrub.files.extend(s.photo_file_id for s in signoffs if s.photo_file_id)
    scrub.compile()

    # The person: unlinked from Telegram, so the bot greets them as a stranger next time.
    for user in users:
        _set(
            user,
            erasure,
            "customer records",
            name=label,
            phone=None,
            telegram_id=None,
            chat_id=None,
            locale=None,
            timezone=None,
            active=False,
        )
    # Jobs: kept with their numbers, statuses, dates and report; the contact goes.
    for job in contact_jobs:
        arrival = dict(job.arrival or {})
        for key in ("latitude", "longitude"):
            if arrival.get(key) is not None:
                arrival[key] = _coarse(arrival[key])
        if arrival.get("typed_address"):
            arrival["typed_address"] = ERASED_ADDRESS
        _set(
            job,
            erasure,
            "jobs (contact)",
            contact_name=label,
            contact_phone="",
            customer_link_hash=None,
            arrival=arrival,
        )
    if contact_jobs:
        for event in await _rows(
            uow, DispatchEvent, DispatchEvent.dispatch_id.in_(subject.contact_jobs)
        ):
            data = dict(event.data or {})
            if data.get("typed_address"):
                data["typed_address"] = ERASED_ADDRESS
            _set(
                event,
                erasure,
                "job history lines (check-in place)",
                latitude=_coarse(event.latitude),
                longitude=_coarse(event.longitude),
                data=data,
            )
    for unit in units:
        _set(unit, erasure, "customer units", name=label)
    for site in sites:
        _set(
            site,
            erasure,
            "sites",
            address=ERASED_ADDRESS,
            latitude=_coarse(site.latitude),
            longitude=_coarse(site.longitude),
        )
    # Sign-offs: kept (status, time, hash of what was confirmed); who and why go.
    for signoff in signoffs:
        _set(
            signoff,
            erasure,
            "sign-offs",
            telegram_id=None,
            reason=ERASED if signoff.reason else signoff.reason,
            photo_file_id=None,
        )
    if signoffs:
        result = await uow.session.execute(
            delete(WorkOrderPdf).where(WorkOrderPdf.signoff_id.in_([s.id for s in signoffs]))
        )
        erasure.add("work-order PDFs deleted", int(getattr(result, "rowcount", 0) or 0))
    for item in feedback:
        _set(item, erasure, "feedback comments", comment=None)
    # Complaints: number, category, status, clocks and rating stay.
    for complaint in complaints:
        attachments = [
            {"kind": a.get("kind"), "at": a.get("at"), "erased": True}
            if isinstance(a, dict)
            else {"erased": True}
            for a in complaint.attachments or []
        ]
        _set(
            complaint,
            erasure,
            "complaints",
            contact_name=label,
            contact_phone=None,
            address=None,
            description=ERASED if complaint.description else complaint.description,
            attachments=attachments,
        )
    for event in complaint_events:
        if event.kind in CUSTOMER_TEXT_EVENTS or event.actor_id in subject.user_ids:
            data = dict(event.data or {})
            for key in TEXT_KEYS:
                if data.get(key):
                    data[key] = ERASED
            for key in FILE_KEYS:
                if data.get(key):
                    data[key] = None
            _set(event, erasure, "complaint messages", data=data)
    # Follow-ups: answers kept as counted; their words go; unanswered ones are cancelled.
    for followup in followups:
        values: dict[str, Any] = {"note": ERASED if followup.note else followup.note}
        if followup.status in UNANSWERED_FOLLOWUPS:
            values["status"] = FOLLOWUP_CANCELLED
        _set(followup, erasure, "follow-ups", **values)
    # Nothing more may be sent to them.
    subjects = [f"signoff:{j}" for j in subject.jobs] + [f"followup:{j}" for j in subject.jobs]
    subjects += [f"complaint:{c}" for c in subject.complaints]
    if subjects:
        result = await uow.session.execute(
            sql_update(Timer)
            .where(
                Timer.subject.in_(subjects),
                Timer.kind.in_(CUSTOMER_TIMER_KINDS),
                Timer.status == TimerStatus.PENDING.value,
            )
            .values(status=TimerStatus.CANCELLED.value)
        )
        erasure.add("reminders cancelled", int(getattr(result, "rowcount", 0) or 0))
    if subject.user_ids:
        result = await uow.session.execute(
            delete(Conversation).where(Conversation.user_id.in_(subject.user_ids))
        )
        erasure.add("conversations deleted", int(getattr(result, "rowcount", 0) or 0))
    if subject.chat_ids:
        result = await uow.session.execute(
            delete(Outbox).where(
                Outbox.chat_id.in_(subject.chat_ids),
                Outbox.status == OutboxStatus.PENDING.value,
            )
        )
        erasure.add("messages to them cancelled", int(getattr(result, "rowcount", 0) or 0))
        for out in await _rows(uow, Outbox, Outbox.chat_id.in_(subject.chat_ids)):
            _set(
                out,
                erasure,
                "messages sent to them",
                chat_id=0,
                payload={"erased": True},
                error=None,
            )
        for row in inbox:
            _set(
                row,
                erasure,
                "updates from their chat",
                chat_id=None,
                payload={"update_id": row.update_id, "erased": True},
                status="done" if row.status == "pending" else row.status,
                done_at=row.done_at or now,
                error=None,
            )
    await uow.session.flush()
    await _sweep(uow, subject, scrub, sole_units, erasure)
    if (open_jobs or open_complaints) and not force and not erasure.nothing_left:
        # Checked last, so that a customer already erased reads "nothing left" even while
        # their old job is still open; the caller rolls the unit of work back.
        raise OpenWork(open_jobs, open_complaints)
    return erasure


async def _sweep(
    uow: UnitOfWork, subject: Subject, scrub: Scrubber, sole_units: set[int], erasure: Erasure
) -> None:
    """Every text and JSON column of every table: replace their copies in the rows that
    concern them (by key, or because the row names one of their jobs, complaints or numbers).
    """
    faults = set(
        await uow.session.scalars(
            select(MajorFault.id).where(
                or_(
                    *_in(MajorFault.dispatch_id, subject.jobs),
                    *_in(MajorFault.customer_id, sole_units),
                    MajorFault.id < 0,
                )
            )
        )
    )
    by_key: dict[str, list[tuple[str, set[int]]]] = {
        "users": [("id", subject.user_ids)],
        "dispatches": [("id", subject.jobs)],
        "dispatch_events": [("dispatch_id", subject.jobs)],
        "offers": [("dispatch_id", subject.jobs)],
        "signoffs": [("dispatch_id", subject.jobs)],
        "feedback": [("dispatch_id", subject.jobs)],
        "followups": [("dispatch_id", subject.jobs), ("user_id", subject.user_ids)],
        "complaints": [("id", subject.complaints), ("dispatch_id", subject.jobs)],
        "complaint_events": [("complaint_id", subject.complaints)],
        "major_faults": [("id", faults)],
        "major_fault_events": [("fault_id", faults)],
        "customers": [("id", sole_units)],
        "conversations": [("user_id", subject.user_ids)],
    }
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if _sweepable(c.type)]
        if not columns:
            continue
        related = [table.c[name].in_(ids) for name, ids in by_key.get(table.name, []) if ids]
        candidates = related + _mentioning(table, columns, scrub)
        if not candidates:
            continue
        keys = list(table.primary_key.columns)
        links = [table.c[name] for name, _ in by_key.get(table.name, [])]
        if "status" in table.c:
            links.append(table.c.status)
        picked = {c.name: c for c in [*keys, *links, *columns]}
        stmt = select(*picked.values()).where(or_(*candidates))
        for row in (await uow.session.execute(stmt)).all():
            values = row._mapping
            direct = any(
                values.get(name) in ids
                for name, ids in by_key.get(table.name, [])
                if name in values
            )
            changes = {}
            for column in columns:
                old = values[column.name]
                if old is None:
                    continue
                if not direct and not scrub.mentions(old):
                    continue
                new = scrub.value(old)
                if new != old:
                    changes[column.name] = new
            if not changes:
                continue
            payload = changes.get("payload")
            if (
                table.name == "outbox"
                and isinstance(payload, dict)
                and payload.get("document_erased")
                and values.get("status") == OutboxStatus.PENDING.value
            ):
                # A file about them not sent yet: it cannot be cleaned, so it is not sent.
                await uow.session.execute(delete(table).where(*(k == values[k.name] for k in keys)))
                erasure.add("files about them not sent")
                continue
            if changes:
                await uow.session.execute(
                    sql_update(table).where(*(k == values[k.name] for k in keys)).values(**changes)
                )
                erasure.add(f"copies replaced in {table.name}")
    # The ORM objects loaded above must not write their stale values back.
    uow.session.expire_all()


def _sweepable(kind: Any) -> bool:
    if isinstance(kind, JSON):
        return True
    if isinstance(kind, LargeBinary | Float):
        return False
    return isinstance(kind, String) and (kind.length is None or kind.length >= 100)


def _mentioning(table: Table, columns: list[Any], scrub: Scrubber) -> list[ColumnElement[bool]]:
    """SQL pre-filter: rows whose text contains a job or complaint number or a phone form
    (all ASCII, so JSON's escaping does not hide them)."""
    needles = [*scrub.markers, *scrub.phones, *scrub.files]
    if not needles:
        return []
    conditions: list[ColumnElement[bool]] = []
    for column in columns:
        as_text = sql_cast(column, String) if isinstance(column.type, JSON) else column
        conditions.extend(as_text.contains(needle, autoescape=True) for needle in needles)
    return conditions


__all__ = [
    "ERASED",
    "Ambiguous",
    "Erasure",
    "NotFound",
    "OpenWork",
    "PrivacyError",
    "Scrubber",
    "Subject",
    "erase",
    "export",
    "identify",
    "phone_forms",
    "row_dict",
]
