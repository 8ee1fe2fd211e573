"""Answer models: one row per fine-tuning run of the generator, and which one serves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import JsonColumn, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(128), nullable=True),
        sa.Column("examples", JsonColumn, nullable=False),
        sa.Column("figures", JsonColumn, nullable=False),
        sa.Column("gate", JsonColumn, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replaced", sa.String(64), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("served_at", UTCDateTime(), nullable=True),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_models_kind_status", "models", ["kind", "status"])


def downgrade() -> None:
    op.drop_index("ix_models_kind_status", table_name="models")
    op.drop_table("models")
