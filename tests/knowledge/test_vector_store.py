"""One contract for every embedded engine: Qdrant Edge (Rust, in-process) and Qdrant local mode.

Real engines, real MiniLM vectors, real BM25 sparse vectors: upsert, delete by document,
source filters, persistence across restarts, and dense / sparse / hybrid queries.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from knowledge.backends import SearchRequest
from knowledge.store import DataDirLocked, LayoutMismatch
from tests.conftest import write

ENGINES = ["edge", "qdrant-local"]

DOCS = {
    "it/vpn.md": "# VPN\n\nWe use WireGuard for remote access. Install it from Self Service and sign in "
    "with Okta.\n",
    "it/errors.md": "# Error codes\n\nError XK-4471 means the badge reader lost its licence server. "
    "Power-cycle the reader.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year. Up to five unused days carry "
    "over into the next year.\n",
    "expenses/travel.md": "# Travel\n\nThe domestic per diem is 75 dollars a day. Book hotels through "
    "Navan; the nightly cap is 250 dollars.\n",
}
OTHER = {
    "wiki/lunch.md": "# Lunch\n\nLunch is served in the canteen at noon; the vegetarian option is "
    "always on the left.\n"
}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    roots = {"hb": tmp_path / "hb", "wiki": tmp_path / "wiki"}
    for rel, text in DOCS.items():
        write(roots["hb"], rel, text)
    for rel, text in OTHER.items():
        write(roots["wiki"], rel, text)
    return roots


def sources(corpus: dict[str, Path]) -> list[dict[str, str]]:
    return [{"name": n, "type": "directory", "path": str(p)} for n, p in corpus.items()]


@pytest.fixture
def kn(make_knowledge, corpus, engine):
    kn = make_knowledge(sources(corpus), index={"engine": engine})
    assert kn.sync("hb").error is None and kn.sync("wiki").error is None
    return kn


def paths(kn, query: str, **kwargs) -> list[str]:
    return [c.path for c in kn.engine.search(query, **kwargs)]


def test_upsert_then_every_query_mode_finds_the_document(kn, engine):
    assert kn.store.collection_info()["engine"] == engine
    assert kn.store.count_chunks() == len(DOCS) + len(OTHER)
    for mode in ("dense", "sparse", "hybrid"):
        assert paths(kn, "how many vacation days do I get", top_k=2, mode=mode)[0] == "hr/leave.md", mode
    hit = kn.engine.search("nightly hotel cap", top_k=1)[0]
    assert hit.path == "expenses/travel.md" and "250 dollars" in hit.text and hit.title == "Travel"
    assert hit.dense_score is not None and 0 < hit.dense_score <= 1


def test_hybrid_finds_an_exact_code_that_dense_search_ranks_low(kn):
    # A rare token: BM25 (with IDF) matches it exactly; RRF keeps it on top.
    assert paths(kn, "XK-4471", top_k=1, mode="sparse") == ["it/errors.md"]
    assert paths(kn, "XK-4471", top_k=1, mode="hybrid") == ["it/errors.md"]
    hybrid = kn.engine.search("XK-4471", top_k=3, mode="hybrid")
    # Reciprocal-rank fusion, sum of 1 / (k + rank) with k = 1 and ranks from 0: first in one
    # list scores at least 1, first in both 2.
    k = kn.settings.retrieval.rrf_k
    assert 1 / k <= hybrid[0].score <= 2 / k
    assert hybrid[0].dense_score is not None  # cosine kept beside the fused score


def test_delete_by_document_removes_exactly_its_chunks(kn, corpus):
    before = kn.store.count_chunks("hb")
    (corpus["hb"] / "it/errors.md").unlink()
    assert kn.sync("hb").deleted == 1
    assert kn.store.count_chunks("hb") == before - 1
    assert "hb:it/errors.md" not in {doc for _c, doc in kn.store.chunk_ids("hb")}
    for mode in ("dense", "sparse", "hybrid"):
        assert "it/errors.md" not in paths(kn, "XK-4471 badge reader licence", top_k=5, mode=mode)


def test_source_filter_applies_to_every_mode(kn):
    for mode in ("dense", "sparse", "hybrid"):
        only_wiki = kn.engine.search("paid leave days per year", top_k=5, source="wiki", mode=mode)
        assert {c.source for c in only_wiki} <= {"wiki"}, mode
        only_hb = kn.engine.search("where is lunch served this year", top_k=5, source="hb", mode=mode)
        assert only_hb and {c.source for c in only_hb} == {"hb"}, mode
    assert kn.store.count_chunks("wiki") == 1


def test_the_index_survives_a_restart(kn, make_knowledge, corpus, engine):
    data_dir = kn.settings.data_dir
    query = "which vpn client do we use"
    before = [(c.chunk_id, round(c.score, 4)) for c in kn.engine.search(query, top_k=3)]
    ids = sorted(kn.store.chunk_ids())
    kn.close()
    again = make_knowledge(sources(corpus), index={"engine": engine}, data_dir=data_dir)
    assert sorted(again.store.chunk_ids()) == ids
    assert [(c.chunk_id, round(c.score, 4)) for c in again.engine.search(query, top_k=3)] == before
    resync = again.sync("hb")
    assert resync.unchanged == len(DOCS) and resync.chunks_embedded == 0


def test_both_engines_rank_alike(make_knowledge, corpus, tmp_path):
    runs = {}
    for engine in ENGINES:
        kn = make_knowledge(sources(corpus), index={"engine": engine}, data_dir=tmp_path / engine)
        kn.sync("hb")
        kn.sync("wiki")
        runs[engine] = {
            mode: [c.chunk_id for c in kn.engine.search("hotel cap per night", top_k=4, mode=mode)]
            for mode in ("dense", "sparse", "hybrid")
        }
        kn.close()
    assert runs["edge"] == runs["qdrant-local"]


def test_switching_engines_on_an_existing_index_is_refused_until_rebuilt(kn, make_knowledge, corpus, engine):
    data_dir = kn.settings.data_dir
    kn.close()
    other = next(e for e in ENGINES if e != engine)
    switched = make_knowledge(sources(corpus), index={"engine": other}, data_dir=data_dir)
    with pytest.raises(LayoutMismatch, match=r"lore index --full"):
        switched.sync("hb")
    with pytest.raises(LayoutMismatch, match=engine):
        switched.answer("how many vacation days")
    switched.rebuild()  # what `lore index --full` does first
    assert switched.sync("hb").added == len(DOCS)
    assert switched.store.collection_info()["engine"] == other
    assert paths(switched, "per diem", top_k=1) == ["expenses/travel.md"]


def test_an_index_without_sparse_vectors_is_refused(make_knowledge, corpus, engine):
    kn = make_knowledge(sources(corpus), index={"engine": engine})
    identity = kn.embedder.identity
    old = {"embed_model": identity.name, "dim": identity.dim}  # what the first Lore recorded
    kn.store.backend.create(identity.dim, old)
    with pytest.raises(LayoutMismatch, match=r"without sparse.*lore index --full"):
        kn.sync("hb")


def test_edge_refuses_a_second_opener_of_its_shard(tmp_path):
    from knowledge.backends import BackendLocked
    from knowledge.backends.edge import EdgeBackend

    first = EdgeBackend(tmp_path / "edge", "lore")
    first.create(4, {"embed_model": "x"})
    try:
        with pytest.raises(BackendLocked, match="already open"):
            EdgeBackend(tmp_path / "edge", "lore")
    finally:
        first.close()
    EdgeBackend(tmp_path / "edge", "lore").close()  # free again once closed


def test_second_knowledge_in_one_process_gets_the_lock_message(kn, make_knowledge, corpus, engine):
    with pytest.raises(DataDirLocked, match=r"Qdrant server"):
        make_knowledge(sources(corpus), index={"engine": engine}, data_dir=kn.settings.data_dir).store  # noqa: B018


def test_edge_builds_its_hnsw_off_to_the_side_without_blocking_python(make_knowledge, corpus, monkeypatch):
    """Forced build on a small shard: same results after, and other threads keep running meanwhile."""
    import knowledge.backends.edge as edge

    monkeypatch.setattr(edge, "INDEXING_THRESHOLD_KB", 0)  # treat the small shard as a big one
    kn = make_knowledge(sources(corpus), index={"engine": "edge"})
    kn.sync("hb")
    backend = kn.store.backend
    query = kn.embedder.query_model.get_query_embedding("hotel cap")
    exact = [h.id for h in backend.search(SearchRequest(mode="dense", limit=3, dense=query, exact=True))]
    ticks = 0
    stop = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.005)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        started = time.perf_counter()
        assert backend.optimize(force=True) is True
        took = time.perf_counter() - started
    finally:
        stop.set()
        ticker.join()
    assert ticks >= took / 0.005 * 0.3  # the GIL was free while the child process built the index
    assert (
        not backend.path.with_name("lore.next").exists() and not backend.path.with_name("lore.old").exists()
    )
    assert [h.id for h in backend.search(SearchRequest(mode="dense", limit=3, dense=query))] == exact
    assert kn.store.count_chunks("hb") == len(DOCS)
    assert kn.sync("hb").unchanged == len(DOCS)
