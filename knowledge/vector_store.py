"""`LoreVectorStore`: a LlamaIndex vector store over any backend in `knowledge.backends`.

`IngestionPipeline` writes through it and `VectorStoreIndex` retrievers read through it, so
nothing above this module knows which engine holds the vectors. On the way in each node gets
a BM25 sparse vector of the same text that was embedded (title and heading path included).
On the way out the query mode picks dense (`default`), sparse or hybrid search: the engine
ranks the dense and the sparse side in one call, and `rrf()` fuses the two lists.

Filters come as LlamaIndex metadata filters: `key == value`, and `key in [values]`; `access in
[grants]` (the reader's audience) and `source in [names]` (channel scoping) go into both
searches, inside the engine, so top-k is filled from what the reader may see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from knowledge.access import ACCESS_KEY
from knowledge.backends import Backend, Hit, IndexPoint, SearchMode, SearchRequest
from knowledge.sparse import SparseEncoder

T = TypeVar("T")

# Set on each returned node's metadata (never stored): the scores behind its rank.
SIGNALS_KEY = "_lore_signals"
TIE_MARGIN = 5
CONFIDENCE_TOP = 3  # the best chunks abstention looks at (knowledge.engine.confidence)
_MODES: dict[VectorStoreQueryMode, SearchMode] = {
    VectorStoreQueryMode.DEFAULT: "dense",
    VectorStoreQueryMode.SPARSE: "sparse",
    VectorStoreQueryMode.HYBRID: "hybrid",
}


class Ranked(NamedTuple):
    """One search result: the point (`hit.score` the ranking score), the query mode, the
    query's cosine to the point, whether only the confidence may use it (the document cap
    left it out of the top-k), and whether only the answer's context may (`context_chunks`)."""

    hit: Hit
    mode: SearchMode
    cosine: float | None
    confidence_only: bool = False
    context_only: bool = False


