"""SQLAlchemy models: the whole state of fieldbot lives here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.db.types import BigId, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Organisation(Base):
    """The service company: its name, time zone and calendar settings."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    supervisors_chat_id: Mapped[int | None] = mapped_column(BigInteger)


class User(Base):
    """A person: staff member (with a role) or customer contact, bound to Telegram or not."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    staff_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    locale: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]

    qualifications: Mapped[list[Qualification]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="raise_on_sql"
    )  # not loaded with every User (each update loads one): query Qualification instead


class Qualification(Base):
    """A skill or certificate an engineer holds (a service type or an equipment family)."""

    __tablename__ = "qualifications"
    __table_args__ = (UniqueConstraint("user_id", "skill"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    skill: Mapped[str] = mapped_column(String(64))
    user: Mapped[User] = relationship(back_populates="qualifications")


class Invite(Base):
    """A single-use deep-link code that binds a Telegram account to a staff record."""

    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[int | None] = mapped_column(BigInteger)


class Customer(Base):
    """The customer unit (company or household) that is served."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    account_owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


class Site(Base):
    """A place where equipment stands and engineers go."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    address: Mapped[str] = mapped_column(String(500))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str | None] = mapped_column(String(64))


class Equipment(Base):
    """One unit of equipment at a site, known by model and serial number."""

    __tablename__ = "equipment"
    __table_args__ = (UniqueConstraint("model", "serial"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    serial: Mapped[str] = mapped_column(String(100))
    delivered_at: Mapped[datetime | None]


class Dispatch(Base):
    """A job (派单): what to do, where, for whom, when, and who does it."""

    __tablename__ = "dispatches"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    contact_name: Mapped[str] = mapped_column(String(200))
    contact_phone: Mapped[str] = mapped_column(String(32), index=True)
    equipment_model: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    serials: Mapped[list[Any]] = mapped_column(default=list)
    service_type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), index=True)
    requested_engineer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    customer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dispatches.id"))
    source: Mapped[str] = mapped_column(String(16))
    import_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    customer_link_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    eta: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    contacted_at: Mapped[datetime | None]
    arrived_at: Mapped[datetime | None]
    arrival: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reported_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class DispatchEvent(Base):
    """One line of a dispatch's history: who did what, when, where, from which status to which."""

    __tablename__ = "dispatch_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(ForeignKey("dispatches.id"), index=True)
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Offer(Base):
    """One offer of a dispatch to one engineer, and how it ended."""

    __tablename__ = "offers"
    __table_args__ = (UniqueConstraint("dispatch_id", "engineer_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(ForeignKey("dispatches.id"), index=True)
    engineer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    offered_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(500))


class Conversation(Base):
    """Where a user is in a multi-step conversation (free text means what this step expects)."""

    __tablename__ = "conversations"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    flow: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class Inbox(Base):
    """Every Telegram update, stored before it is acknowledged; done in its effects' transaction."""

    __tablename__ = "inbox"
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_inbox_pending", "status", "chat_id", "update_id"),)


class Outbox(Base):
    """A Bot API call to make (a reply or notification): written first, sent second."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column()
    priority: Mapped[int] = mapped_column(Integer, default=5)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    created_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    ref: Mapped[str | None] = mapped_column(String(80), index=True)
    edit_of: Mapped[str | None] = mapped_column(String(80))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (Index("ix_outbox_pending", "status", "chat_id", "id"),)


class LiveSender(Base):
    """An outbox sender that is running, as of its last report: the senders of all worker
    processes share Telegram's overall limit, each taking its part of it."""

    __tablename__ = "live_senders"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    seen_at: Mapped[datetime]


class Timer(Base):
    """A deadline or reminder: a row with a due time, fired once by the scheduler's sweep."""

    __tablename__ = "timers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(80))
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(300))

    # By subject with its status and due time: a job's own timers are found (and cancelled)
    # without SQLite preferring ix_timers_due and reading every pending timer.
    __table_args__ = (
        Index("ix_timers_due", "status", "due_at"),
        Index("ix_timers_subject", "subject", "status", "due_at"),
    )
