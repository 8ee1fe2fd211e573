"""Helpers shared by the benchmark scripts: settings for a throwaway data dir, corpora, percentiles."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from config.settings import Settings  # noqa: E402

HANDBOOK = REPO / "examples" / "handbook"


def retrieval_answer(question: str, found: Any) -> Any:
    """An Answer from retrieval alone (a `knowledge.engine.Retrieval`, no generator): what
    recall, MRR and abstention need."""
    from knowledge.answer import Answer

    return Answer(
        question=question,
        text="",
        abstained=not found.chunks or found.decide().abstain,  # knowledge/abstain.py
        chunks=found.chunks,
        model="retrieval-only",
        prompt_version="-",
        confidence=found.confidence,
        missing_terms=list(found.signal.missing) if found.signal else [],
    )


def settings_for(data_dir: Path, sources: list[dict[str, Any]], **overrides: Any) -> Settings:
    overrides.setdefault("llm", {"provider": "extractive"})
    return Settings(data_dir=data_dir, sources=sources, **overrides)


def scratch(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"lore-bench-{name}-"))
    return path


def copy_handbook(dest: Path, copies: int) -> Path:
    """The handbook copied `copies` times under different folders: same text, distinct documents."""
    for i in range(copies):
        shutil.copytree(HANDBOOK, dest / f"copy{i}", ignore=shutil.ignore_patterns("questions.jsonl"))
    return dest


def synthetic_docs(dest: Path, count: int, seed: int = 7) -> Path:
    """`count` small Markdown documents stitched from handbook sentences (deterministic)."""
    sentences = []
    for path in HANDBOOK.rglob("*.md"):
        for line in path.read_text().splitlines():
            if len(line) > 60 and not line.startswith(("#", "|", "-", ">")):
                sentences.append(line.strip())
    rng = random.Random(seed)
    for i in range(count):
        body = "\n\n".join(rng.sample(sentences, 4))
        (dest / f"team{i % 40:02d}").mkdir(parents=True, exist_ok=True)
        (dest / f"team{i % 40:02d}" / f"note-{i:05d}.md").write_text(f"# Note {i}\n\n{body}\n")
    return dest


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "lore" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


class EmbeddingCache:
    """Real model vectors of texts already embedded once, kept in SQLite (benchmarks only).

    Keyed by the model identity and a hash of the text, so a cached vector is exactly what
    the model returned for that text. It lets a benchmark re-index the same chunks (another
    engine, another sparse setting) without paying the model again.
    """

    def __init__(self, identity: str) -> None:
        import sqlite3

        self.identity = identity
        self._db = sqlite3.connect(bench_cache_dir() / "embeddings.sqlite", check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vec (model TEXT, key TEXT, v BLOB, PRIMARY KEY (model, key))"
        )

    @staticmethod
    def key(text: str) -> str:
        import hashlib

        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def get_many(self, texts: list[str]) -> dict[str, Any]:
        import numpy as np

        keys = list({self.key(t) for t in texts})
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT key, v FROM vec WHERE model = ? AND key IN ({marks})", [self.identity, *part]
            )
            found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        return found

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        import numpy as np

        self._db.executemany(
            "INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
            [(self.identity, self.key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in items],
        )
        self._db.commit()


def cached_embedder(embedder: Any) -> Any:
    """`embedder` with document embeddings served from (and saved to) the EmbeddingCache."""
    from dataclasses import replace

    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr

    cache = EmbeddingCache(embedder.identity.name)
    inner = embedder.document_model

    class Cached(BaseEmbedding):
        _inner: Any = PrivateAttr()

        def __init__(self) -> None:
            super().__init__(model_name=f"cached:{embedder.identity.name}")
            self._inner = inner

        def _get_query_embedding(self, query: str) -> list[float]:
            return list(self._inner.get_query_embedding(query))

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self.get_text_embedding_batch([text])[0]

        def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False, **kw: Any) -> Any:
            found = cache.get_many(texts)
            missing = [t for t in dict.fromkeys(texts) if cache.key(t) not in found]
            if missing:
                vectors = self._inner.get_text_embedding_batch(missing)
                cache.put_many(list(zip(missing, vectors, strict=True)))
                found.update({cache.key(t): v for t, v in zip(missing, vectors, strict=True)})
            return [list(map(float, found[cache.key(t)])) for t in texts]

    model = Cached()
    return replace(embedder, model=embedder.model, index_model_factory=lambda: model, _index_model=model)
