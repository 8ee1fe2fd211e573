"""Document-diverse top-k: a long page that matches everywhere can't fill the whole top-k."""

from __future__ import annotations

from pathlib import Path

from knowledge.vector_store import cap_per_document, rank_documents
from tests.conftest import corpus_sources, write

# One long page about rotating the signing keys (many chunks), and two short pages that each
# hold part of what a key rotation needs.
LONG = "# Signing key rotation\n\n" + "\n\n".join(
    f"## Step {i}\n\nRotate the signing key of the release pipeline: step {i} of the signing key "
    f"rotation runbook checks the key fingerprint and the signing key expiry (part {i})."
    for i in range(1, 9)
)
VAULT = (
    "# Vault paths\n\nThe release signing key lives in Vault under secret/release/signing. "
    "Rotating it needs the release-admins group."
)
NOTICE = (
    "# Announcing a rotation\n\nBefore a signing key rotation, post in #releases so nobody tags "
    "a release with the old key while it rotates."
)


def corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    write(docs, "runbooks/key-rotation.md", LONG)
    write(docs, "ops/vault.md", VAULT)
    write(docs, "ops/announce.md", NOTICE)
    return docs


def test_the_cap_keeps_rank_order_and_fills_when_short():
    ranked = ["a1", "a2", "b1", "a3", "c1", "b2"]
    doc = lambda item: item[0]  # noqa: E731 - the document is the first letter
    assert cap_per_document(ranked, doc, 4, 0) == ["a1", "a2", "b1", "a3"]
    assert cap_per_document(ranked, doc, 4, 1) == ["a1", "b1", "c1", "a2"]  # a2 fills the fourth place
    assert cap_per_document(ranked, doc, 4, 2) == ["a1", "a2", "b1", "c1"]
    assert cap_per_document(ranked, doc, 3, 1) == ["a1", "b1", "c1"]


def test_a_page_matching_in_several_places_moves_up():
    scores = {"a1": 1.0, "b1": 0.9, "b2": 0.5, "b3": 0.4, "c1": 0.3, "a2": 0.1}
    ranked = list(scores)
    doc = lambda item: item[0]  # noqa: E731
    # b: 0.9 + 0.2 * (0.5 + 0.4) = 1.08 beats a: 1.0 + 0.2 * 0.1 = 1.02
    assert rank_documents(ranked, doc, scores.__getitem__, 0.2) == ["b1", "b2", "b3", "a1", "a2", "c1"]
    # a small boost keeps the best chunk first
    assert rank_documents(ranked, doc, scores.__getitem__, 0.05)[:2] == ["a1", "a2"]
    assert cap_per_document(rank_documents(ranked, doc, scores.__getitem__, 0.2), doc, 3, 1) == [
        "b1",
        "a1",
        "c1",
    ]


def test_one_long_page_does_not_fill_the_top_k(tmp_path, make_knowledge):
    docs = corpus(tmp_path)
    question = "how do we rotate the release signing key?"
    chunking = {"size": 48, "overlap": 0}

    plain = make_knowledge(
        corpus_sources(docs), chunking=chunking, retrieval={"max_per_doc": 0}, data_dir=tmp_path / "plain"
    )
    assert plain.sync("handbook").error is None
    assert plain.store.count_chunks() >= 8
    undiverse = [c.path for c in plain.engine.search(question, top_k=4)]
    assert undiverse.count("runbooks/key-rotation.md") >= 3, undiverse  # the problem, as it was

    diverse = make_knowledge(
        corpus_sources(docs),
        chunking=chunking,
        retrieval={"max_per_doc": 2, "context_chunks": 0},
        data_dir=tmp_path / "diverse",
    )
    assert diverse.sync("handbook").error is None
    answer = diverse.answer(question, top_k=4)
    paths = [c.path for c in answer.chunks]
    assert len(paths) == 4
    assert paths.count("runbooks/key-rotation.md") <= 2, paths
    assert {"ops/vault.md", "ops/announce.md"} <= set(paths), paths
    # Citations still name the chunks the answer was given.
    assert answer.citations
    assert {c.path for c in answer.citations} <= set(paths)
    assert {c.doc_id for c in answer.citations} <= {c.doc_id for c in answer.chunks}


def test_the_answer_reads_more_of_the_best_page_without_changing_the_ranking(tmp_path, make_knowledge):
    docs = corpus(tmp_path)
    question = "how do we rotate the release signing key?"
    chunking = {"size": 48, "overlap": 0}
    capped = {"max_per_doc": 1}

    def knowledge(name: str, **retrieval: int):
        kn = make_knowledge(
            corpus_sources(docs), chunking=chunking, retrieval=retrieval, data_dir=tmp_path / name
        )
        assert kn.sync("handbook").error is None
        return kn

    plain = knowledge("plain", **capped, context_chunks=0)
    wider = knowledge("wider", **capped, context_chunks=2)
    ranking = [c.chunk_id for c in plain.engine.search(question, top_k=3)]
    assert [c.chunk_id for c in wider.engine.search(question, top_k=3)] == ranking  # search: unchanged

    answer = wider.answer(question, top_k=3)
    assert [c.chunk_id for c in answer.chunks[:3]] == ranking  # the top-k first, as ranked
    more = answer.chunks[3:]
    assert len(more) == 2, [c.path for c in answer.chunks]
    assert {c.doc_id for c in more} == {answer.chunks[0].doc_id}  # more of the best page only
    assert not {c.chunk_id for c in more} & set(ranking)
    assert {c.n for c in more} == {answer.chunks[0].n}  # cited under the best page's number
    assert len(plain.answer(question, top_k=3).chunks) == 3

    class LanguageModel:  # records what a model would be prompted with
        name = "recording"

        def __init__(self) -> None:
            self.seen: list[list[str]] = []

        def generate(self, question, chunks, history):
            self.seen.append([c.chunk_id for c in chunks])
            return "Rotate it with the release team [1]."

    model = LanguageModel()
    wider.engine.generator = model
    prompted = wider.answer(question, top_k=3)
    assert model.seen == [ranking]  # the top-k only: more of the page is the extractive picker's
    assert [c.chunk_id for c in prompted.chunks] == ranking  # and the record holds what it saw
