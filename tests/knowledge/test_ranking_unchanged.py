"""Search results stay exactly what they were when the search path is made faster (issue 19).

A fixed synthetic index on Qdrant Edge (seeded vectors, chunks grouped into documents, BM25 of
fixed texts, access lists and two sources) is searched with fixed query vectors in every mode,
with and without access and source filters, under several ranking settings. The ranked ids,
fused scores and cosines must equal those recorded from the code before the latency work
(tests/data/ranking_golden.json; `record()` writes it), to 2e-6 (`TOLERANCE`): through
`LoreVectorStore.query` (what LlamaIndex retrievers call) and through `engine.search` (Lore's own
path), whose chunks must also carry their point's payload and equal what the retriever returns.

The query embedding is replayed from the fixed vectors (the ranking, not the model, is under
test here), so the recorded figures don't depend on how a CPU rounds MiniLM's arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

from knowledge.access import Audience
from knowledge.backends import IndexPoint
from knowledge.service import Knowledge
from knowledge.vector_store import SIGNALS_KEY, LoreVectorStore

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "ranking_golden.json"
WORDS = [
    "vpn",
    "laptop",
    "badge",
    "leave",
    "expense",
    "travel",
    "hotel",
    "deploy",
    "release",
    "pipeline",
    "okta",
    "wireguard",
    "printer",
    "invoice",
    "payroll",
    "canteen",
    "parking",
    "holiday",
    "budget",
    "audit",
    "backup",
    "incident",
    "oncall",
    "token",
    "certificate",
    "firewall",
    "router",
    "wiki",
    "onboarding",
    "mentor",
]
# Filler of many distinct words, and a length of its own for each chunk: BM25 scores then rarely tie (the
# engine returns an arbitrary one of points tied at a cut, before and after alike).
FILLER = [
    f"{a}{b}" for a in ("zor", "quel", "brin", "tav", "mesk") for b in ("ax", "ith", "on", "ur", "el", "yd")
]
DIM = 384
DOCS = 36
QUERIES = (
    "vpn wireguard okta",
    "hotel travel expense budget",
    "deploy release pipeline incident",
    "the of and",  # stop words only: hybrid falls back to dense
    "certificate firewall",
    "payroll audit invoice",
)
MODES = {"dense": VectorStoreQueryMode.DEFAULT, "sparse": "sparse", "hybrid": "hybrid"}
FILTERS: dict[str, list[MetadataFilter]] = {
    "none": [],
    "public": [MetadataFilter(key="access", value=["public"], operator=FilterOperator.IN)],
    "eng+hr": [MetadataFilter(key="access", value=["eng", "hr"], operator=FilterOperator.IN)],
    "source": [MetadataFilter(key="source", value="wiki")],
    "sources+access": [
        MetadataFilter(key="source", value=["handbook"], operator=FilterOperator.IN),
        MetadataFilter(key="access", value=["public", "eng"], operator=FilterOperator.IN),
    ],
}
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},  # the settings' defaults: a cap of 1 per document, depth 20, boost 0.1, rrf_k 10
    "uncapped": {"max_per_doc": 0, "rrf_k": 1},
    "dbsf": {"fusion": "dbsf", "dense_weight": 0.5, "max_per_doc": 2, "doc_boost": 0.0},
}
# Relative, for BM25 scores of 5 or so: the engine's float32 BM25 varies by a unit in the last place
# from one run to the next, which DBSF's rounding to 6 digits can turn into 1e-6 of a fused score.
TOLERANCE = 2e-6
AUDIENCES = {"all": None, "public": Audience(frozenset({"public"})), "eng": Audience(frozenset({"eng"}))}


def point_id(i: int) -> str:
    return str(uuid.UUID(int=(0x5EED << 96) | i))


def corpus() -> list[tuple[str, list[float], dict[str, Any]]]:
    """Documents of 1 to 4 chunks whose vectors sit near their document's centre."""
    rng = np.random.default_rng(19)
    points = []
    for d in range(DOCS):
        centre = rng.normal(size=DIM)
        doc_words = list(rng.choice(WORDS, size=4, replace=False))
        access = [["public"], ["eng"], ["hr"], ["eng", "hr"], []][d % 5]
        for c in range(1 + d % 4):
            vec = (centre + rng.normal(scale=0.6, size=DIM)).astype(np.float32)
            words = doc_words + list(rng.choice(WORDS, size=2 + len(points) % 7))
            words += list(rng.choice(FILLER, size=3 + len(points)))  # a length of its own
            text = " ".join(str(w) for w in rng.permutation(words))
            points.append(
                (
                    point_id(len(points)),
                    [float(x) for x in vec / np.linalg.norm(vec)],
                    {
                        "doc_id": f"doc{d:02d}",
                        "source": "wiki" if d % 3 == 0 else "handbook",
                        "access": access,
                        "path": f"d{d:02d}.md",
                        "title": f"Document {d}",
                        "url": f"https://wiki.example/d{d:02d}",
                        "heading": f"Part {c}",
                        "updated_at": "2026-01-01T00:00:00",
                        "content_hash": f"h{d}",
                        "text": text,
                    },
                )
            )
    return points


