"""Retrieval latency (query embedding plus search) at N chunks.

The index holds the real handbook chunks plus synthetic neighbours until it reaches N points:
each is a real chunk's vector with small Gaussian noise (renormalised) and the same payload.
Search cost depends on the number of points, not on what they say, and this keeps the
benchmark minutes rather than an hour of embedding. Queries are the handbook eval questions.

Run: .venv/bin/python bench/retrieval_latency.py [--chunks 10000] [--repeats 3]
     [--engine edge|qdrant-local] [--set retrieval.mode=dense]
(bench/scale.py is the 100k-chunk version, with real text behind every point.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import uuid

import numpy as np
from _common import HANDBOOK, percentile, scratch, settings_for
from retrieval_quality import overrides

from knowledge.backends import IndexPoint
from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge


def pad_with_neighbours(kn: Knowledge, target: int, seed: int = 3) -> int:
    store = kn.store
    points = list(store.backend.scroll(None, ["doc_id", "source", "path", "title", "text"], with_dense=True))
    rng = np.random.default_rng(seed)
    missing = target - len(points)
    batch: list[IndexPoint] = []
    for i in range(max(0, missing)):
        _id, payload, dense = points[i % len(points)]
        vec = np.asarray(dense) + rng.normal(0, 0.03, len(dense or []))
        text = str(payload.get("text", ""))
        batch.append(
            IndexPoint(
                id=str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)),
                dense=(vec / np.linalg.norm(vec)).tolist(),
                sparse=store.sparse.document(text),
                payload=dict(payload, source="synthetic", doc_id=f"synthetic:{i}"),
            )
        )
        if len(batch) == 1000:
            store.backend.upsert(batch)
            batch = []
    if batch:
        store.backend.upsert(batch)
    store.optimize()
    return store.count_chunks()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", default="edge")
    parser.add_argument("--set", dest="pairs", action="append", default=[])
    args = parser.parse_args()
    work = scratch("latency")
    extra = overrides(args.pairs)
    extra.setdefault("index", {})["engine"] = args.engine
    sources = [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}]
    settings = settings_for(work / "data", sources, **extra)
    kn = Knowledge(settings, embedder=build_embedder(settings.embedding))
    kn.sync("handbook")
    total = pad_with_neighbours(kn, args.chunks)
    questions = [
        json.loads(line)["question"] for line in (HANDBOOK / "questions.jsonl").read_text().splitlines()
    ]
    engine, embed = kn.engine, kn.embedder.query_model
    for q in questions[:5]:
        engine.search(q)  # warm up
    total_ms, embed_ms, filtered_ms = [], [], []
    for _ in range(args.repeats):
        for q in questions:
            started = time.perf_counter()
            embed.get_query_embedding(q)
            embed_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            engine.search(q)
            total_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            engine.search(q, source="handbook")
            filtered_ms.append((time.perf_counter() - started) * 1000)
    kn.close()
    header = [
        "engine",
        "points",
        "queries",
        "embed p50 ms",
        "retrieve p50 ms",
        "retrieve p95 ms",
        "with source filter p50 / p95 ms",
    ]
    row = [
        args.engine,
        str(total),
        str(len(total_ms)),
        f"{percentile(embed_ms, 50):.1f}",
        f"{percentile(total_ms, 50):.1f}",
        f"{percentile(total_ms, 95):.1f}",
        f"{percentile(filtered_ms, 50):.1f} / {percentile(filtered_ms, 95):.1f}",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("| " + " | ".join(row) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
