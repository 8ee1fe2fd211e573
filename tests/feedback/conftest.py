"""Feedback storage on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from feedback.db import Database
from tests.feedback.pg import pg_url

__all__ = ["pg_url"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty feedback database of each kind."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'feedback.sqlite3'}")
    else:
        database = Database(
            request.getfixturevalue("pg_url").replace("postgresql://", "postgresql+psycopg://")
        )
    database.upgrade()
    with database.engine.begin() as conn:  # the PostgreSQL database is shared by the session
        for table in (
            "gap_reports",
            "vote_events",
            "votes",
            "interactions",
            "review_events",
            "reviews",
            "console_sessions",
            "console_users",
            "escalations",
            "expert_answers",
            "relevance_judgments",
            "models",
        ):
            conn.execute(text(f"DELETE FROM {table}"))
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # `lore` commands run through CliRunner add log handlers on streams that close after them.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