def query_vectors() -> dict[str, list[float]]:
    rng = np.random.default_rng(7)
    out = {}
    for q in QUERIES:
        vec = rng.normal(size=DIM).astype(np.float32)
        out[q] = [float(x) for x in vec / np.linalg.norm(vec)]
    return out


class Replay(BaseEmbedding):
    """The fixed query vectors, served as the query model would serve them."""

    vectors: dict[str, list[float]]

    def _get_query_embedding(self, query: str) -> list[float]:
        return list(self.vectors[query])

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        raise AssertionError("search never embeds documents")


@pytest.fixture(scope="module")
def points() -> list[tuple[str, list[float], dict[str, Any]]]:
    return corpus()


def indexed(settings: Any, embedder: Any, points: list[tuple[str, list[float], dict[str, Any]]]) -> Knowledge:
    """`points` in a new Edge index, searched with the fixed query vectors."""
    replay = dataclasses.replace(embedder, model=Replay(model_name="replay", vectors=query_vectors()))
    kn = Knowledge(settings, embedder=replay)
    kn.store.ensure_collection(embedder.identity)
    kn.store.backend.upsert([IndexPoint(i, v, kn.store.sparse.document(p["text"]), p) for i, v, p in points])
    kn.store.optimize()
    return kn


@pytest.fixture
def kn(make_settings, embedder, points):
    kn = indexed(make_settings(), embedder, points)
    yield kn
    kn.close()


def ranked_by_store(kn) -> dict[str, list[list[Any]]]:
    """Every (query, mode, filter, ranking settings) case through `LoreVectorStore.query`:
    [point number, score, cosine or None, confidence only] per node, best first."""
    index = {point_id(i): i for i in range(10_000)}
    vectors = query_vectors()
    out = {}
    for config, params in CONFIGS.items():
        store = LoreVectorStore(
            kn.store.backend,
            kn.store.sparse,
            **{"rrf_k": 10, "max_per_doc": 1, "depth": 20, "doc_boost": 0.1, **params},
        )
        for q in QUERIES:
            for mode, query_mode in MODES.items():
                for name, filters in FILTERS.items():
                    for top_k in (3, 5):
                        result = store.query(
                            VectorStoreQuery(
                                query_embedding=vectors[q],
                                query_str=q,
                                similarity_top_k=top_k,
                                mode=VectorStoreQueryMode(query_mode),
                                filters=MetadataFilters(filters=list(filters)) if filters else None,
                            )
                        )
                        rows = []
                        for node, similarity in zip(
                            result.nodes or [], result.similarities or [], strict=True
                        ):
                            signals = node.metadata[SIGNALS_KEY]
                            assert signals["score"] == similarity
                            rows.append(
                                [
                                    index[node.node_id],
                                    similarity,
                                    signals.get("dense"),
                                    bool(signals.get("confidence_only", False)),
                                ]
                            )
                        out[f"{config}|{q}|{mode}|{name}|{top_k}"] = rows
    return out


def searched_by_engine(kn) -> dict[str, list[list[Any]]]:
    index = {point_id(i): i for i in range(10_000)}
    out = {}
    for q in QUERIES:
        for mode in MODES:
            for name, audience in AUDIENCES.items():
                for source in (None, "wiki"):
                    chunks = kn.engine.search(q, top_k=4, mode=mode, audience=audience, source=source)
                    out[f"{q}|{mode}|{name}|{source}"] = [
                        [index[c.chunk_id], c.score, c.dense_score] for c in chunks
                    ]
    return out


