"""Staff records, invite codes and binding a Telegram account to a person."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import bindparam, func, select

from bot.core.enums import Role, ServiceType
from bot.db.models import Invite, Organisation, Qualification, User
from bot.i18n import locale_for
from bot.services.errors import FieldError
from bot.services.phones import BadPhone, normalise_phone
from bot.services.roster import on_duty_at
from bot.services.uow import UnitOfWork

INVITE_PREFIX = "inv_"
STAFF_PREFIX = {
    Role.ENGINEER: "E",
    Role.SUPERVISOR: "S",
    Role.MANAGER: "M",
    Role.DISPATCHER: "D",
}


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def new_code(prefix: str) -> str:
    """A deep-link code: 144 random bits, URL-safe, fits Telegram's 64-character start payload."""
    return prefix + secrets.token_urlsafe(18)


@dataclass(frozen=True)
class NewStaff:
    user: User
    code: str
    link: str


async def bot_username(uow: UnitOfWork) -> str:
    """The bot's @username as the running bot recorded it, or the setting."""
    if uow.settings.bot_username:
        return uow.settings.bot_username
    org = await organisation(uow)
    return str(org.settings.get("bot_username") or "your_bot")


async def organisation(uow: UnitOfWork) -> Organisation:
    org = await uow.session.scalar(select(Organisation).order_by(Organisation.id).limit(1))
    if org is None:
        org = Organisation(name="fieldbot", timezone=uow.settings.timezone, settings={})
        uow.session.add(org)
        await uow.session.flush()
    return org


def deep_link(username: str, code: str) -> str:
    return f"https://t.me/{username}?start={code}"


async def add_staff(
    uow: UnitOfWork,
    *,
    role: str,
    name: str,
    phone: str | None = None,
    skills: list[str] | None = None,
) -> NewStaff:
    """Create a staff record and its single-use invite link."""
    errors: list[tuple[str, str]] = []
    try:
        the_role = Role(role)
    except ValueError:
        the_role = Role.CUSTOMER
    if the_role is Role.CUSTOMER:
        errors.append(("role", "must be one of engineer, supervisor, manager, dispatcher"))
    clean_name = (name or "").strip()
    if not clean_name or len(clean_name) > 200:
        errors.append(("name", "must be 1 to 200 characters"))
    clean_phone = None
    if phone:
        try:
            clean_phone = normalise_phone(phone, uow.settings.phone_region)
        except BadPhone:
            errors.append(("phone", f"{phone!r} is not a phone number"))
    clean_skills = sorted({s.strip().lower() for s in (skills or []) if s.strip()})
    known = {t.value for t in ServiceType}
    for skill in clean_skills:
        if skill not in known and not skill.startswith("model:"):
            errors.append(
                ("skills", f"unknown skill {skill!r}; use {', '.join(sorted(known))} or model:NAME")
            )
    if errors:
        raise FieldError(errors)
    now = uow.clock.now()
    prefix = STAFF_PREFIX[the_role]
    count = await uow.session.scalar(
        select(func.count()).select_from(User).where(User.role == role)
    )
    user = User(
        role=the_role.value,
        name=clean_name,
        phone=clean_phone,
        staff_no=f"{prefix}{(count or 0) + 1:04d}",
        created_at=now,
        active=True,
        on_duty=False,
    )
    while await uow.session.scalar(select(User.id).where(User.staff_no == user.staff_no)):
        user.staff_no = f"{prefix}{secrets.randbelow(10**6):06d}"
    user.qualifications = [Qualification(skill=s) for s in clean_skills]
    uow.session.add(user)
    await uow.session.flush()
    code = await new_invite(uow, user)
    return NewStaff(user=user, code=code, link=deep_link(await bot_username(uow), code))


async def new_invite(uow: UnitOfWork, user: User) -> str:
    now = uow.clock.now()
    code = new_code(INVITE_PREFIX)
    uow.session.add(
        Invite(
            code_hash=hash_code(code),
            user_id=user.id,
            created_at=now,
            expires_at=now + uow.settings.invite_ttl,
        )
    )
    await uow.session.flush()
    return code


class Redeem(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    TAKEN = "taken"  # this Telegram account already belongs to someone else


async def redeem_invite(
    uow: UnitOfWork, *, code: str, telegram_id: int, chat_id: int, language: str | None
) -> tuple[Redeem, User | None]:
    """Bind the Telegram account to the invited staff record, once."""
    digest = hash_code(code)
    invite = await uow.session.scalar(select(Invite).where(Invite.code_hash == digest))
    if invite is None or not hmac.compare_digest(invite.code_hash, digest):
        return Redeem.UNKNOWN, None
    if invite.used_at is not None:
        return Redeem.USED, None
    now = uow.clock.now()
    if invite.expires_at <= now:
        return Redeem.EXPIRED, None
    user = await uow.session.get(User, invite.user_id)
    if user is None or not user.active:
        return Redeem.UNKNOWN, None
    other = await uow.session.scalar(select(User).where(User.telegram_id == telegram_id))
    if other is not None and other.id != user.id:
        if other.role != Role.CUSTOMER:
            return Redeem.TAKEN, other
        other.telegram_id = None  # a customer record becomes staff: keep its history, free the id
        await uow.session.flush()
    invite.used_at = now
    invite.used_by = telegram_id
    user.telegram_id = telegram_id
    user.chat_id = chat_id
    if user.locale is None:
        user.locale = locale_for(language, uow.settings.default_locale)
    return Redeem.OK, user


_BY_TELEGRAM = select(User).where(  # built once: every update starts with it
    User.telegram_id == bindparam("telegram_id"), User.active.is_(True)
)


async def user_by_telegram(uow: UnitOfWork, telegram_id: int) -> User | None:
    return await uow.session.scalar(_BY_TELEGRAM, {"telegram_id": telegram_id})


async def staff_with_role(uow: UnitOfWork, *roles: Role) -> list[User]:
    rows = await uow.session.scalars(
        select(User)
        .where(User.role.in_([r.value for r in roles]), User.active.is_(True))
        .order_by(User.id)
    )
    return list(rows)


async def supervisors_on_duty(uow: UnitOfWork) -> list[User]:
    """The supervisor(s) on duty now; all supervisors when nobody is.

    The duty roster decides first (the holiday roster on holiday dates); without a shift
    covering now, whoever holds duty by the last confirmed handover (``User.on_duty``).
    """
    rostered = await on_duty_at(uow, uow.clock.now())
    if rostered:
        return rostered
    supervisors = await staff_with_role(uow, Role.SUPERVISOR)
    on_duty = [s for s in supervisors if s.on_duty]
    return on_duty or supervisors
