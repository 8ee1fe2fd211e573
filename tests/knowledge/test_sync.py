"""Incremental sync against real Qdrant local mode and real MiniLM embeddings."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from knowledge.embeddings import local_model_path
from knowledge.store import ModelMismatch
from tests.conftest import write

TOPICS = {
    "it/vpn.md": "# VPN\n\nWe use WireGuard for remote access.\n\n## Setup\n\nInstall WireGuard from "
    "Self Service and sign in with Okta.\n\n## Problems\n\nRestart the client, then ask in #it-help.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year.\n\n## Carry over\n\n"
    "Up to five unused days carry over into the next year.\n",
    "expenses/travel.md": "# Travel\n\nThe domestic per diem is 75 dollars a day.\n\n## Hotels\n\n"
    "Book hotels through Navan; the nightly cap is 250 dollars.\n",
    "oncall/paging.md": "# Paging\n\nA SEV1 pages the incident commander within five minutes.\n\n"
    "## Escalation\n\nIf nobody acknowledges in 15 minutes, page the engineering manager.\n",
    "security/phishing.md": "# Phishing\n\nForward suspicious emails to phishing@northwind.example.\n",
    "engineering/review.md": "# Code review\n\nEvery change needs one approving review before merge.\n",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel, text in TOPICS.items():
        write(root, rel, text)
    return root


@pytest.fixture
def kn(make_knowledge, corpus):
    return make_knowledge([{"name": "hb", "type": "directory", "path": str(corpus)}])


def chunks_by_doc(kn) -> Counter[str]:
    return Counter(doc for _chunk, doc in kn.store.chunk_ids("hb"))


def top_paths(kn, query: str, k: int = 3) -> list[str]:
    return [c.path for c in kn.engine.search(query, top_k=k)]


def test_first_sync_indexes_every_document(kn):
    result = kn.sync("hb")
    assert (result.added, result.changed, result.deleted, result.unchanged) == (6, 0, 0, 0)
    assert result.error is None
    assert result.chunks_embedded == kn.store.count_chunks("hb") > 6
    assert top_paths(kn, "how many vacation days do I get")[0] == "hr/leave.md"


def test_documents_across_several_read_ahead_batches_are_all_indexed(make_knowledge, tmp_path):
    # batch_docs 8: the read-ahead hands over 1 document first (so the model starts at once),
    # then 8, 8 and the last 3; every one of the 20 must land, with its own chunks.
    root = tmp_path / "many"
    for i in range(20):
        write(root, f"topic{i:02d}.md", f"# Topic {i}\n\nCode word zq{i:02d}x belongs to topic {i}.\n")
    kn = make_knowledge([{"name": "hb", "type": "directory", "path": str(root)}], index={"batch_docs": 8})
    result = kn.sync("hb")
    assert (result.added, result.error) == (20, None)
    assert len(chunks_by_doc(kn)) == 20 and result.chunks_embedded == kn.store.count_chunks("hb")
    assert [c.path for c in kn.engine.search("zq13x", top_k=1, mode="sparse")] == ["topic13.md"]


def test_resync_without_changes_embeds_nothing(kn):
    kn.sync("hb")
    again = kn.sync("hb")
    assert (again.added, again.changed, again.deleted, again.unchanged) == (0, 0, 0, 6)
    assert again.chunks_embedded == 0


def test_editing_one_document_reembeds_exactly_its_chunks(kn, corpus):
    kn.sync("hb")
    before = chunks_by_doc(kn)
    ids_before = dict(kn.store.chunk_ids("hb"))
    write(
        corpus,
        "expenses/travel.md",
        "# Travel\n\nThe domestic per diem is 90 dollars a day.\n\n## Hotels\n\n"
        "Book hotels through Navan; the nightly cap is 300 dollars.\n\n## Trains\n\nTake the train "
        "for trips under four hours; first class is not reimbursed.\n",
    )
    result = kn.sync("hb")
    after = chunks_by_doc(kn)
    assert (result.added, result.changed, result.deleted, result.unchanged) == (0, 1, 0, 5)
    assert result.chunks_embedded == after["hb:expenses/travel.md"]  # that document's chunks, no more
    assert after["hb:expenses/travel.md"] > before["hb:expenses/travel.md"]
    untouched = {c: d for c, d in ids_before.items() if d != "hb:expenses/travel.md"}
    assert untouched.items() <= dict(kn.store.chunk_ids("hb")).items()
    assert sum(after.values()) == kn.store.count_chunks("hb")  # no stale chunks left behind
    hit = kn.engine.search("is first class train travel reimbursed", top_k=1)[0]
    assert hit.path == "expenses/travel.md" and "train" in hit.text


def test_deleting_a_document_removes_it_from_search(kn, corpus):
    kn.sync("hb")
    (corpus / "security/phishing.md").unlink()
    result = kn.sync("hb")
    assert result.deleted == 1
    assert "hb:security/phishing.md" not in chunks_by_doc(kn)
    assert "security/phishing.md" not in top_paths(kn, "where do I forward suspicious phishing emails", k=6)


def test_rename_is_a_delete_plus_an_add(kn, corpus):
    kn.sync("hb")
    (corpus / "hr/leave.md").rename(corpus / "hr/time-off.md")
    result = kn.sync("hb")
    assert (result.added, result.deleted, result.changed) == (1, 1, 0)
    docs = chunks_by_doc(kn)
    assert "hb:hr/leave.md" not in docs and docs["hb:hr/time-off.md"] > 0
    assert top_paths(kn, "how many vacation days do I get")[0] == "hr/time-off.md"


def test_full_rebuild_gives_the_same_results_as_a_fresh_index(kn, corpus, make_knowledge, tmp_path):
    kn.sync("hb")
    write(
        corpus,
        "hr/leave.md",
        TOPICS["hr/leave.md"] + "\n## Sabbatical\n\nAfter five years you may take "
        "a four week paid sabbatical.\n",
    )
    (corpus / "engineering/review.md").unlink()
    kn.sync("hb")
    kn.sync("hb", full=True)
    fresh = make_knowledge(
        [{"name": "hb", "type": "directory", "path": str(corpus)}], data_dir=tmp_path / "fresh"
    )
    fresh.sync("hb")
    assert sorted(kn.store.chunk_ids("hb")) == sorted(fresh.store.chunk_ids("hb"))
    for query in (
        "sabbatical after five years",
        "hotel nightly cap",
        "who gets paged for a SEV1",
        "code review",
    ):
        ours = [(c.chunk_id, round(c.score, 3)) for c in kn.engine.search(query, top_k=4)]
        theirs = [(c.chunk_id, round(c.score, 3)) for c in fresh.engine.search(query, top_k=4)]
        assert ours == theirs, query


def test_one_source_never_touches_another(make_knowledge, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "one.md", "# One\n\nThe office opens at nine.\n")
    write(b, "two.md", "# Two\n\nThe office closes at six.\n")
    kn = make_knowledge(
        [
            {"name": "a", "type": "directory", "path": str(a)},
            {"name": "b", "type": "directory", "path": str(b)},
        ]
    )
    kn.sync("a")
    kn.sync("b")
    assert kn.sync("a").deleted == 0
    assert kn.store.count_chunks("b") == 1 and kn.store.count_chunks("a") == 1


def test_switching_embedding_models_is_refused(kn, make_knowledge, corpus, tmp_path):
    kn.sync("hb")
    kn.close()
    other = tmp_path / "paraphrase-model"  # the same weights under another name: a different model
    shutil.copytree(local_model_path(kn.settings.embedding), other)
    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder
    from knowledge.service import Knowledge

    settings = kn.settings.model_copy(update={"embedding": EmbeddingSettings(model=str(other))})
    switched = Knowledge(settings, embedder=build_embedder(settings.embedding))
    try:
        with pytest.raises(ModelMismatch, match=r"lore index --full"):
            switched.sync("hb")
        with pytest.raises(ModelMismatch, match=r"all-MiniLM-L6-v2"):
            switched.answer("how many vacation days")
        switched.rebuild()  # what `lore index --full` does first
        assert switched.sync("hb").added == 6
        assert switched.store.collection_info()["model"] == "paraphrase-model"
    finally:
        switched.close()


def test_interrupted_batch_is_cleared_before_the_next_sync(kn, corpus):
    kn.sync("hb")
    # What a crash mid-batch leaves: the journal names a document whose vectors are half written.
    kn.store.put_state("pending", "hb", {"doc_ids": ["hb:hr/leave.md"]})
    result = kn.sync("hb")
    assert result.added == 1  # re-indexed from scratch, not trusted
    assert kn.store.get_state("pending", "hb") is None
    assert sum(chunks_by_doc(kn).values()) == kn.store.count_chunks("hb")
