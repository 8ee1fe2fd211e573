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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from knowledge.sparse import SparseVector

DENSE_VECTOR = "text-dense"  # the names LlamaIndex's QdrantVectorStore uses, for familiarity
SPARSE_VECTOR = "text-sparse"
LAYOUT_VERSION = 2  # 1: dense only (LlamaIndex QdrantVectorStore payloads); 2: dense + BM25, flat payload

SearchMode = Literal["dense", "sparse", "hybrid"]
Using = Literal["dense", "sparse"]


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
    where: dict[str, str] = field(default_factory=dict)  # payload key == value, all must hold
    hnsw_ef: int | None = None
    exact: bool = False
    with_payload: bool = True
    with_dense: bool = False


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

    def count(self, where: dict[str, str] | None = None) -> int: ...

    def scroll(
        self, where: dict[str, str] | None = None, fields: Sequence[str] = (), with_dense: bool = False
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