class LoreVectorStore(BasePydanticVectorStore):
    stores_text: bool = True
    flat_metadata: bool = False
    candidates: int = 50
    rrf_k: int = 1
    hnsw_ef: int | None = None
    # Document diversity (RetrievalSettings says why): at most this many chunks of one document
    # in a top-k (0 = no cap), chosen from the best `depth` fused chunks.
    max_per_doc: int = 0
    depth: int = 0
    doc_boost: float = 0.0  # with a cap: each further chunk of a document adds this share of its score
    context_chunks: int = 0  # with a cap: more chunks of the best document, for the answer only
    fusion: str = "rrf"  # or "dbsf": distribution-based score fusion
    dense_weight: float = 1.0  # the dense list's weight in either fusion (the sparse list's is 1)

    _backend: Backend = PrivateAttr()
    _sparse: SparseEncoder = PrivateAttr()

    def __init__(self, backend: Backend, sparse: SparseEncoder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._backend = backend
        self._sparse = sparse

    @property
    def client(self) -> Backend:
        return self._backend

    @property
    def sparse_encoder(self) -> SparseEncoder:
        return self._sparse

    # -- writing -----------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        points = []
        for node in nodes:
            embedding = node.get_embedding()
            payload = {
                **node.metadata,
                "doc_id": node.ref_doc_id or node.metadata.get("doc_id", ""),
                "text": node.get_content(metadata_mode=MetadataMode.NONE),
            }
            sparse = self._sparse.document(node.get_content(metadata_mode=MetadataMode.EMBED))
            points.append(IndexPoint(id=node.node_id, dense=embedding, sparse=sparse, payload=payload))
        self._backend.upsert(points)
        return [p.id for p in points]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self._backend.delete_where("doc_id", ref_doc_id)

    # -- reading -----------------------------------------------------------------

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        nodes = [self._node(found) for found in self.rank(query, **kwargs)]
        return VectorStoreQueryResult(
            nodes=nodes,
            similarities=[n.metadata[SIGNALS_KEY]["score"] for n in nodes],
            ids=[n.node_id for n in nodes],
        )

    def rank(self, query: VectorStoreQuery, **kwargs: Any) -> list[Ranked]:
        """What `query` returns, as plain hits: the engine's own search path skips LlamaIndex's
        nodes (pydantic models, hashed on the way through a retriever) that it would only unpack."""
        if query.node_ids or query.doc_ids:
            raise NotImplementedError("LoreVectorStore filters by metadata, not by node or document ids")
        if query.mode not in _MODES:
            raise NotImplementedError(f"query mode {query.mode} is not supported (dense, sparse or hybrid)")
        mode = _MODES[query.mode]
        dense = query.query_embedding
        sparse = self._sparse.query(query.query_str) if mode != "dense" and query.query_str else None
        if mode == "hybrid" and not sparse:  # only stop words: nothing lexical to fuse
            mode = "dense"
        if mode == "hybrid" and dense is None:
            mode = "sparse"
        if mode == "dense" and dense is None:
            raise ValueError("a dense or hybrid query needs the query embedding")
        top_k = query.similarity_top_k
        common: dict[str, Any] = {
            **_scope(query.filters),
            "hnsw_ef": self.hnsw_ef,
            "exact": bool(kwargs.get("exact", False)),
        }
        # A few more than asked, so that ties at the cut are broken the same way every time,
        # whatever order the engine's segments happen to be in; deeper when a document cap may
        # skip some.
        wanted = max(top_k, self.depth if self.max_per_doc else 0) + TIE_MARGIN
        if mode == "hybrid":
            candidates = max(self.candidates, wanted)
            lists = self._backend.search_batch(
                [
                    SearchRequest("dense", candidates, dense=dense, with_payload=False, **common),
                    SearchRequest("sparse", candidates, sparse=sparse, with_payload=False, **common),
                ]
            )
            weights = (self.dense_weight, 1.0)
            fused = dbsf(lists, weights) if self.fusion == "dbsf" else rrf(lists, self.rrf_k, weights)
            chosen = sorted(fused, key=lambda i: (-fused[i], i))[:wanted]
            hits = [
                Hit(h.id, fused[h.id], h.payload, h.dense)
                for h in self._backend.fetch(chosen, with_dense=True)
            ]
        else:
            request = SearchRequest(
                mode, wanted, dense=dense, sparse=sparse, with_dense=mode == "sparse", **common
            )
            hits = self._backend.search(request)
        if mode == "dense":
            cosines: list[float | None] = [hit.score for hit in hits]
        else:
            cosines = _cosines(dense, [hit.dense for hit in hits])
        scored = list(zip(hits, cosines, strict=True))
        # Best score first; ties go to the closer chunk (cosine), then to the lower id.
        scored.sort(
            key=lambda hc: (-round(hc[0].score, 6), -(hc[1] if hc[1] is not None else -2.0), hc[0].id)
        )

        def doc_of(hc: tuple[Hit, float | None]) -> str:
            return str(hc[0].payload.get("doc_id", ""))

        best = scored[:CONFIDENCE_TOP]
        if self.doc_boost and self.max_per_doc:
            scored = rank_documents(scored, doc_of, lambda hc: hc[0].score, self.doc_boost)
        pool, scored = scored, cap_per_document(scored, doc_of, top_k, self.max_per_doc)
        ranked = [Ranked(hit, mode, cosine) for hit, cosine in scored]
        kept = {hit.id for hit, _ in scored}
        if self.max_per_doc and self.context_chunks and scored:
            # The best document's next best chunks, after the top-k, for the answer to read.
            first = doc_of(scored[0])
            more = [hc for hc in pool if doc_of(hc) == first and hc[0].id not in kept][: self.context_chunks]
            ranked += [Ranked(hit, mode, cosine, context_only=True) for hit, cosine in more]
            kept |= {hit.id for hit, _ in more}
        # The best chunks before the cap, if it dropped them, go last, marked: confidence
        # (abstention) still looks at them, the answer doesn't get them.
        ranked += [Ranked(hit, mode, cosine, True) for hit, cosine in best if hit.id not in kept]
        return ranked

    def _node(self, found: Ranked) -> TextNode:
        hit = found.hit
        payload = dict(hit.payload)
        text = str(payload.pop("text", ""))
        doc_id = str(payload.get("doc_id", ""))
        signals: dict[str, Any] = {"mode": found.mode, "score": hit.score}
        if found.cosine is not None:
            signals["dense"] = found.cosine
        if found.confidence_only:
            signals["confidence_only"] = True
        payload[SIGNALS_KEY] = signals
        node = TextNode(id_=hit.id, text=text, metadata=payload)
        if doc_id:
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
        return node


def rrf(lists: Sequence[Sequence[Hit]], k: int, weights: Sequence[float] | None = None) -> dict[str, float]:
    """Reciprocal-rank fusion: each point scores the sum over lists of weight / (k + rank), ranks
    from 0. Tied scores share a rank (the best of theirs), so the result doesn't depend on how
    the engine happened to order equal scores."""
    fused: dict[str, float] = {}
    for n, hits in enumerate(lists):
        weight = weights[n] if weights else 1.0
        rank, previous = 0, None
        for i, (score, point) in enumerate(sorted((-round(h.score, 6), h.id) for h in hits)):
            if score != previous:
                rank, previous = i, score
            fused[point] = fused.get(point, 0.0) + weight / (k + rank)
    return fused


def dbsf(lists: Sequence[Sequence[Hit]], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Distribution-based score fusion (as Qdrant's DBSF): each list's scores are scaled to
    [0, 1] between mean - 3 sd and mean + 3 sd of that list, then summed (weighted)."""
    fused: dict[str, float] = {}
    for n, hits in enumerate(lists):
        if not hits:
            continue
        weight = weights[n] if weights else 1.0
        scores = np.asarray([h.score for h in hits], dtype=np.float64)
        mean, sd = float(scores.mean()), float(scores.std())
        lo, hi = mean - 3 * sd, mean + 3 * sd
        for hit in hits:
            scaled = 0.5 if hi <= lo else min(1.0, max(0.0, (hit.score - lo) / (hi - lo)))
            fused[hit.id] = fused.get(hit.id, 0.0) + weight * round(scaled, 6)
    return fused


def cap_per_document(ranked: Sequence[T], doc_of: Callable[[T], str], top_k: int, cap: int) -> list[T]:
    """The best `top_k` of `ranked` with at most `cap` per document (0: no cap), in rank order.

    If the cap leaves fewer than `top_k`, the best of the skipped ones fill the end of the list,
    so a small corpus still gets `top_k` chunks. Each document's best chunk keeps its place
    relative to the other documents' best chunks, so capping can only move the first relevant
    document up."""
    if cap <= 0:
        return list(ranked[:top_k])
    chosen: list[int] = []
    per_doc: dict[str, int] = {}
    for i, item in enumerate(ranked):
        doc = doc_of(item)
        if per_doc.get(doc, 0) < cap:
            per_doc[doc] = per_doc.get(doc, 0) + 1
            chosen.append(i)
            if len(chosen) == top_k:
                break
    if len(chosen) < top_k:
        taken = set(chosen)
        chosen += [i for i in range(len(ranked)) if i not in taken][: top_k - len(chosen)]
    return [ranked[i] for i in chosen]


def rank_documents(
    ranked: Sequence[T], doc_of: Callable[[T], str], score_of: Callable[[T], float], boost: float
) -> list[T]:
    """`ranked` grouped by document, documents ordered by their best score plus `boost` times
    the scores of their other chunks in the list (a page that matches in several places moves
    up), chunks within a document in their rank order."""
    totals: dict[str, float] = {}
    seen: set[str] = set()
    for item in ranked:
        doc = doc_of(item)
        totals[doc] = totals.get(doc, 0.0) + score_of(item) * (boost if doc in seen else 1.0)
        seen.add(doc)
    first: dict[str, int] = {}
    for i, item in enumerate(ranked):
        first.setdefault(doc_of(item), i)
    order = sorted(
        range(len(ranked)), key=lambda i: (-round(totals[doc_of(ranked[i])], 6), first[doc_of(ranked[i])], i)
    )
    return [ranked[i] for i in order]


def _cosines(query: Sequence[float] | None, vectors: Sequence[Sequence[float] | None]) -> list[float | None]:
    """The query's cosine to each vector (None where a vector is missing), in one matrix product."""
    present = [i for i, v in enumerate(vectors) if v is not None]
    out: list[float | None] = [None] * len(vectors)
    if query is None or not present:
        return out
    q = np.asarray(query, dtype=np.float32)
    m = np.asarray([vectors[i] for i in present], dtype=np.float32)
    values = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q) + 1e-12)
    for i, value in zip(present, values.tolist(), strict=True):
        out[i] = value
    return out


def _scope(filters: MetadataFilters | None) -> dict[str, Any]:
    """`SearchRequest` fields from LlamaIndex filters: `where`, and `access` / `sources` lists."""
    where: dict[str, str | list[str]] = {}
    scope: dict[str, Any] = {"where": where}
    for f in filters.filters if filters is not None else []:
        if isinstance(f, MetadataFilters) or f.operator not in (FilterOperator.EQ, FilterOperator.IN):
            raise NotImplementedError(
                "LoreVectorStore supports `key == value` and `key in [...]` filters only"
            )
        if f.operator == FilterOperator.EQ:
            where[f.key] = str(f.value)
            continue
        values = [str(v) for v in (f.value if isinstance(f.value, list) else [f.value])]
        if f.key == ACCESS_KEY:
            scope["access"] = values
        elif f.key == "source":
            scope["sources"] = values
        else:
            where[f.key] = values
    return scope
