"""Escalations and expert answers in the feedback log (feedback/experts.py), on SQLite and on the
real PostgreSQL: idempotent and order-independent writes, the queue's expert filter, approval as
the curated answer (with the review's version check), and the retriever-tuning signal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect

from feedback.experts import (
    approve_expert_answer,
    escalation_of,
    expert_answers,
    record_escalation,
    record_expert_reply,
    relevance_signals,
)
from feedback.reviews import Conflict, QueueFilters, ReviewError, get_state, review_queue, save_review
from feedback.schema import EscalationRecord, ExpertReplyRecord
from feedback.store import record_interaction
from tests.feedback.test_store import T0, interaction


def escalated(answer_id: str = "a0") -> EscalationRecord:
    return EscalationRecord(
        answer_id=answer_id,
        platform="slack",
        channel="C1",
        thread="1.0",
        user_hash="u_asker",
        target="slack:group:S0EXP",
        routed_by="default",
        answer_shown=True,
        created_at=T0,
    )


def reply(
    *,
    accepted: bool = False,
    from_expert: bool = True,
    text: str = "Use the v3 client.",
    answer_id: str = "a0",
    message_id: str = "2.0",
) -> ExpertReplyRecord:
    return ExpertReplyRecord(
        reply_id=f"slack:C1:{message_id}",
        answer_id=answer_id,
        platform="slack",
        channel="C1",
        thread="1.0",
        message_id=message_id,
        author_hash="u_expert",
        from_expert=from_expert,
        text=text,
        accepted=accepted,
        accepted_by="u_asker" if accepted else None,
        created_at=T0 + timedelta(minutes=5),
    )


def ask(db, answer_id: str = "a0") -> None:
    record_interaction(db.sessions, interaction(answer_id, "How do I set up the VPN?"))


def test_writes_are_idempotent_and_an_acceptance_may_arrive_first(db):
    ask(db)
    assert record_escalation(db.sessions, escalated()) is True
    assert record_escalation(db.sessions, escalated()) is False  # a redelivery
    assert escalation_of(db.sessions, "a0").target == "slack:group:S0EXP"

    # The ✅ (on a reply nobody flagged as an expert's yet) lands before the expert's own record.
    assert record_expert_reply(db.sessions, reply(accepted=True, from_expert=False)) is True
    assert record_expert_reply(db.sessions, reply(from_expert=True, text="edited later")) is True
    assert record_expert_reply(db.sessions, reply(from_expert=True)) is False  # nothing new
    assert record_expert_reply(db.sessions, reply(accepted=False, from_expert=False)) is False  # never undoes
    [kept] = expert_answers(db.sessions, "a0")
    assert (kept.text, kept.from_expert, kept.accepted) == ("Use the v3 client.", True, True)


def test_the_queue_filters_by_expert_answers_without_needing_a_vote(db):
    ask(db, "a0")
    ask(db, "a1")
    record_expert_reply(db.sessions, reply(from_expert=True))

    def ids(**params: str) -> list[str]:
        return [r.answer_id for r in review_queue(db.sessions, QueueFilters.parse(params)).rows]

    assert ids() == []  # the default queue shows voted answers; neither has a vote
    assert ids(expert="any") == ["a0"] and ids(expert="accepted") == []
    assert QueueFilters.parse({"expert": "any"}).params() == {"vote": "all", "expert": "any"}
    [row] = review_queue(db.sessions, QueueFilters.parse({"expert": "any"})).rows
    assert row.experts == 1
    record_expert_reply(db.sessions, reply(accepted=True))
    assert ids(expert="accepted") == ["a0"]
    assert ids(expert="bogus") == []  # an unknown value is no filter: back to the voted default


def test_approval_makes_it_the_curated_answer_with_the_version_check(db):
    ask(db)
    record_expert_reply(db.sessions, reply())
    save_review(db.sessions, "a0", action="tag", reviewer="ann", expected_version=0, tags=["vpn"])
    with pytest.raises(Conflict):
        approve_expert_answer(db.sessions, "a0", "slack:C1:2.0", reviewer="rita", expected_version=0)
    assert relevance_signals(db.sessions) == []  # a lost race approves nothing
    with pytest.raises(ReviewError):
        approve_expert_answer(db.sessions, "a0", "slack:C1:9.9", reviewer="rita", expected_version=1)
    state = approve_expert_answer(db.sessions, "a0", "slack:C1:2.0", reviewer="rita", expected_version=1)
    assert (state.status, state.ideal_answer, state.tags) == (
        "edited",
        "Use the v3 client.",
        ("vpn", "expert"),
    )
    assert get_state(db.sessions, "a0").version == 2
    [signal] = relevance_signals(db.sessions)
    assert (signal.question, signal.expert_answer) == ("How do I set up the VPN?", "Use the v3 client.")
    assert signal.doc_ids == tuple(c.doc_id for c in interaction("a0", "q").answer.citations)
    assert expert_answers(db.sessions, "a0")[0].approved_by == "rita"


def test_0005_adds_and_removes_the_expert_tables(db):
    db.downgrade("0004")
    with db.engine.connect() as conn:
        assert not {"escalations", "expert_answers"} & set(inspect(conn).get_table_names())
    db.upgrade("0005")
    with db.engine.connect() as conn:
        assert {"escalations", "expert_answers"} <= set(inspect(conn).get_table_names())
    ask(db)
    assert record_escalation(db.sessions, escalated())
    db.upgrade()
    assert db.current() == db.head()
