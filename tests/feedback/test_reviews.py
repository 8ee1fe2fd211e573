"""Reviews on SQLite and the real PostgreSQL: actions, optimistic concurrency, the queue, migration 0002."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select

from feedback.models import ReviewEvent
from feedback.reviews import (
    Conflict,
    QueueFilters,
    ReviewError,
    curated_items,
    document_changes,
    facets,
    get_item,
    get_state,
    queue_neighbours,
    review_queue,
    save_review,
)
from feedback.store import record_interaction, record_vote
from tests.feedback.test_store import T0, interaction, vote


def fill(db, n: int = 3) -> None:
    for i in range(n):
        rec = interaction(f"a{i}", f"Question {i} about leave?")
        rec.created_at = T0 + timedelta(hours=i)
        record_interaction(db.sessions, rec)


def test_actions_move_the_status_and_bump_the_version_with_history(db):
    fill(db, 1)
    s = save_review(db.sessions, "a0", action="approve", reviewer="ann", expected_version=0)
    assert (s.status, s.version, s.reviewer, s.ideal_answer) == ("approved", 1, "ann", None)
    s = save_review(
        db.sessions, "a0", action="edit", reviewer="bob", expected_version=1, ideal_answer=" 25 days [1].\r\n"
    )
    assert (s.status, s.version, s.ideal_answer) == ("edited", 2, "25 days [1].")
    s = save_review(
        db.sessions, "a0", action="tag", reviewer="ann", expected_version=2, tags=["Leave", "leave", "hr"]
    )
    assert (s.status, s.tags, s.ideal_answer) == ("edited", ("leave", "hr"), "25 days [1].")
    s = save_review(db.sessions, "a0", action="reject", reviewer="ann", expected_version=3)
    assert (s.status, s.ideal_answer, s.tags) == ("rejected", "25 days [1].", ("leave", "hr"))
    s = save_review(db.sessions, "a0", action="reopen", reviewer="ann", expected_version=4)
    assert (s.status, s.version) == ("new", 5)
    s = save_review(db.sessions, "a0", action="approve", reviewer="ann", expected_version=5)
    assert s.ideal_answer is None  # approving the original clears the ideal answer (it stays in the history)
    history = get_item(db.sessions, "a0").history
    assert [e["action"] for e in history] == ["approve", "reopen", "reject", "tag", "edit", "approve"]
    assert all(e["outcome"] == "saved" for e in history) and history[4]["ideal_answer"] == "25 days [1]."


def test_a_stale_write_is_a_conflict_that_overwrites_nothing_and_keeps_the_losing_text(db):
    fill(db, 1)
    save_review(
        db.sessions, "a0", action="edit", reviewer="ann", expected_version=0, ideal_answer="Ann's answer."
    )
    with pytest.raises(Conflict) as caught:
        save_review(
            db.sessions, "a0", action="edit", reviewer="bob", expected_version=0, ideal_answer="Bob's answer."
        )
    conflict = caught.value
    assert "ann saved this item" in str(conflict) and "nothing was overwritten" in str(conflict)
    assert conflict.current.ideal_answer == "Ann's answer." and conflict.current.version == 1
    assert (
        conflict.attempted["ideal_answer"] == "Bob's answer." and conflict.attempted["expected_version"] == 0
    )
    assert get_state(db.sessions, "a0").ideal_answer == "Ann's answer."
    with db.sessions() as s:
        lost = s.scalars(select(ReviewEvent).where(ReviewEvent.outcome == "conflict")).one()
    assert (lost.reviewer, lost.ideal_answer, lost.version) == ("bob", "Bob's answer.", None)
    # A stale version on an existing row is a conflict too, and so is a version from the future.
    for stale in (0, 5):
        with pytest.raises(Conflict):
            save_review(db.sessions, "a0", action="reject", reviewer="bob", expected_version=stale)


def test_concurrent_writers_never_both_win(db):
    fill(db, 1)
    for expected in (0, 1):
        outcomes = race(db, expected, writers=6)
        assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
        assert get_state(db.sessions, "a0").version == expected + 1
    history = get_item(db.sessions, "a0").history
    assert len(history) == 12 and len({e["ideal_answer"] for e in history}) == 12  # every text kept


def race(db, expected: int, *, writers: int) -> list[str]:
    """`writers` threads save the same item from the same version at the same moment."""
    outcomes: list[str] = []
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        barrier.wait()
        try:
            save_review(
                db.sessions,
                "a0",
                action="edit",
                reviewer=f"r{i}",
                expected_version=expected,
                ideal_answer=f"answer {i} from version {expected}",
            )
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_nonsense_actions_are_refused(db):
    fill(db, 1)
    with pytest.raises(ReviewError, match="no answer"):
        save_review(db.sessions, "nope", action="approve", reviewer="a", expected_version=0)
    with pytest.raises(ReviewError, match="write the ideal answer"):
        save_review(db.sessions, "a0", action="edit", reviewer="a", expected_version=0, ideal_answer="  ")
    with pytest.raises(ReviewError, match="at most"):
        save_review(
            db.sessions,
            "a0",
            action="tag",
            reviewer="a",
            expected_version=0,
            tags=[f"t{i}" for i in range(30)],
        )
    with pytest.raises(ReviewError, match="unknown action"):
        save_review(db.sessions, "a0", action="delete", reviewer="a", expected_version=0)  # type: ignore[arg-type]
    assert get_state(db.sessions, "a0").version == 0


def test_the_item_has_votes_their_corrections_and_the_draft_starts_from_the_correction(db):
    fill(db, 1)
    record_vote(
        db.sessions, vote("down", at=0, user="u1", answer="a0", reason="wrong", correction="It is 30 days.")
    )
    record_vote(db.sessions, vote("up", at=1, user="u1", answer="a0"))  # u1 changed their mind
    record_vote(db.sessions, vote("down", at=2, user="u2", answer="a0", reason="outdated"))
    item = get_item(db.sessions, "a0")
    assert [(v.value, v.current) for v in item.votes] == [("down", True), ("up", True), ("down", False)]
    assert item.correction == "It is 30 days." and item.draft == "It is 30 days."
    assert item.context == [{"role": "user", "text": "hi"}] and item.chunks[0]["doc_hash"] == "sha-v1"
    assert item.doc_ids() == ["hb:hr/leave.md"]
    save_review(
        db.sessions, "a0", action="edit", reviewer="a", expected_version=0, ideal_answer="30 days [1]."
    )
    assert get_item(db.sessions, "a0").draft == "30 days [1]."
    assert get_item(db.sessions, "missing") is None


def test_document_changes_compare_the_answer_s_versions_with_the_index():
    chunks = [
        {"doc_id": "a", "doc_hash": "h1"},
        {"doc_id": "b", "doc_hash": "h2"},
        {"doc_id": "c", "doc_hash": "h3"},
        {"doc_id": "a", "doc_hash": "h1"},
        {"doc_id": "d", "doc_hash": "h4"},
    ]
    current = {"a": "h1", "b": "h2-new", "c": None}
    assert document_changes(chunks, current) == {
        "a": "unchanged",
        "b": "changed",
        "c": "deleted",
        "d": "unknown",
    }


def test_the_queue_pages_filters_and_finds_neighbours(db):
    fill(db, 5)
    for i in range(5):
        record_vote(
            db.sessions, vote("down" if i % 2 else "up", answer=f"a{i}", reason="wrong" if i % 2 else None)
        )
    record_interaction(db.sessions, interaction("quiet", "Nobody voted on this?"))
    page = review_queue(db.sessions, QueueFilters(), limit=2)
    assert [r.answer_id for r in page.rows] == ["a4", "a3"] and page.has_more  # newest first
    page = review_queue(db.sessions, QueueFilters(), offset=4, limit=2)
    assert [r.answer_id for r in page.rows] == ["a0"] and not page.has_more
    down = review_queue(db.sessions, QueueFilters(vote="down"))
    assert [(r.answer_id, r.down, r.reasons) for r in down.rows] == [
        ("a3", 1, ("wrong",)),
        ("a1", 1, ("wrong",)),
    ]
    assert queue_neighbours(db.sessions, QueueFilters(vote="down"), "a3") == (None, "a1")
    assert queue_neighbours(db.sessions, QueueFilters(), "a2") == ("a3", "a1")
    assert queue_neighbours(db.sessions, QueueFilters(), "quiet") == (None, None)  # not in this queue
    assert [r.answer_id for r in review_queue(db.sessions, QueueFilters(vote="none")).rows] == ["quiet"]
    assert (
        review_queue(db.sessions, QueueFilters(source="hb")).rows
        and not review_queue(db.sessions, QueueFilters(source="other")).rows
    )
    assert facets(db.sessions) == {"platforms": ["slack"], "sources": ["hb"], "tags": []}


def test_filters_parse_from_query_parameters_and_back():
    f = QueueFilters.parse(
        {
            "vote": "down",
            "reason": "wrong",
            "status": "edited",
            "from": "2026-11-01",
            "to": "bad",
            "platform": " web ",
            "source": "",
            "tag": "x" * 500,
        }
    )
    assert (f.vote, f.reason, f.status, str(f.date_from), f.date_to, f.platform, f.source) == (
        "down",
        "wrong",
        "edited",
        "2026-11-01",
        None,
        "web",
        None,
    )
    assert len(f.tag or "") == 128
    assert QueueFilters.parse({"vote": "sideways", "status": "deleted"}) == QueueFilters()
    assert QueueFilters.parse(f.params()) == f


def test_curated_items_bring_review_state_and_current_vote_counts(db):
    fill(db, 3)
    record_vote(db.sessions, vote("down", answer="a1", user="u1"))
    record_vote(db.sessions, vote("down", answer="a1", user="u2"))
    record_vote(db.sessions, vote("up", answer="a1", user="u3"))
    save_review(
        db.sessions, "a1", action="edit", reviewer="r", expected_version=0, ideal_answer="Better [1]."
    )
    items = {i.answer_id: i for i in curated_items(db.sessions)}
    assert list(items) == ["a0", "a1", "a2"]  # oldest first
    assert (items["a1"].up, items["a1"].down, items["a1"].status, items["a1"].ideal_answer) == (
        1,
        2,
        "edited",
        "Better [1].",
    )
    assert (items["a0"].up, items["a0"].down, items["a0"].status) == (0, 0, "new")
    later = curated_items(db.sessions, since=T0 + timedelta(minutes=30))
    assert [i.answer_id for i in later] == ["a1", "a2"]


def test_migration_0002_rolls_back_to_0001_keeping_the_log(db):
    fill(db, 1)
    save_review(db.sessions, "a0", action="approve", reviewer="r", expected_version=0)
    db.downgrade("0001")
    with db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert {"interactions", "votes", "vote_events"} <= tables
    assert not {"reviews", "review_events", "console_users"} & tables
    db.upgrade()
    assert db.current() == db.head() and get_state(db.sessions, "a0").version == 0  # reviews start afresh
    assert curated_items(db.sessions)[0].answer_id == "a0"


def test_timestamps_are_utc(db):
    fill(db, 1)
    s = save_review(db.sessions, "a0", action="approve", reviewer="r", expected_version=0)
    assert s.updated_at is not None and s.updated_at.tzinfo is UTC
    assert abs(s.updated_at - datetime.now(UTC)) < timedelta(minutes=5)
