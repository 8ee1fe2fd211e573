"""Relevance judgments: reviewers' verdicts on retrieved and attached passages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import BigId, JsonColumn, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relevance_judgments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("chunk_id", sa.String(255), nullable=False),
        sa.Column("doc_id", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("doc_hash", sa.String(128), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("access", JsonColumn, nullable=False),
        sa.Column("relevant", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("answer_id", "chunk_id", name="uq_relevance_judgments_answer_chunk"),
    )
    op.create_index("ix_relevance_judgments_updated_at", "relevance_judgments", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_relevance_judgments_updated_at", table_name="relevance_judgments")
    op.drop_table("relevance_judgments")
