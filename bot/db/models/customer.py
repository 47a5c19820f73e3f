"""The customer's side of a job (DOMAIN.md §1 steps 6–7): sign-offs, work-order PDFs, feedback."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models.core import Base
from bot.db.types import BigId


class SignOff(Base):
    """One work order put to the customer (客户签字), and how it was answered.

    ``method`` "telegram": the work order sent to the customer's chat; ``text`` is exactly what
    they read and ``text_sha256`` its hash; confirming stores the time and their Telegram id.
    ``method`` "paper": the engineer's photo of the paper form the customer signed.
    ``status``: pending → confirmed | rejected | superseded (a newer request replaced it).
    """

    __tablename__ = "signoffs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(ForeignKey("dispatches.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    customer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    locale: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    photo_file_id: Mapped[str | None] = mapped_column(String(255))
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class WorkOrderPdf(Base):
    """The signed work order as a PDF, in the customer's language, kept with the job."""

    __tablename__ = "work_order_pdfs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(ForeignKey("dispatches.id"), index=True)
    signoff_id: Mapped[int] = mapped_column(ForeignKey("signoffs.id"))
    locale: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Feedback(Base):
    """The customer's rating (1–5) and comment on a job (客户服务回馈单): one per job."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(ForeignKey("dispatches.id"), unique=True)
    customer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    commented_at: Mapped[datetime | None]
