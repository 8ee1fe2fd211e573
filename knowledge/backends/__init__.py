"""The vector engines behind the index, behind one small interface.

- `edge`: Qdrant's Rust engine in-process (`qdrant-edge-py`): HNSW, sparse vectors with IDF.
  The embedded default.
- `qdrant-local`: qdrant-client's local mode (pure Python, brute-force search).
- `qdrant`: a Qdrant server through qdrant-client (`qdrant.url`), the way to scale out.

Each stores one point per chunk: a dense vector, a BM25 sparse vector (IDF applied by the
engine) and a flat payload. A search is one or more ranked lists in one engine call (hybrid
search asks for the dense and the sparse list together; `LoreVectorStore` fuses them), plus
fetching the chosen points. The two qdrant-client flavours share one class; the edge class
mirrors it call for call.

Permissions (`knowledge/access.py`) are a filter inside the engine, never after it: a search
may carry the reader's grants (`SearchRequest.access`, MatchAny on the keyword-indexed `access`
field) and a set of sources, so the engine fills top-k only from chunks the reader may see. A
chunk without an `access` field matches no such filter (fail closed). An empty set of grants or
sources matches nothing, without asking the engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from knowledge.access import ACCESS_KEY
from knowledge.sparse import SparseVector

DENSE_VECTOR = "text-dense"  # the names LlamaIndex's QdrantVectorStore uses, for familiarity
SPARSE_VECTOR = "text-sparse"
LAYOUT_VERSION = 2  # 1: dense only (LlamaIndex QdrantVectorStore payloads); 2: dense + BM25, flat payload

SearchMode = Literal["dense", "sparse", "hybrid"]
Using = Literal["dense", "sparse"]
# Payload conditions, all of which must hold: key == value, or (a sequence) key is any of them.
Where = Mapping[str, str | Sequence[str]]
Condition = tuple[str, str | tuple[str, ...]]
# Keyword indexes every collection gets: deletes by document and source, filters by access.
INDEXED_FIELDS = ("doc_id", "source", ACCESS_KEY)


@dataclass
class IndexPoint:
    id: str
    dense: Sequence[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass
class Hit:
    id: str
    score: float  # the engine's score: cosine (dense) or BM25 (sparse); 0 when fetched by id
    payload: dict[str, Any]
    dense: list[float] | None = None  # the stored dense vector, when asked for


@dataclass
class SearchRequest:
    mode: Using  # which vector to rank by
    limit: int
    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None
    where: Where = field(default_factory=dict)
    # Only chunks whose access list shares one of these grants (None: unfiltered).
    access: Sequence[str] | None = None
    sources: Sequence[str] | None = None  # only chunks of these sources (None: all)
    hnsw_ef: int | None = None
    exact: bool = False
    with_payload: bool = True
    with_dense: bool = False

    def conditions(self) -> list[Condition]:
        return conditions(self.where, access=self.access, sources=self.sources)


def conditions(
    where: Where | None, *, access: Sequence[str] | None = None, sources: Sequence[str] | None = None
) -> list[Condition]:
    """Everything a point must satisfy, as (payload key, value or any-of values) pairs."""
    out: list[Condition] = [
        (key, value if isinstance(value, str) else tuple(value))
        for key, value in sorted((where or {}).items())
    ]
    if access is not None:
        out.append((ACCESS_KEY, tuple(sorted(set(access)))))
    if sources is not None:
        out.append(("source", tuple(sorted(set(sources)))))
    return out


def matches_nothing(conds: Sequence[Condition]) -> bool:
    """An any-of with nothing in it: no point can match (engines differ on asking them)."""
    return any(not isinstance(value, str) and not value for _key, value in conds)


@dataclass(frozen=True)
class CollectionInfo:
    meta: dict[str, Any]
    dim: int | None
    points: int
    has_sparse: bool


class Backend(Protocol):
    engine: str

    def info(self) -> CollectionInfo | None: ...

    def exists(self) -> bool: ...

    def create(self, dim: int, meta: dict[str, Any]) -> None: ...

    def drop(self) -> None: ...

    def upsert(self, points: Sequence[IndexPoint]) -> None: ...

    def delete_where(self, key: str, value: str) -> None: ...

    def set_payload(self, where: Where, values: dict[str, Any]) -> int:
        """Set `values` in the payload of every point matching `where` (other fields kept), without
        touching vectors; returns how many points matched. How a changed access rule applies."""
        ...

    def count(self, where: Where | None = None, *, access: Sequence[str] | None = None) -> int: ...

    def scroll(
        self,
        where: Where | None = None,
        fields: Sequence[str] = (),
        with_dense: bool = False,
        *,
        access: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any], list[float] | None]]: ...

    def search(self, request: SearchRequest) -> list[Hit]: ...

    def search_batch(self, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Several ranked lists in one engine call (one round trip to a server)."""
        ...

    def fetch(self, ids: Sequence[str], *, with_dense: bool = False) -> list[Hit]: ...

    def optimize(self, *, force: bool = False) -> bool: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class BackendLocked(Exception):
    """Another process (or another open in this one) holds the embedded storage."""


def local_collection_exists(path: Path, collection: str) -> bool:
    """Whether Qdrant local-mode storage under `path` holds `collection`, without opening (and
    locking) it, or importing qdrant-client (over a second) when Lore runs on Edge."""
    return (path / "collection" / collection).is_dir()
