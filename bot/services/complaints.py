"""Complaint persistence: lookups, history rows, the business calendar, customer records and
relaying attachments (the rules themselves live in bot/flows/complaints.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from bot.core.enums import Priority, Role, TimerStatus
from bot.db.models import Dispatch, Organisation, Site, Timer, User
from bot.db.models.complaints import Complaint, ComplaintEvent
from bot.i18n import locale_for
from bot.services.staff import organisation
from bot.services.uow import UnitOfWork

NUMBER_PREFIX = "TS"  # 投诉
FILE_METHODS = {
    "photo": ("sendPhoto", "photo"),
    "voice": ("sendVoice", "voice"),
    "document": ("sendDocument", "document"),
}


def subject(complaint_id: int) -> str:
    """The timer subject of a complaint."""
    return f"complaint:{complaint_id}"


async def get(uow: UnitOfWork, complaint_id: int) -> Complaint | None:
    return await uow.session.get(Complaint, complaint_id)


async def by_number(uow: UnitOfWork, number: str) -> Complaint | None:
    return await uow.session.scalar(
        select(Complaint).where(func.upper(Complaint.number) == number.strip().upper())
    )


async def record(
    uow: UnitOfWork, complaint: Complaint, kind: str, *, actor: User | None = None, **data: Any
) -> ComplaintEvent:
    """Append one line to the complaint's history (who, when, what)."""
    now = uow.clock.now()
    complaint.updated_at = now
    event = ComplaintEvent(
        complaint_id=complaint.id,
        at=now,
        actor_id=actor.id if actor else None,
        kind=kind,
        data=data,
    )
    uow.session.add(event)
    await uow.session.flush()
    return event


async def history(uow: UnitOfWork, complaint_id: int) -> list[ComplaintEvent]:
    rows = await uow.session.scalars(
        select(ComplaintEvent)
        .where(ComplaintEvent.complaint_id == complaint_id)
        .order_by(ComplaintEvent.id)
    )
    return list(rows)


async def create(uow: UnitOfWork, **fields: Any) -> Complaint:
    """Store a new complaint and give it its number (TS000001)."""
    now = uow.clock.now()
    complaint = Complaint(number="", created_at=now, updated_at=now, meta={}, **fields)
    uow.session.add(complaint)
    await uow.session.flush()
    complaint.number = f"{NUMBER_PREFIX}{complaint.id:06d}"
    await uow.session.flush()
    return complaint


async def claim_owner(
    uow: UnitOfWork, complaint: Complaint, user_id: int, *, open_statuses: tuple[str, ...]
) -> bool:
    """Atomically make ``user_id`` the owner of an unowned open complaint; False if too late."""
    now = uow.clock.now()
    result = await uow.session.execute(
        update(Complaint)
        .where(
            Complaint.id == complaint.id,
            Complaint.owner_id.is_(None),
            Complaint.status.in_(open_statuses),
        )
        .values(owner_id=user_id, taken_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await uow.session.refresh(complaint)
    return bool(getattr(result, "rowcount", 0))


# ---- people --------------------------------------------------------------------------------


async def customer_for_telegram(
    uow: UnitOfWork, *, telegram_id: int, chat_id: int, name: str, language: str | None
) -> User | None:
    """A customer record for a stranger, bound to their Telegram account (None if the account
    belongs to a deactivated record)."""
    taken = await uow.session.scalar(select(User.id).where(User.telegram_id == telegram_id))
    if taken is not None:
        return None
    user = User(
        telegram_id=telegram_id,
        chat_id=chat_id,
        role=Role.CUSTOMER.value,
        name=(name or "").strip()[:200],
        locale=locale_for(language, uow.settings.default_locale),
        active=True,
        on_duty=False,
        created_at=uow.clock.now(),
    )
    uow.session.add(user)
    await uow.session.flush()
    return user


async def customer_jobs(uow: UnitOfWork, user: User, limit: int = 8) -> list[Dispatch]:
    """The customer's own jobs, newest first."""
    rows = await uow.session.scalars(
        select(Dispatch)
        .where(Dispatch.customer_user_id == user.id)
        .order_by(Dispatch.created_at.desc(), Dispatch.id.desc())
        .limit(limit)
    )
    return list(rows)


async def staff_choices(uow: UnitOfWork, *, exclude: set[int], limit: int = 10) -> list[User]:
    """Active staff reachable in chat (supervisors and managers first)."""
    order = {Role.SUPERVISOR.value: 0, Role.MANAGER.value: 1, Role.DISPATCHER.value: 2}
    rows = await uow.session.scalars(
        select(User)
        .where(
            User.role != Role.CUSTOMER.value,
            User.active.is_(True),
            User.chat_id.is_not(None),
        )
        .order_by(User.id)
    )
    people = [u for u in rows if u.id not in exclude]
    people.sort(key=lambda u: (order.get(u.role, 3), u.id))
    return people[:limit]


async def supervisors_chat(uow: UnitOfWork) -> int | None:
    org: Organisation = await organisation(uow)
    return org.supervisors_chat_id


# ---- lists ---------------------------------------------------------------------------------


async def of_customer(uow: UnitOfWork, user: User, limit: int = 10) -> list[Complaint]:
    rows = await uow.session.scalars(
        select(Complaint)
        .where(Complaint.customer_user_id == user.id)
        .order_by(Complaint.id.desc())
        .limit(limit)
    )
    return list(rows)


async def open_complaints(
    uow: UnitOfWork, statuses: tuple[str, ...], *, involving: int | None = None
) -> list[Complaint]:
    """Open complaints (only those ``involving`` this user as owner or worker, when given)."""
    stmt = select(Complaint).where(Complaint.status.in_(statuses)).order_by(Complaint.id)
    if involving is not None:
        stmt = stmt.where((Complaint.owner_id == involving) | (Complaint.worker_id == involving))
    return list(await uow.session.scalars(stmt))


async def recent_about_engineer(
    uow: UnitOfWork, engineer_id: int, since: datetime, categories: tuple[str, ...]
) -> list[Complaint]:
    rows = await uow.session.scalars(
        select(Complaint)
        .where(
            Complaint.engineer_id == engineer_id,
            Complaint.created_at >= since,
            Complaint.category.in_(categories),
        )
        .order_by(Complaint.id.desc())
    )
    return list(rows)


# ---- files ---------------------------------------------------------------------------------


async def send_file(
    uow: UnitOfWork, user_id: int, kind: str, file_id: str, *, caption: str = ""
) -> bool:
    """Queue a photo or voice note (by Telegram file id) to one user of ours."""
    user = await uow.session.get(User, user_id)
    if user is None or user.chat_id is None or not user.active:
        return False
    method, key = FILE_METHODS.get(kind, ("sendPhoto", "photo"))
    payload: dict[str, Any] = {"chat_id": user.chat_id, key: file_id}
    if caption:
        payload["caption"] = caption[:1000]
    uow.out.queue(user.chat_id, method, payload, priority=Priority.NORMAL)
    return True


async def pending_timers(uow: UnitOfWork, subject_: str, kinds: tuple[str, ...]) -> list[Timer]:
    rows = await uow.session.scalars(
        select(Timer)
        .where(
            Timer.subject == subject_,
            Timer.status == TimerStatus.PENDING.value,
            Timer.kind.in_(kinds),
        )
        .order_by(Timer.due_at, Timer.id)
    )
    return list(rows)


async def site_address(uow: UnitOfWork, dispatch: Dispatch) -> str | None:
    site = await uow.session.get(Site, dispatch.site_id)
    return site.address if site else None
