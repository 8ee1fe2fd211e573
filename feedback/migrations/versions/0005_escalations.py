""" "Ask an expert": escalations and the expert answers captured from their threads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import BigId, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("workspace", sa.String(128), nullable=True),
        sa.Column("channel", sa.String(128), nullable=True),
        sa.Column("thread", sa.String(128), nullable=True),
        sa.Column("user_hash", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("routed_by", sa.String(128), nullable=False),
        sa.Column("answer_shown", sa.Boolean(), nullable=False),
        sa.Column("posted_channel", sa.String(128), nullable=True),
        sa.Column("posted_message", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("answer_id", name="uq_escalations_answer_id"),
    )
    op.create_index("ix_escalations_created_at", "escalations", ["created_at"])
    op.create_table(
        "expert_answers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("reply_id", sa.String(255), nullable=False),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("thread", sa.String(128), nullable=True),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("author_hash", sa.String(64), nullable=False),
        sa.Column("from_expert", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("accepted_by", sa.String(64), nullable=True),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("reply_id", name="uq_expert_answers_reply_id"),
    )
    op.create_index("ix_expert_answers_answer_id", "expert_answers", ["answer_id"])
    op.create_index("ix_expert_answers_created_at", "expert_answers", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_expert_answers_created_at", table_name="expert_answers")
    op.drop_index("ix_expert_answers_answer_id", table_name="expert_answers")
    op.drop_table("expert_answers")
    op.drop_index("ix_escalations_created_at", table_name="escalations")
    op.drop_table("escalations")
