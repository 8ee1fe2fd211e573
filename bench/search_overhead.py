"""The Python overhead of one search: `engine.search` minus the time inside Qdrant Edge.

The query embedding is computed once per question and replayed (through a `BaseEmbedding`, as
the real model is called), so what is left is what Lore adds around the engine: filters,
fusion, fetching, LlamaIndex's retriever and nodes, the chunks. The engine's own time is read
around the shard's calls (`query_batch`, `retrieve`). The index (the handbook plus synthetic
neighbours up to `--chunks`, as in bench/retrieval_latency.py) is built once under `--data`
and reused, so two versions of the code can be timed on the same index in turn: run this
script from each tree with the same `--data`. `--profile` prints where the time goes.

Run: nice -n 10 .venv/bin/python bench/search_overhead.py --data /tmp/lore-overhead
     [--chunks 3000] [--repeats 5] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HANDBOOK, percentile, settings_for

from knowledge.access import Audience
from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge


class GcClock:
    """The seconds the cyclic garbage collector ran, and how many of its runs were full ones."""

    def __init__(self) -> None:
        self.seconds, self.full, self._started = 0.0, 0, 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2


class TimedShard:
    """The shard, with the seconds spent inside its search calls added up."""

    def __init__(self, shard: Any) -> None:
        self._shard = shard
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shard, name)

    def query_batch(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._shard.query_batch(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._shard.retrieve(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def replaying(embedder: Any, vectors: dict[str, list[float]]) -> Any:
    """`embedder` whose query model returns the vectors computed beforehand."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class Replay(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return list(vectors[query])

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return list(embedder.model.get_text_embedding(text))

    return dataclasses.replace(embedder, model=Replay(model_name="replay"))


def build(data: Path, chunks: int, embedder: Any) -> None:
    from retrieval_latency import pad_with_neighbours

    sources = [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}]
    kn = Knowledge(settings_for(data, sources), embedder=embedder)
    kn.sync("handbook")
    pad_with_neighbours(kn, chunks)
    kn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    args = parser.parse_args()
    from config.settings import EmbeddingSettings

    embedder = build_embedder(EmbeddingSettings())
    if not (args.data / "edge").exists():
        build(args.data, args.chunks, embedder)
    questions = [
        json.loads(line)["question"] for line in (HANDBOOK / "questions.jsonl").read_text().splitlines()
    ]
    sources = [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}]
    real = Knowledge(settings_for(args.data, sources), embedder=embedder)
    vectors = {}
    for q in questions:  # what the engine embeds: the question with abbreviations expanded
        for audience in (None, Audience(frozenset({"public"}))):
            expanded = real.engine.vocabulary(audience).expand(q)
            vectors[expanded] = embedder.query_model.get_query_embedding(expanded)
    real.close()
    kn = Knowledge(settings_for(args.data, sources), embedder=replaying(embedder, vectors))
    engine, backend = kn.engine, kn.store.backend
    shard = TimedShard(backend._shard)
    backend._shard = shard
    variants: dict[str, dict[str, Any]] = {
        "unfiltered": {},
        "audience": {"audience": Audience(frozenset({"public"}))},
        "source": {"source": "handbook"},
    }
    for q in questions[:10]:  # warm up
        for kwargs in variants.values():
            engine.search(q, **kwargs)
    total: dict[str, list[float]] = {name: [] for name in variants}
    overhead: dict[str, list[float]] = {name: [] for name in variants}
    profiler = cProfile.Profile() if args.profile else None
    collector = GcClock()
    for _ in range(args.repeats):
        for q in questions:
            for name, kwargs in variants.items():
                shard.seconds = 0.0
                if profiler:
                    profiler.enable()
                started = time.perf_counter()
                engine.search(q, **kwargs)
                elapsed = time.perf_counter() - started
                if profiler:
                    profiler.disable()
                total[name].append(elapsed * 1000)
                overhead[name].append((elapsed - shard.seconds) * 1000)
    searches = sum(len(v) for v in total.values())
    gc.callbacks.remove(collector)
    points = kn.store.count_chunks()
    kn.close()
    result = {
        name: {
            "total_p50": percentile(total[name], 50),
            "total_p95": percentile(total[name], 95),
            "overhead_p50": percentile(overhead[name], 50),
            "overhead_p95": percentile(overhead[name], 95),
        }
        for name in variants
    }
    garbage = {"gc_ms_per_search": collector.seconds * 1000 / searches, "full_gc_runs": collector.full}
    if args.json:
        print(json.dumps({"points": points, **result, **garbage}))
    else:
        print(f"{points} points, {len(total['unfiltered'])} searches per variant (embedding replayed)")
        print("| variant | search p50 ms | search p95 ms | Python overhead p50 ms | overhead p95 ms |")
        print("|---|---|---|---|---|")
        for name, r in result.items():
            print(
                f"| {name} | {r['total_p50']:.2f} | {r['total_p95']:.2f} "
                f"| {r['overhead_p50']:.2f} | {r['overhead_p95']:.2f} |"
            )
        print(
            f"garbage collector: {garbage['gc_ms_per_search']:.3f} ms per search on average, "
            f"{collector.full} full collections in {searches} searches"
        )
    if profiler:
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(35)
        stats.sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
