"""Follow-ups (回访): the questions asked after jobs and deliveries, and the answers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models.core import Base
from bot.db.types import BigId


class FollowUp(Base):
    """One follow-up: scheduled, asked (or nobody to ask in chat), then answered.

    ``key`` makes each one unique (``sat:<job>``, ``per:<job>:<n>``, ``out:<year>:<customer>``),
    so a repeated call or a second worker never asks twice.
    """

    __tablename__ = "followups"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # satisfaction | periodic | outreach
    status: Mapped[str] = mapped_column(String(16))  # scheduled | asked | unreachable | answered
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    dispatch_id: Mapped[int | None] = mapped_column(ForeignKey("dispatches.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    seq: Mapped[int] = mapped_column(Integer, default=0)  # periodic: months after delivery
    year: Mapped[int | None] = mapped_column(Integer)  # outreach: the year asked about
    delivered_at: Mapped[datetime | None]  # periodic: the delivery the months count from
    due_at: Mapped[datetime]
    asked_at: Mapped[datetime | None]
    answer: Mapped[str | None] = mapped_column(
        String(16)
    )  # good | repair | complaint | needs | none
    note: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    result_ref: Mapped[str | None] = mapped_column(String(40))  # the repair job or complaint no.
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_followups_open", "status", "asked_at"),)
