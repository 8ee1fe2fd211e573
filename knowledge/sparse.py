"""BM25-style sparse vectors: term frequencies here, IDF in the engine.

The encoder is `qdrant-edge-py`'s `Bm25` (from PyPI, no model download): English stop words,
a Snowball stemmer, and terms hashed to 31-bit indices. It is deterministic and needs no
corpus statistics, so documents can be encoded one sync at a time: a document's weights are
BM25's saturated term frequency, `tf * (k + 1) / (tf + k * (1 - b + b * len / avg_len))`, and
the engine multiplies in the IDF of each term over whatever the index holds at query time
(Qdrant's `Modifier.IDF`). Queries get weight 1 per distinct term. Documents and queries go
through the same tokenizer and stemmer, and every backend (embedded or server) gets vectors
from this one encoder, so indexes stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Fixed parameters: changing any of them changes the vectors, so they are part of the identity
# the index records (a different encoder is refused like a different embedding model).
K1 = 1.2
B = 0.75
AVG_LEN = 100.0  # tokens left after stop words in a 200-token chunk (measured on both eval sets)


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.indices)


class SparseEncoder:
    name = f"bm25:qdrant-edge:en:k={K1}:b={B}:avg_len={AVG_LEN:g}"

    def __init__(self) -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._bm25: Any = Bm25(Bm25Config(k=K1, b=B, avg_len=AVG_LEN, language="english"))

    def document(self, text: str) -> SparseVector:
        vec = self._bm25.embed_document(text)
        return SparseVector(list(vec.indices), list(vec.values))

    def documents(self, texts: list[str]) -> list[SparseVector]:
        return [self.document(t) for t in texts]

    def query(self, text: str) -> SparseVector:
        vec = self._bm25.embed_query(text)
        return SparseVector(list(vec.indices), list(vec.values))

    def terms(self, text: str) -> set[int]:
        """The hashed terms of `text` (stemmed, no stop words): empty for a stop word."""
        return set(self._bm25.embed_query(text).indices)
