"""Content gaps: each clustering run's result (`feedback/gaps.py`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import BigId, JsonColumn, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gap_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=True),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("params", JsonColumn, nullable=False),
        sa.Column("clusters", JsonColumn, nullable=False),
    )
    op.create_index("ix_gap_reports_kind_finished_at", "gap_reports", ["kind", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_gap_reports_kind_finished_at", table_name="gap_reports")
    op.drop_table("gap_reports")
