"""Retrieval latency (query embedding plus search) at N chunks.

The index holds the real handbook chunks plus synthetic neighbours until it reaches N points:
each is a real chunk's vector with small Gaussian noise (renormalised) and the same payload.
Search cost depends on the number of points, not on what they say, and this keeps the
benchmark minutes rather than an hour of embedding. Queries are the handbook eval questions.

Run: .venv/bin/python bench/retrieval_latency.py [--chunks 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import uuid

import numpy as np
from _common import HANDBOOK, percentile, scratch, settings_for
from qdrant_client.http import models as qm

from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge
from knowledge.store import DENSE_VECTOR


def pad_with_neighbours(kn: Knowledge, target: int, seed: int = 3) -> int:
    store = kn.store
    points, _ = store.client.scroll(store.collection, limit=100_000, with_vectors=True, with_payload=True)
    rng = np.random.default_rng(seed)
    missing = target - len(points)
    batch: list[qm.PointStruct] = []
    for i in range(max(0, missing)):
        src = points[i % len(points)]
        vec = np.asarray(src.vector[DENSE_VECTOR] if isinstance(src.vector, dict) else src.vector)
        vec = vec + rng.normal(0, 0.03, vec.shape)
        payload = dict(src.payload or {}, source="synthetic", doc_id=f"synthetic:{i}")
        batch.append(
            qm.PointStruct(
                id=str(uuid.UUID(int=rng.integers(1 << 62) << 64 | i)),
                vector={DENSE_VECTOR: (vec / np.linalg.norm(vec)).tolist()},
                payload=payload,
            )
        )
        if len(batch) == 1000:
            store.client.upsert(store.collection, batch)
            batch = []
    if batch:
        store.client.upsert(store.collection, batch)
    return store.count_chunks()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = scratch("latency")
    settings = settings_for(work / "data", [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}])
    kn = Knowledge(settings, embedder=build_embedder(settings.embedding))
    kn.sync("handbook")
    total = pad_with_neighbours(kn, args.chunks)
    questions = [
        json.loads(line)["question"] for line in (HANDBOOK / "questions.jsonl").read_text().splitlines()
    ]
    engine, embed = kn.engine, kn.embedder.model
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
        "points",
        "queries",
        "embed p50 ms",
        "retrieve p50 ms",
        "retrieve p95 ms",
        "with source filter p50 / p95 ms",
    ]
    row = [
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
