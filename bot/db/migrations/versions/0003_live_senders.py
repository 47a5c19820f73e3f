"""live_senders: the running outbox senders, which share Telegram's overall limit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_senders",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("seen_at", bot.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_live_senders")),
    )


def downgrade() -> None:
    op.drop_table("live_senders")
