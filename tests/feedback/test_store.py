"""Idempotent writes of answers and votes, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from feedback.models import Interaction, Vote, VoteEvent
from feedback.schema import InteractionRecord, VoteRecord
from feedback.store import current_vote, record_interaction, record_vote
from knowledge.answer import Answer, Citation, RetrievedChunk, Timings, Turn

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def interaction(answer_id: str = "a1", question: str = "How many leave days do I get?") -> InteractionRecord:
    chunk = RetrievedChunk(
        chunk_id="c-1", doc_id="hb:hr/leave.md", source="hb", path="hr/leave.md", title="Leave",
        url="file:///hr/leave.md", text="Everyone gets 25 days.", score=0.8, doc_hash="sha-v1", n=1,
    )  # fmt: skip
    answer = Answer(
        answer_id=answer_id, question=question, text="25 days [1].", abstained=False, model="extractive",
        prompt_version="v3", timings=Timings(retrieve_ms=12, generate_ms=30, total_ms=45), chunks=[chunk],
        citations=[Citation(n=1, title="Leave", url=chunk.url, source="hb", path=chunk.path,
                            doc_id=chunk.doc_id, score=0.8)],
    )  # fmt: skip
    return InteractionRecord(
        answer=answer, correlation_id="corr-1", platform="slack", workspace="T1", channel="C1",
        thread="171.2", user_hash="u_abc", context=[Turn(role="user", text="hi")], created_at=T0,
    )  # fmt: skip


def vote(value: str = "down", *, at: int = 0, user: str = "u_1", answer: str = "a1", **kw) -> VoteRecord:
    return VoteRecord(
        answer_id=answer,
        user_hash=user,
        platform="slack",
        value=value,
        created_at=T0 + timedelta(seconds=at),
        **kw,
    )


def count(db, model) -> int:
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def test_an_interaction_keeps_every_field_and_is_stored_once(db):
    rec = interaction()
    assert record_interaction(db.sessions, rec) is True
    assert record_interaction(db.sessions, rec) is False  # redelivered
    with db.sessions() as s:
        row = s.scalars(select(Interaction)).one()
    assert (row.platform, row.workspace, row.channel, row.thread) == ("slack", "T1", "C1", "171.2")
    assert row.user_hash == "u_abc" and row.question.startswith("How many")
    assert row.answer_text == "25 days [1]." and row.abstained is False
    assert row.citations[0]["doc_id"] == "hb:hr/leave.md"
    assert row.chunks[0]["doc_hash"] == "sha-v1" and row.chunks[0]["chunk_id"] == "c-1"
    assert row.context == [{"role": "user", "text": "hi"}]
    assert (row.model, row.prompt_version, row.total_ms) == ("extractive", "v3", 45)
    assert row.created_at == T0


def test_a_later_vote_replaces_the_current_one_and_history_is_kept(db):
    first, second = vote("down", at=0, reason="wrong"), vote("up", at=5)
    assert record_vote(db.sessions, first)
    assert record_vote(db.sessions, second)
    assert not record_vote(db.sessions, first)  # redelivery of the old vote: a no-op
    cur = current_vote(db.sessions, "a1", "u_1")
    assert cur and (cur.value, cur.vote_id, cur.reason) == ("up", second.vote_id, None)
    assert count(db, Vote) == 1 and count(db, VoteEvent) == 2


def test_an_older_vote_arriving_late_does_not_replace_a_newer_one(db):
    old, new = vote("up", at=0), vote("down", at=10, reason="outdated", correction="It is 30 days now.")
    record_vote(db.sessions, new)
    record_vote(db.sessions, old)  # out of order
    cur = current_vote(db.sessions, "a1", "u_1")
    assert cur and (cur.value, cur.reason, cur.correction) == ("down", "outdated", "It is 30 days now.")
    assert count(db, VoteEvent) == 2


def test_a_vote_may_arrive_before_its_interaction(db):
    assert record_vote(db.sessions, vote("down", answer="later"))
    assert record_interaction(db.sessions, interaction("later"))
    assert current_vote(db.sessions, "later", "u_1") is not None


def test_votes_of_different_users_are_independent(db):
    record_vote(db.sessions, vote("up", user="u_1"))
    record_vote(db.sessions, vote("down", user="u_2"))
    assert count(db, Vote) == 2


def test_concurrent_writers_store_each_vote_once_and_agree_on_the_current_one(db):
    votes = [vote("up" if i % 2 else "down", at=i % 7, user=f"u_{i % 5}") for i in range(60)]
    work = votes + votes  # every vote twice, from different threads at once
    errors: list[BaseException] = []

    def run(chunk):
        try:
            for v in chunk:
                record_vote(db.sessions, v)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(db, VoteEvent) == 60 and count(db, Vote) == 5
    for u in range(5):
        mine = [v for v in votes if v.user_hash == f"u_{u}"]
        best = max(mine, key=lambda v: (v.created_at, v.vote_id))
        assert current_vote(db.sessions, "a1", f"u_{u}").vote_id == best.vote_id
