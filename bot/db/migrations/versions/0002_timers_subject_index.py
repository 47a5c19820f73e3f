"""timers: index by subject, status and due time

A job's timers are looked up and cancelled by subject and status. With the single-column
subject index SQLite's planner chose ix_timers_due (status, due_at) instead and read every
pending timer: with 100,000 pending timers each cancel read them all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_subject")
        batch_op.create_index("ix_timers_subject", ["subject", "status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_subject")
        batch_op.create_index("ix_timers_subject", ["subject"], unique=False)
