"""Alembic migrations apply and roll back, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from feedback.models import Base

TABLES = {"interactions", "votes", "vote_events"}


def test_migrations_apply_match_the_models_and_roll_back(db):
    assert db.current() == db.head()
    with db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) >= TABLES
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []  # the migration creates exactly what the models describe

    db.downgrade("base")
    assert db.current() is None
    with db.engine.connect() as conn:
        assert not TABLES & set(inspect(conn).get_table_names())

    db.upgrade()
    db.upgrade()  # already at head: a no-op
    assert db.current() == db.head()


def test_ensure_schema_is_safe_from_several_processes_at_once(tmp_path):
    import multiprocessing as mp

    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ensure, args=(url,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    from feedback.db import Database

    assert Database(url).current() == Database(url).head()


def _ensure(url: str) -> None:
    from feedback.db import Database

    Database(url).ensure_schema()
