"""Training labels from the feedback log (feedback/tuning.py), read from a real SQLite database
written through the real store functions: judged and curated pairs, their negatives, groups,
held-out questions, restricted passages, and the exports' redaction."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.settings import Settings
from feedback.db import Database
from feedback.judgments import Passage, record_judgment
from feedback.reviews import save_review
from feedback.schema import InteractionRecord, VoteRecord
from feedback.store import record_interaction, record_vote
from feedback.tuning import curated, held_out_questions, judged, labels
from knowledge.answer import Answer, Citation, RetrievedChunk
from knowledge.tuning.data import HeldOutQuestion, split
from tests.feedback.test_store import T0

T1 = T0 + timedelta(minutes=1)

LEAVE = "Everyone gets 25 days of paid leave a year."
CARRY = "Up to five unused leave days carry over to the next year."
VPN = "Install WireGuard from Self Service and sign in with Okta."
POLICY = "The leave policy: 25 days, plus public holidays."
SLACK_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"


def chunk(
    chunk_id: str, path: str, text: str, n: int | None, access: tuple[str, ...] = ("public",)
) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=chunk_id, doc_id=f"hb:{path}", source="hb", path=path, title=path, url=f"file:///{path}",
        text=text, score=0.5, doc_hash="sha-1", n=n, access=list(access),
    )  # fmt: skip


def logged(
    answer_id: str, question: str, text: str, chunks: list[RetrievedChunk], *, abstained=False
) -> InteractionRecord:
    cited = {c.n: c for c in chunks if c.n is not None}
    citations = [
        Citation(n=n, title=c.title, url=c.url, source="hb", path=c.path, doc_id=c.doc_id, score=c.score)
        for n, c in sorted(cited.items())
    ]
    answer = Answer(
        answer_id=answer_id, question=question, text=text, abstained=abstained, model="extractive",
        prompt_version="v3", chunks=chunks, citations=citations,
    )  # fmt: skip
    return InteractionRecord(
        answer=answer, correlation_id="c", platform="slack", user_hash="u_1", created_at=T0
    )


@pytest.fixture
def sessions(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'feedback.sqlite3'}")
    db.upgrade()
    yield db.sessions
    db.dispose()


def judge(sessions, answer_id: str, c: RetrievedChunk, relevant: bool, origin="retrieved") -> None:
    passage = Passage.of(c.model_dump())
    record_judgment(sessions, answer_id, passage, relevant=relevant, origin=origin, reviewer="rex")


def review(sessions, answer_id: str, action: str, ideal: str | None = None) -> None:
    save_review(sessions, answer_id, action=action, reviewer="rex", expected_version=0, ideal_answer=ideal)


def test_judged_pairs_carry_the_questions_negatives_and_share_a_group_with_paraphrases(sessions):
    leave, vpn = chunk("c-leave", "hr/leave.md", LEAVE, 1), chunk("c-vpn", "it/vpn.md", VPN, None)
    record_interaction(sessions, logged("a1", "How many leave days do I get?", "25 days [1].", [leave, vpn]))
    record_interaction(sessions, logged("a2", "how many   LEAVE days do I get", "25 [1].", [leave, vpn]))
    record_interaction(sessions, logged("a3", "How many leave days do I get per year?", "25 [1].", [leave]))
    judge(sessions, "a1", leave, True)
    judge(sessions, "a1", vpn, False)
    judge(sessions, "a1", chunk("c-policy", "hr/policy.md", POLICY, None), True, origin="attached")
    judge(sessions, "a2", leave, True)  # the same question and passage again: one pair
    judge(sessions, "a3", leave, True)

    pairs, questions = judged(sessions)
    by_id = {(p.query, p.positive_id): p for p in pairs}
    assert sorted(by_id) == [
        ("How many leave days do I get per year?", "c-leave"),
        ("How many leave days do I get?", "c-leave"),
        ("How many leave days do I get?", "c-policy"),
    ]
    first = by_id[("How many leave days do I get?", "c-leave")]
    assert (first.kind, first.positive, first.path, first.negatives) == (
        "judged",
        LEAVE,
        "hr/leave.md",
        (VPN,),
    )
    assert by_id[("How many leave days do I get?", "c-policy")].negatives == (VPN,)
    assert by_id[("How many leave days do I get per year?", "c-leave")].negatives == ()  # another question
    assert {p.group for p in pairs} == {"how many leave days do i get"}  # paraphrases: one group

    assert sorted(questions, key=lambda q: q.question) == [
        HeldOutQuestion(
            "How many leave days do I get per year?",
            "how many leave days do i get",
            paths=frozenset({"hr/leave.md"}),
            chunk_ids=frozenset({"c-leave"}),
        ),
        HeldOutQuestion(
            "How many leave days do I get?",
            "how many leave days do i get",
            paths=frozenset({"hr/leave.md", "hr/policy.md"}),
            chunk_ids=frozenset({"c-leave", "c-policy"}),
        ),
    ]
    _train, kept = split(pairs, seed=0, share=1.0)
    assert held_out_questions(questions, {p.group for p in kept}) == questions
    assert held_out_questions(questions, {"something else"}) == []
    assert curated(sessions) == []  # nothing approved or edited


def test_curated_pairs_are_the_chunks_the_curated_answer_cites(sessions):
    leave, carry = chunk("c-leave", "hr/leave.md", LEAVE, 1), chunk("c-carry", "hr/carry.md", CARRY, 2)
    vpn = chunk("c-vpn", "it/vpn.md", VPN, None)
    for answer_id, question in [
        ("approved", "How many leave days do I get?"),
        ("edited", "Do leave days carry over?"),
        ("abstained", "What is the leave policy on Mars?"),
        ("rejected", "Leave for interns?"),
        ("new", "Leave for contractors?"),
    ]:
        abstained = answer_id == "abstained"
        record_interaction(
            sessions, logged(answer_id, question, "25 days [1].", [leave, carry, vpn], abstained=abstained)
        )
    review(sessions, "approved", "approve")
    review(sessions, "edited", "edit", ideal="Up to five days carry over [2].")  # not [1]
    review(sessions, "abstained", "approve")
    review(sessions, "rejected", "reject")

    pairs = curated(sessions)
    assert [(p.query, p.positive_id, p.kind) for p in pairs] == [
        ("How many leave days do I get?", "c-leave", "curated"),
        ("Do leave days carry over?", "c-carry", "curated"),
    ]
    assert pairs[0].group == "how many leave days do i get" and pairs[1].path == "hr/carry.md"
    assert judged(sessions) == ([], [])


def test_irrelevant_sources_are_negatives_never_positives_and_judgments_win(sessions):
    leave, carry = chunk("c-leave", "hr/leave.md", LEAVE, 1), chunk("c-carry", "hr/carry.md", CARRY, 1)
    question = "How many leave days do I get?"
    record_interaction(sessions, logged("good", question, "25 days [1].", [leave]))
    record_interaction(sessions, logged("bad", question, "It carries over [1].", [carry]))
    both = [leave, chunk("c-carry", "hr/carry.md", CARRY, 2)]
    record_interaction(sessions, logged("also", question, "25 days [1], see [2].", both))
    record_interaction(sessions, logged("judged", "Do leave days expire?", "No [1] [2].", both))
    record_interaction(sessions, logged("again", "Do leave days expire?", "They carry [1].", [carry]))
    for answer_id in ("good", "bad", "also", "judged", "again"):
        review(sessions, answer_id, "approve")
    down = VoteRecord(
        answer_id="bad",
        user_hash="u_2",
        platform="slack",
        value="down",
        reason="irrelevant_sources",
        created_at=T0,
    )
    record_vote(sessions, down)  # approved, but a user says its sources were irrelevant
    judge(sessions, "judged", carry, False)  # a reviewer's verdict beats the weak label

    found = labels(sessions)
    assert [(p.query, p.positive_id, p.negatives) for p in found.curated] == [
        (question, "c-leave", (CARRY,)),  # "also" cites c-carry too: never a positive of this question
        ("Do leave days expire?", "c-leave", (CARRY,)),  # judged not relevant: a negative, not a positive
    ]  # and not from "again" either: the judgment holds for the question
    assert found.judged == []

    # A later 👍 from the same user replaces the 👎: the label goes with it.
    record_vote(
        sessions, VoteRecord(answer_id="bad", user_hash="u_2", platform="slack", value="up", created_at=T1)
    )
    assert {p.positive_id for p in curated(sessions) if p.query == question} == {"c-leave", "c-carry"}


def test_restricted_passages_are_left_out_unless_asked_for(sessions):
    secret = chunk("c-pay", "hr/pay.md", "The L5 band is 120k.", 1, access=("group:hr",))
    record_interaction(sessions, logged("a1", "What is the L5 band?", "120k [1].", [secret]))
    judge(sessions, "a1", secret, True)
    review(sessions, "a1", "approve")
    found = labels(sessions)
    assert found.judged == [] and found.curated == [] and found.questions == []
    assert found.left_out == {"restricted passage": 1}  # the curated duplicate of the judgment never counts
    everything = labels(sessions, include_restricted=True)
    assert [p.positive_id for p in everything.judged] == ["c-pay"] and everything.curated == []


def test_queries_passages_negatives_and_groups_are_redacted_as_exports_are(sessions):
    token = chunk("c-bot", "it/slack.md", f"The bot token is {SLACK_TOKEN} for the deploy bot.", 1)
    wiki = chunk("c-wiki", "it/wiki.md", "See https://wiki.corp.example/pages/42 for details.", None)
    question = "Ada Lovelace (ada.lovelace@northwindlabs.com) asks: what is the deploy bot token?"
    record_interaction(sessions, logged("a1", question, "It is in the vault [1].", [token, wiki]))
    judge(sessions, "a1", token, True)
    judge(sessions, "a1", wiki, False)

    settings = Settings(feedback={"private_url_patterns": [r"wiki\.corp\.example"]})
    found = labels(sessions, settings)
    [pair] = found.judged
    assert "northwindlabs" not in pair.query and "[EMAIL]" in pair.query
    assert "Lovelace" not in pair.query and "lovelace" not in pair.group
    assert SLACK_TOKEN not in pair.positive and "[SLACK_TOKEN]" in pair.positive
    assert pair.negatives == ("See [PRIVATE_URL] for details.",)
    [q] = found.questions
    assert q.question == pair.query and q.group == pair.group
    assert found.redactions["email"] == 1 and found.redactions["slack_token"] == 1
    assert found.redactions["private_url"] == 1


def test_passages_of_an_attached_file_never_become_training_pairs(sessions, embedder):
    """An answer that read an attached file (the real `attachment_chunks` on MiniLM) and cited it:
    approved, and its passage judged relevant, it still gives the retriever nothing (the file was
    never indexed), and is counted as left out. The index's own cited chunk still counts."""
    import numpy as np

    from knowledge.attachments import attachment_chunks

    question = "when is the backup window in this runbook?"
    runbook = {
        "name": "runbook.txt",
        "text": "The nightly backup window is 02:00 to 04:00 UTC, owner ops@acme.com.",
    }
    [attached], _best = attachment_chunks(
        question, [runbook], lambda texts: np.asarray(embedder.query_model.get_text_embedding_batch(texts))
    )
    attached = attached.model_copy(update={"n": 1})
    leave = chunk("c-leave", "hr/leave.md", LEAVE, 2)
    record_interaction(
        sessions, logged("a1", question, "02:00 to 04:00 UTC [1], see also [2].", [attached, leave])
    )
    judge(sessions, "a1", attached, True)
    review(sessions, "a1", "approve")

    found = labels(sessions, include_restricted=True)
    assert found.judged == [] and found.questions == []
    assert [p.positive_id for p in found.curated] == ["c-leave"]
    assert found.left_out == {"attachment passage": 1}  # judged, so never also a curated pair
    assert not any("02:00" in p.positive or "02:00" in " ".join(p.negatives) for p in found.curated)


