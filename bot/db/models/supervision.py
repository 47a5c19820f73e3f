"""Supervision tables (DOMAIN.md §4–§6): report runs, major faults, the duty roster, holidays
and handover records."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models.core import Base
from bot.db.types import BigId


class ReportRun(Base):
    """A scheduled report claimed for one period: the unique key makes two workers send it once."""

    __tablename__ = "report_runs"
    __table_args__ = (UniqueConstraint("kind", "period"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime]
    recipients: Mapped[int] = mapped_column(Integer, default=0)


class MajorFault(Base):
    """A major fault (重大故障): the first report, its tracking and the fault analysis report."""

    __tablename__ = "major_faults"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    occurred_at: Mapped[datetime]
    place: Mapped[str] = mapped_column(Text)
    symptoms: Mapped[str] = mapped_column(Text)
    plan: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    dispatch_id: Mapped[int | None] = mapped_column(ForeignKey("dispatches.id"))
    reported_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reported_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    analysis: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FaultEvent(Base):
    """One line of a major fault's history: reported, each update, closed, report sent."""

    __tablename__ = "major_fault_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fault_id: Mapped[int] = mapped_column(ForeignKey("major_faults.id"), index=True)
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(24))
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DutyShift(Base):
    """One supervisor on duty from ``starts_at`` to ``ends_at``; holiday shifts form their own
    roster (节假日服务保障), used on the dates of the holiday calendar."""

    __tablename__ = "duty_shifts"
    __table_args__ = (Index("ix_duty_shifts_span", "starts_at", "ends_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    holiday: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Holiday(Base):
    """A date of the holiday calendar (in the organisation's time zone)."""

    __tablename__ = "holidays"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")


class Handover(Base):
    """A shift handover (交接班): what was open, the notes, and who confirmed it when."""

    __tablename__ = "handovers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    from_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    items: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