def same(found: dict[str, list[list[Any]]], recorded: dict[str, list[list[Any]]]) -> None:
    assert found.keys() == recorded.keys()
    for case, rows in recorded.items():
        got = found[case]
        assert [r[0] for r in got] == [r[0] for r in rows], case
        for a, b in zip(got, rows, strict=True):
            for x, y in zip(a[1:], b[1:], strict=True):
                assert (x is None) == (y is None) and (
                    x is None or abs(x - y) <= TOLERANCE * max(1, abs(y))
                ), (
                    case,
                    a,
                    b,
                )


def test_the_vector_store_ranks_as_recorded(kn):
    same(ranked_by_store(kn), json.loads(GOLDEN.read_text())["store"])


def test_engine_search_returns_the_recorded_chunks_with_their_payload(kn, points):
    same(searched_by_engine(kn), json.loads(GOLDEN.read_text())["engine"])
    payloads = {i: p for i, _v, p in points}
    for chunk in kn.engine.search("vpn wireguard okta", top_k=5, mode="hybrid"):
        p = payloads[chunk.chunk_id]
        assert (chunk.doc_id, chunk.source, chunk.path, chunk.title, chunk.url, chunk.heading) == (
            p["doc_id"],
            p["source"],
            p["path"],
            p["title"],
            p["url"],
            p["heading"],
        )
        assert (chunk.updated_at, chunk.doc_hash, chunk.text, chunk.access) == (
            p["updated_at"],
            p["content_hash"],
            p["text"],
            p["access"],
        )


def reference_chunks(kn, query: str, **kwargs: Any) -> list[dict[str, Any]]:
    """What the LlamaIndex retriever returns, made into chunks the plain way."""
    vector = query_vectors()[query]
    nodes = kn.engine.retriever(5, **kwargs).retrieve(QueryBundle(query_str=query, embedding=vector))
    return [_chunk(n) for n in nodes]


def _chunk(hit: NodeWithScore) -> dict[str, Any]:
    meta = dict(hit.node.metadata)
    signals = meta.pop(SIGNALS_KEY, {})
    return {
        "chunk_id": hit.node.node_id,
        "doc_id": str(meta.get("doc_id", hit.node.ref_doc_id or "")),
        "text": hit.node.get_content(metadata_mode=MetadataMode.NONE),
        "score": round(float(hit.score or 0.0), 4),
        "dense_score": round(signals["dense"], 4) if "dense" in signals else None,
        "confidence_only": bool(signals.get("confidence_only", False)),
        "access": [str(a) for a in meta.get("access") or []],
        "source": str(meta.get("source", "")),
    }


@pytest.mark.parametrize("mode", list(MODES))
def test_engine_search_equals_the_llamaindex_retriever(kn, mode):
    for q in QUERIES:
        for audience in AUDIENCES.values():
            found = kn.engine._retrieve(q, 5, None, mode, audience=audience)[2]
            want = reference_chunks(kn, q, mode=mode, audience=audience)
            assert [
                {
                    k: getattr(c, k)
                    for k in (
                        "chunk_id",
                        "doc_id",
                        "text",
                        "score",
                        "dense_score",
                        "confidence_only",
                        "access",
                        "source",
                    )
                }
                for c in found
            ] == want, (q, mode, audience)


def record() -> None:
    """Write tests/data/ranking_golden.json from the code as it is. Only for a change that is
    meant to move rankings (or an engine upgrade that does): run it, and read the diff."""
    import tempfile

    from config.settings import EmbeddingSettings, Settings
    from knowledge.embeddings import build_embedder

    def rounded(rows: list[list[Any]]) -> list[list[Any]]:
        return [[r[0]] + [round(v, 7) if isinstance(v, float) else v for v in r[1:]] for r in rows]

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", llm={"provider": "extractive"})
        kn = indexed(settings, build_embedder(EmbeddingSettings()), corpus())
        found = {"store": ranked_by_store(kn), "engine": searched_by_engine(kn)}
        kn.close()
    recorded = {part: {case: rounded(rows) for case, rows in cases.items()} for part, cases in found.items()}
    GOLDEN.write_text(json.dumps(recorded, separators=(",", ":")) + "\n")


if __name__ == "__main__":  # HF_HUB_OFFLINE=1 .venv/bin/python -m tests.knowledge.test_ranking_unchanged
    record()
