"""The feedback log: interactions, current votes and vote history.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import BigId, JsonColumn, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("workspace", sa.String(128), nullable=True),
        sa.Column("channel", sa.String(128), nullable=True),
        sa.Column("thread", sa.String(128), nullable=True),
        sa.Column("user_hash", sa.String(64), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("context", JsonColumn, nullable=False),
        sa.Column("answer_text", sa.Text(), nullable=False),
        sa.Column("abstained", sa.Boolean(), nullable=False),
        sa.Column("citations", JsonColumn, nullable=False),
        sa.Column("chunks", JsonColumn, nullable=False),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_version", sa.String(64), nullable=False),
        sa.Column("retrieve_ms", sa.Double(), nullable=False),
        sa.Column("generate_ms", sa.Double(), nullable=False),
        sa.Column("total_ms", sa.Double(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("answer_id", name="uq_interactions_answer_id"),
    )
    op.create_index("ix_interactions_created_at", "interactions", ["created_at"])
    op.create_table(
        "votes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("user_hash", sa.String(64), nullable=False),
        sa.Column("vote_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("value", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("answer_id", "user_hash", name="uq_votes_answer_user"),
    )
    op.create_index("ix_votes_answer_id", "votes", ["answer_id"])
    op.create_index("ix_votes_created_at", "votes", ["created_at"])
    op.create_table(
        "vote_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("vote_id", sa.String(64), nullable=False),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("user_hash", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("value", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("vote_id", name="uq_vote_events_vote_id"),
    )
    op.create_index("ix_vote_events_answer_user", "vote_events", ["answer_id", "user_hash"])


def downgrade() -> None:
    op.drop_table("vote_events")
    op.drop_table("votes")
    op.drop_table("interactions")
