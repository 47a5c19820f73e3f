"""Customers reach their job through a per-job deep link (or their shared contact).

Persistence for the customer's side: customer user records, which jobs a customer follows,
sign-off records and feedback. The rules (who may link what, what is said) live in
``bot/flows/customer.py``.
"""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers
from sqlalchemy import select

from bot.core.enums import DispatchStatus, Role
from bot.db.models import Dispatch, User
from bot.db.models.customer import Feedback, SignOff
from bot.i18n import locale_for
from bot.services.errors import DomainError
from bot.services.phones import BadPhone, normalise_phone
from bot.services.staff import bot_username, deep_link, hash_code, new_code
from bot.services.uow import UnitOfWork

JOB_LINK_PREFIX = "job_"
MAX_NAME = 200

# Jobs a customer may still be linked to (and follow): everything but the finished ones.
LINKABLE_STATUSES = frozenset(s.value for s in DispatchStatus) - {
    DispatchStatus.CLOSED.value,
    DispatchStatus.CANCELLED.value,
}


async def customer_link(uow: UnitOfWork, dispatch: Dispatch, *, reset: bool = False) -> str:
    """A fresh deep link for the customer of ``dispatch`` (the old one stops working).

    ``reset=True`` also unlinks the Telegram account that follows the job now, so the new
    link can be claimed by another one (a customer who changed accounts).
    """
    code = new_code(JOB_LINK_PREFIX)
    dispatch.customer_link_hash = hash_code(code)
    if reset:
        dispatch.customer_user_id = None
    await uow.session.flush()
    return deep_link(await bot_username(uow), code)


async def dispatch_by_link(uow: UnitOfWork, code: str) -> Dispatch | None:
    """The job whose current customer link is ``code`` (None for unknown or replaced codes)."""
    if not code.startswith(JOB_LINK_PREFIX) or len(code) > 64:
        return None
    digest = hash_code(code)
    dispatch = await uow.session.scalar(
        select(Dispatch).where(Dispatch.customer_link_hash == digest)
    )
    if dispatch is None or not hmac.compare_digest(dispatch.customer_link_hash or "", digest):
        return None
    return dispatch


def phones_of_contact(raw: str, region: str) -> list[str]:
    """What a shared contact's number may be, in E.164, the likeliest (a valid number) first.

    Telegram sends the account's own number in international form, usually without the
    ``+`` (``8613800138000``); a number typed into a contact may be national (``13800138000``).
    """
    text = (raw or "").strip()
    digits = text.replace(" ", "").replace("-", "")
    candidates = [text]
    if digits.isdigit() and not text.startswith(("+", "00")):
        candidates.insert(0, "+" + digits)
    found: list[str] = []
    for candidate in candidates:
        try:
            number = normalise_phone(candidate, region)
        except BadPhone:
            continue
        if number not in found:
            found.append(number)
    return sorted(found, key=lambda n: not phonenumbers.is_valid_number(phonenumbers.parse(n)))


async def jobs_for_phones(uow: UnitOfWork, phones: list[str]) -> list[Dispatch]:
    """Jobs, not finished, whose contact phone is one of ``phones`` (E.164)."""
    if not phones:
        return []
    rows = await uow.session.scalars(
        select(Dispatch)
        .where(Dispatch.contact_phone.in_(phones), Dispatch.status.in_(LINKABLE_STATUSES))
        .order_by(Dispatch.window_start, Dispatch.id)
    )
    return list(rows)


async def jobs_of_customer(uow: UnitOfWork, user_id: int) -> list[Dispatch]:
    """The jobs a customer follows, not finished, soonest first."""
    rows = await uow.session.scalars(
        select(Dispatch)
        .where(Dispatch.customer_user_id == user_id, Dispatch.status.in_(LINKABLE_STATUSES))
        .order_by(Dispatch.window_start, Dispatch.id)
    )
    return list(rows)


async def customer_user(
    uow: UnitOfWork,
    *,
    telegram_id: int,
    chat_id: int,
    name: str,
    language: str | None,
    phone: str | None = None,
) -> User:
    """The customer record of this Telegram account, created on first contact."""
    user = await uow.session.scalar(select(User).where(User.telegram_id == telegram_id))
    if user is None:
        user = User(
            telegram_id=telegram_id,
            chat_id=chat_id,
            role=Role.CUSTOMER.value,
            name=(name.strip() or "-")[:MAX_NAME],
            phone=phone,
            locale=locale_for(language, uow.settings.default_locale),
            active=True,
            on_duty=False,
            created_at=uow.clock.now(),
        )
        uow.session.add(user)
        await uow.session.flush()
        return user
    if user.role != Role.CUSTOMER.value:
        raise DomainError("cust_staff_account")  # a (deactivated) staff account
    user.chat_id = chat_id
    if phone and not user.phone:
        user.phone = phone
    return user


def text_hash(text: str) -> str:
    """The sha256 of the exact text a customer confirmed (hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def pending_signoff(uow: UnitOfWork, dispatch_id: int) -> SignOff | None:
    """The newest work order waiting for the customer's answer in chat."""
    return await uow.session.scalar(
        select(SignOff)
        .where(SignOff.dispatch_id == dispatch_id, SignOff.status == "pending")
        .order_by(SignOff.id.desc())
        .limit(1)
    )


async def confirmed_signoff(uow: UnitOfWork, dispatch_id: int) -> SignOff | None:
    return await uow.session.scalar(
        select(SignOff)
        .where(SignOff.dispatch_id == dispatch_id, SignOff.status == "confirmed")
        .order_by(SignOff.id.desc())
        .limit(1)
    )


async def supersede_pending(uow: UnitOfWork, dispatch_id: int) -> None:
    """Older work orders still waiting for an answer can no longer be confirmed."""
    rows = await uow.session.scalars(
        select(SignOff).where(SignOff.dispatch_id == dispatch_id, SignOff.status == "pending")
    )
    for row in rows:
        row.status = "superseded"


async def feedback_of(uow: UnitOfWork, dispatch_id: int) -> Feedback | None:
    return await uow.session.scalar(select(Feedback).where(Feedback.dispatch_id == dispatch_id))
