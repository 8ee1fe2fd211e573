"""Console sessions kept server-side, and console user ids that are never reused.

SQLite hands the id of a deleted row to the next insert unless the table says AUTOINCREMENT,
and that can only be set by recreating the table (batch mode copies the rows over; SQLite then
continues after the highest id copied). PostgreSQL's identity sequence never goes back already.

Sessions from before this revision named only a user id: they no longer sign anyone in (everyone
signs in once more).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedback.models import BigId, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _recreate_users(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "console_users", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    _recreate_users(True)
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            BigId,
            sa.ForeignKey("console_users.id", name="fk_console_sessions_user_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"])
    op.create_index("ix_console_sessions_created_at", "console_sessions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_created_at", table_name="console_sessions")
    op.drop_index("ix_console_sessions_user_id", table_name="console_sessions")
    op.drop_table("console_sessions")
    _recreate_users(False)