def test_an_approved_expert_answer_teaches_the_chunks_that_hold_its_specifics(sessions):
    from feedback.experts import approve_expert_answer, record_expert_reply
    from feedback.schema import ExpertReplyRecord

    leave, carry = chunk("c-leave", "hr/leave.md", LEAVE, 1), chunk("c-carry", "hr/carry.md", CARRY, 2)
    vpn = chunk("c-vpn", "it/vpn.md", VPN, 3)

    def expert(answer_id: str, question: str, text: str) -> None:
        found = [leave, carry, vpn]
        record_interaction(sessions, logged(answer_id, question, "I couldn't find that.", found))
        record_expert_reply(
            sessions,
            ExpertReplyRecord(
                reply_id=f"slack:C1:{answer_id}", answer_id=answer_id, platform="slack", channel="C1",
                thread="1.0", message_id=answer_id, author_hash="u_exp", text=text, from_expert=True,
                accepted=False, created_at=T1,
            ),
        )  # fmt: skip
        reply_id = f"slack:C1:{answer_id}"
        approve_expert_answer(sessions, answer_id, reply_id, reviewer="rita", expected_version=0)

    # "25" is in the leave chunk only; the link names the VPN page.
    expert("e1", "How much paid leave do we get?", "You get 25 days a year.")
    expert("e2", "Which VPN client?", "See file:///it/vpn.md, it's WireGuard.")
    expert("e3", "Can I bring my dog to the office?", "Yes, on Fridays.")  # nothing Lore found backs it

    pairs = {(p.query, p.positive_id): p.kind for p in curated(sessions)}
    assert pairs == {
        ("How much paid leave do we get?", "c-leave"): "curated",
        ("Which VPN client?", "c-vpn"): "curated",
    }
