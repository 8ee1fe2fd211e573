"""Search latency of one ranking configuration against another, on a cached eval index.

The query embedding is computed once per question (it doesn't depend on the ranking), so this
times exactly what a ranking setting changes: the engine's dense and sparse lists, fusion, the
fetch of the chosen points and the per-document cap. Each question is searched with both
configurations in turn, `--repeats` times, so a busy machine slows both alike; the ratio of
their p50 and p95 is the figure to compare with bench/scale.py's 100k-chunk latency.

Run: nice -n 10 .venv/bin/python bench/ranking_latency.py --set git \\
         --config '{"retrieval": {"max_per_doc": 1, "doc_boost": 0.1}}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile
from evalcache import EVAL_SETS, open_eval
from llama_index.core.schema import QueryBundle

from knowledge.evaluate import load_questions
from knowledge.query import normalize_question


def search_ms(kn: Any, query: tuple[str, list[float]], top_k: int = 5) -> float:
    retriever = kn.engine.retriever(top_k)
    started = time.perf_counter()
    retriever.retrieve(QueryBundle(query_str=query[0], embedding=query[1]))
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", dest="name", default="git", choices=list(EVAL_SETS))
    parser.add_argument("--config", default="{}", help="query-time overrides to compare with the defaults")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(EmbeddingSettings())
    questions = [
        normalize_question(q.question) or q.question for q in load_questions(EVAL_SETS[args.name].questions)
    ]
    with (
        open_eval(args.name, embedder) as base,
        open_eval(args.name, embedder, query=json.loads(args.config)) as new,
    ):
        queries = [(q, base.engine.embedder.query_model.get_query_embedding(q)) for q in questions]
        for query in queries[:5]:  # warm up both
            search_ms(base, query), search_ms(new, query)
        before: list[float] = []
        after: list[float] = []
        for repeat in range(args.repeats):
            for query in queries:  # interleaved, each going first in turn, so load drifts hit both
                if repeat % 2:
                    after.append(search_ms(new, query))
                    before.append(search_ms(base, query))
                else:
                    before.append(search_ms(base, query))
                    after.append(search_ms(new, query))
        chunks = base.store.count_chunks()
    p50 = (percentile(before, 50), percentile(after, 50))
    p95 = (percentile(before, 95), percentile(after, 95))
    print(f"{args.name}: {chunks} chunks, {len(before)} searches each; config {args.config}")
    print(f"search p50 ms: {p50[0]:.2f} -> {p50[1]:.2f} (x{p50[1] / p50[0]:.2f})")
    print(f"search p95 ms: {p95[0]:.2f} -> {p95[1]:.2f} (x{p95[1] / p95[0]:.2f})")


if __name__ == "__main__":
    main()
