"""Curation: reviews (with a version for optimistic concurrency), their history, console users.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import BigId, JsonColumn, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ideal_answer", sa.Text(), nullable=True),
        sa.Column("tags", JsonColumn, nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("answer_id", name="uq_reviews_answer_id"),
    )
    op.create_index("ix_reviews_status", "reviews", ["status"])
    op.create_index("ix_reviews_updated_at", "reviews", ["updated_at"])
    op.create_table(
        "review_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ideal_answer", sa.Text(), nullable=True),
        sa.Column("tags", JsonColumn, nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_review_events_answer_id", "review_events", ["answer_id"])
    op.create_table(
        "console_users",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_login_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("username", name="uq_console_users_username"),
    )


def downgrade() -> None:
    op.drop_table("console_users")
    op.drop_index("ix_review_events_answer_id", table_name="review_events")
    op.drop_table("review_events")
    op.drop_index("ix_reviews_updated_at", table_name="reviews")
    op.drop_index("ix_reviews_status", table_name="reviews")
    op.drop_table("reviews")
