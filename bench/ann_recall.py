"""HNSW recall@10 against exact search, on real embeddings, for several `hnsw_ef` values.

The index holds the real chunks of the full Python-docs selection and the handbook (copy 0
of bench/scale.py's corpus), embedded by the real model (cached in ~/.cache/lore/bench after
the first run). Edge would search a set this small exactly, so the thresholds below which it
skips the HNSW graph are lowered for this run: every search here goes through the graph.
Queries: the 175 eval questions plus `--extra` sentences taken from random chunks, embedded
by the query model. recall@10 = |HNSW top 10 ∩ exact top 10| / 10, averaged over queries.

Run: .venv/bin/python bench/ann_recall.py [--ef 16 32 64 128 256] [--extra 500]
     [--set index.hnsw_m=16 --set index.hnsw_ef_construct=100]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import time

from _common import percentile, scratch, settings_for
from retrieval_quality import overrides
from scale import prepare_corpus, questions, twin_embedder

import knowledge.backends.edge as edge
from knowledge.backends import SearchRequest
from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ef", nargs="+", type=int, default=[16, 32, 64, 128, 256])
    parser.add_argument("--extra", type=int, default=500)
    parser.add_argument("--set", dest="pairs", action="append", default=[])
    args = parser.parse_args()
    edge.INDEXING_THRESHOLD_KB = 10  # build the graph for every segment...
    edge.FULL_SCAN_THRESHOLD_KB = 10  # ... and use it for every search
    corpus = prepare_corpus(10)
    work = scratch("ann")
    extra = overrides(args.pairs)
    extra.setdefault("index", {})["engine"] = "edge"
    settings = settings_for(
        work / "data", [{"name": "copy00", "type": "directory", "path": str(corpus / "copy00")}], **extra
    )
    embedder = build_embedder(settings.embedding)
    kn = Knowledge(settings, embedder=twin_embedder(embedder))
    kn.sync("copy00")
    backend = kn.store.backend
    started = time.perf_counter()
    backend.optimize(force=True)
    build_s = time.perf_counter() - started
    points = kn.store.count_chunks()

    texts = list(questions())
    rng = random.Random(11)
    chunks = [payload.get("text", "") for _id, payload, _ in backend.scroll(None, ["text"])]
    for text in rng.sample(chunks, min(args.extra, len(chunks))):
        sentence = re.split(r"(?<=[.!?])\s+", text.strip())[0][:300]
        texts.append(sentence)
    model = embedder.query_model
    vectors = [model.get_query_embedding(t) for t in texts]
    exact = [
        [h.id for h in backend.search(SearchRequest(mode="dense", limit=10, dense=v, exact=True))]
        for v in vectors
    ]
    print(
        f"{points} real chunks, {len(texts)} queries; HNSW m={settings.index.hnsw_m} "
        f"ef_construct={settings.index.hnsw_ef_construct}, built in {build_s:.1f} s\n"
    )
    print("| hnsw_ef | recall@10 vs exact | search p50 ms | search p95 ms |")
    print("|---|---|---|---|")
    for ef in args.ef:
        recalls, times = [], []
        for v, truth in zip(vectors, exact, strict=True):
            t0 = time.perf_counter()
            hits = backend.search(SearchRequest(mode="dense", limit=10, dense=v, hnsw_ef=ef))
            times.append((time.perf_counter() - t0) * 1000)
            recalls.append(len({h.id for h in hits} & set(truth)) / len(truth))
        recall = sum(recalls) / len(recalls)
        print(f"| {ef} | {recall:.4f} | {percentile(times, 50):.2f} | {percentile(times, 95):.2f} |")
    kn.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
