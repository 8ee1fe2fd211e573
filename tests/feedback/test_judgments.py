"""Relevance judgments in the feedback log (feedback/judgments.py), on SQLite and on the real
PostgreSQL: one verdict per (answer, chunk), replaced by a later one, cleared, listed and counted."""

from __future__ import annotations

import pytest

from feedback.judgments import (
    Passage,
    clear_judgment,
    count_judgments,
    judgments_for,
    record_judgment,
)
from feedback.reviews import ReviewError
from feedback.store import record_interaction
from tests.feedback.test_store import interaction

LEAVE = Passage("c-1", "hb:hr/leave.md", "hr/leave.md", "sha-v1", "Everyone gets 25 days.", "Leave")
VPN = Passage("c-9", "hb:it/vpn.md", "it/vpn.md", "sha-v4", "Install WireGuard.", "VPN", ("group:it",))


def test_a_later_verdict_replaces_the_earlier_one_and_clearing_forgets_it(db):
    record_interaction(db.sessions, interaction("a1"))
    record_judgment(db.sessions, "a1", LEAVE, relevant=False, origin="retrieved", reviewer="rex")
    record_judgment(db.sessions, "a1", LEAVE, relevant=True, origin="retrieved", reviewer="ada")
    record_judgment(db.sessions, "a1", VPN, relevant=True, origin="attached", reviewer="rex")

    first, second = judgments_for(db.sessions, "a1")
    assert (first.passage, first.relevant, first.origin, first.reviewer) == (LEAVE, True, "retrieved", "ada")
    assert (second.passage, second.origin) == (VPN, "attached")
    assert second.passage.access == ("group:it",) and second.passage.restricted
    assert count_judgments(db.sessions).__dict__ == {
        "relevant": 2,
        "not_relevant": 0,
        "attached": 1,
        "answers": 1,
    }

    assert clear_judgment(db.sessions, "a1", "c-9") is True
    assert clear_judgment(db.sessions, "a1", "c-9") is False
    assert [j.passage.chunk_id for j in judgments_for(db.sessions, "a1")] == ["c-1"]
    assert judgments_for(db.sessions, "other") == []


def test_judgments_are_per_answer(db):
    record_interaction(db.sessions, interaction("a1"))
    record_interaction(db.sessions, interaction("a2"))
    record_judgment(db.sessions, "a1", LEAVE, relevant=True, origin="retrieved", reviewer="rex")
    record_judgment(db.sessions, "a2", LEAVE, relevant=False, origin="retrieved", reviewer="rex")
    assert [j.relevant for j in judgments_for(db.sessions, "a1")] == [True]
    assert [j.relevant for j in judgments_for(db.sessions, "a2")] == [False]
    counts = count_judgments(db.sessions)
    assert (counts.relevant, counts.not_relevant, counts.answers) == (1, 1, 2)


def test_nonsense_is_refused(db):
    record_interaction(db.sessions, interaction("a1"))
    with pytest.raises(ReviewError, match="no answer"):
        record_judgment(db.sessions, "nope", LEAVE, relevant=True, origin="retrieved", reviewer="rex")
    with pytest.raises(ReviewError, match="relevant"):
        record_judgment(db.sessions, "a1", LEAVE, relevant=False, origin="attached", reviewer="rex")
    empty = Passage("c-2", "hb:x.md", "x.md", "h", "  ")
    with pytest.raises(ReviewError, match="text"):
        record_judgment(db.sessions, "a1", empty, relevant=True, origin="retrieved", reviewer="rex")
    assert judgments_for(db.sessions, "a1") == []
