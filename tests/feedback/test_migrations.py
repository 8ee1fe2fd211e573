"""Alembic migrations apply and roll back, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from feedback.models import Base

TABLES = {"interactions", "votes", "vote_events", "gap_reports"}


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


def test_0003_keeps_console_users_and_stops_id_reuse_both_ways(db):
    from sqlalchemy import text

    from feedback.users import add_user, remove_user

    db.downgrade("0002")
    with db.engine.connect() as conn:
        assert "console_sessions" not in inspect(conn).get_table_names()
    add_user(db.sessions, "ada", "lovelace-1843", "admin")
    bob = add_user(db.sessions, "bob", "bob-password", "reviewer")

    db.upgrade("0003")
    with db.engine.connect() as conn:
        assert "console_sessions" in inspect(conn).get_table_names()
        users = conn.execute(text("SELECT id, username, role FROM console_users ORDER BY id")).all()
    assert [(u.username, u.role) for u in users] == [("ada", "admin"), ("bob", "reviewer")]
    assert users[1].id == bob.id  # ids survive the table's recreation
    assert remove_user(db.sessions, "bob")
    assert add_user(db.sessions, "cy", "cy-password", "reviewer").id > bob.id

    db.downgrade("0002")
    with db.engine.connect() as conn:
        assert "console_sessions" not in inspect(conn).get_table_names()
        names = conn.execute(text("SELECT username FROM console_users ORDER BY id")).scalars().all()
    assert names == ["ada", "cy"]
    db.upgrade()
    assert db.current() == db.head()


def test_0004_adds_gap_reports_and_keeps_every_judgment_both_ways(db):
    """Down to 0003 and back: the gap reports table comes and goes; the interactions, votes and
    reviewers' judgments stored around it are untouched."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from feedback.gaps import latest_report, store_report
    from feedback.reviews import save_review
    from feedback.store import record_interaction
    from tests.feedback.test_store import interaction

    record_interaction(db.sessions, interaction("a1"))
    save_review(db.sessions, "a1", action="edit", reviewer="ada", expected_version=0, ideal_answer="Ideal.")
    store_report(db.sessions, "gaps", [], params={}, questions=0, started_at=datetime.now(UTC))

    def judgments() -> list[tuple[str, str, str]]:
        with db.engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(text("SELECT answer_id, status, ideal_answer FROM reviews"))
            ]

    before = judgments()
    assert before == [("a1", "edited", "Ideal.")]
    db.downgrade("0003")
    with db.engine.connect() as conn:
        assert "gap_reports" not in inspect(conn).get_table_names()
    assert judgments() == before
    db.upgrade()
    with db.engine.connect() as conn:
        assert "gap_reports" in inspect(conn).get_table_names()
    assert judgments() == before and latest_report(db.sessions, "gaps") is None
    store_report(db.sessions, "gaps", [], params={}, questions=0, started_at=datetime.now(UTC))
    assert latest_report(db.sessions, "gaps") is not None


def test_0006_adds_relevance_judgments_that_survive_an_upgrade_and_go_cleanly_on_a_downgrade(db):
    """Judgments written at 0006 survive a later `upgrade` (a no-op at head, as after a deploy);
    down to 0005 the table and its index are gone and everything else is untouched; back up,
    the table is empty and writable again."""
    from sqlalchemy import text

    from feedback.judgments import Passage, judgments_for, record_judgment
    from feedback.reviews import save_review
    from feedback.store import record_interaction
    from tests.feedback.test_store import interaction

    record_interaction(db.sessions, interaction("a1"))
    save_review(db.sessions, "a1", action="approve", reviewer="ada", expected_version=0)
    passage = Passage("c-1", "hb:hr/leave.md", "hr/leave.md", "sha-v1", "Everyone gets 25 days.", "Leave")
    record_judgment(db.sessions, "a1", passage, relevant=True, origin="retrieved", reviewer="ada")

    db.upgrade()
    [kept] = judgments_for(db.sessions, "a1")
    assert (kept.passage, kept.relevant, kept.origin, kept.reviewer) == (passage, True, "retrieved", "ada")

    db.downgrade("0005")
    assert db.current() == "0005"
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        assert "relevance_judgments" not in inspector.get_table_names()
        assert {"interactions", "reviews", "escalations"} <= set(inspector.get_table_names())
        assert conn.execute(text("SELECT status FROM reviews WHERE answer_id = 'a1'")).scalar() == "approved"

    db.upgrade()
    assert db.current() == db.head()
    assert judgments_for(db.sessions, "a1") == []
    record_judgment(db.sessions, "a1", passage, relevant=False, origin="retrieved", reviewer="rex")
    assert [j.relevant for j in judgments_for(db.sessions, "a1")] == [False]


def test_0007_adds_the_models_table_and_a_downgrade_removes_only_it(db):
    """Answer-model runs written at 0007 survive a no-op upgrade; down to 0006 the table and its
    index are gone and the judgments around it are untouched; back up, it is empty and works."""
    from sqlalchemy import text

    from feedback import generators
    from feedback.judgments import Passage, judgments_for, record_judgment
    from feedback.store import record_interaction
    from tests.feedback.test_store import interaction

    record_interaction(db.sessions, interaction("a1"))
    passage = Passage("c-1", "hb:hr/leave.md", "hr/leave.md", "sha-v1", "Everyone gets 25 days.", "Leave")
    record_judgment(db.sessions, "a1", passage, relevant=True, origin="retrieved", reviewer="ada")
    run = generators.start_run(db.sessions, provider="openai", method="sft", base="gpt-4o-mini-2024-07-18")
    generators.save(
        db.sessions, run.id, model="ft:x", status="candidate", gate={"passed": True, "reasons": []}
    )
    generators.promote(db.sessions, run.id)

    db.upgrade()
    assert generators.served_model(db.sessions) is not None

    db.downgrade("0006")
    assert db.current() == "0006"
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        assert "models" not in inspector.get_table_names()
        assert "relevance_judgments" in inspector.get_table_names()
        assert conn.execute(text("SELECT count(*) FROM relevance_judgments")).scalar() == 1
    assert len(judgments_for(db.sessions, "a1")) == 1

    db.upgrade()
    assert db.current() == db.head() == "0007"
    assert generators.runs(db.sessions) == [] and generators.served_model(db.sessions) is None
    again = generators.start_run(db.sessions, provider="local", method="dpo", base="/m/base.gguf")
    assert generators.get(db.sessions, again.id).status == "training"
