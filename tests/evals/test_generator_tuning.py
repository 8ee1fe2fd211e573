"""The answer-model benchmark's split and curated answers (bench/generator_tuning.py): held-out
questions share no document with the training ones, and a curated answer quotes its facts with
the citation number the prompt gave their document."""

from __future__ import annotations

from bench.generator_tuning import groups, ideal_answer, split
from knowledge.answer import ABSTAIN_TEXT, RetrievedChunk
from knowledge.evaluate import NOT_IN_CORPUS, Question, load_questions
from knowledge.prompt import number_by_document
from tests.conftest import HANDBOOK


def test_the_handbook_splits_in_halves_by_document() -> None:
    questions = load_questions(HANDBOOK / "questions.jsonl")
    train, held = split(questions, seed=0)
    assert sorted(q.id for q in train + held) == sorted(q.id for q in questions)
    assert abs(len(train) - len(held)) <= 2
    for side in (train, held):
        assert 4 <= sum(q.kind == NOT_IN_CORPUS for q in side) <= 7
    train_docs = {d for q in train for d in q.sources}
    assert not train_docs & {d for q in held for d in q.sources}  # no document on both sides
    assert split(questions, seed=0) == (train, held)  # seeded
    assert split(questions, seed=1) != (train, held)
    group_of = groups(questions)
    multi = next(q for q in questions if len(q.sources) == 2)
    assert all(d in group_of[multi.id].split("+") for d in multi.sources)


def _chunk(doc: str, text: str) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=doc, doc_id=doc, source="handbook", path=doc, title=doc, url="", text=text, score=1.0,
        doc_hash="h",
    )  # fmt: skip


def test_a_curated_answer_quotes_each_fact_with_its_documents_number() -> None:
    other = _chunk("it/vpn.md", "Install the VPN client from Self Service. Sign in with Okta.")
    own = _chunk(
        "it/laptops.md",
        "# Laptops\n\nLaptops are replaced every 3 years. Ask IT for a loaner while yours is repaired.",
    )
    chunks = [other, own]
    number_by_document(chunks)
    question = Question(
        id="q", question="how often do we get new laptops", sources=["it/laptops.md"], facts=["3 years"],
        kind="factual",
    )  # fmt: skip
    made = ideal_answer(question, chunks, checker=None, max_quotes=3)
    assert made is not None
    text, how = made
    assert text == "Laptops are replaced every 3 years. [2]"
    assert how["facts_found"] == ["3 years"]

    outside = question.model_copy(update={"kind": NOT_IN_CORPUS, "sources": [], "facts": []})
    assert ideal_answer(outside, chunks, checker=None, max_quotes=3) == (
        f"{ABSTAIN_TEXT}.",
        {"how": "abstain"},
    )
    elsewhere = question.model_copy(update={"sources": ["hr/benefits.pdf"]})
    assert ideal_answer(elsewhere, chunks, checker=None, max_quotes=3) is None  # nothing of it to cite
