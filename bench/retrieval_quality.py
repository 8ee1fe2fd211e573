"""Retrieval quality on the eval sets: dense only, sparse only and hybrid, side by side.

Indexes each set once (every index carries both dense and BM25 vectors), then asks every
question in each retrieval mode and reports recall@5 and MRR, plus the abstention signals of
every question (for bench/abstention.py). Settings come from the defaults plus any
`--set key=value` overrides (e.g. `--set chunking.size=256 --set index.engine=qdrant-local`).

Run: .venv/bin/python bench/retrieval_quality.py [--sets handbook pydocs] [--modes dense sparse hybrid]
     [--set section.key=value ...] [--cache] [--int8] [--out bench/results/quality.json]

`--cache` serves document embeddings from ~/.cache/lore/bench (real model vectors of the
same texts, computed once), to compare settings that don't change the chunk texts quickly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from _common import HANDBOOK, REPO, cached_embedder, retrieval_answer, scratch, settings_for

from config import load_settings
from knowledge.answer import Answer
from knowledge.embeddings import build_embedder
from knowledge.evaluate import load_questions, run_eval
from knowledge.query import normalize_question
from knowledge.service import Knowledge

PYDOCS = REPO / "bench" / "pydocs"


def overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(section, {})[name] = parsed
    return out


def build_settings(name: str, data_dir: Path, extra: dict[str, Any]) -> Any:
    if name == "handbook":
        sources = [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}]
        return settings_for(data_dir, sources, **extra)
    base = load_settings(PYDOCS / "lore.toml")
    return settings_for(data_dir, [s.model_dump() for s in base.sources], **extra)


def retrieval_only(kn: Knowledge, mode: str) -> Any:
    """Answer with retrieval alone (no generator): what recall, MRR and abstention need."""

    def ask(question: str, k: int) -> Answer:
        clean = normalize_question(question) or question
        return retrieval_answer(question, kn.engine.lookup(clean, top_k=k, mode=mode))

    return ask


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=["handbook", "pydocs"])
    parser.add_argument("--modes", nargs="+", default=["dense", "sparse", "hybrid"])
    parser.add_argument("--set", dest="pairs", action="append", default=[])
    parser.add_argument("--cache", action="store_true")
    # int8 ONNX is not a setting (it lost more recall than allowed); this measures it.
    parser.add_argument("--int8", action="store_true", help="embed with the int8 ONNX model")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    extra = overrides(args.pairs)
    report: dict[str, Any] = {"overrides": extra, "sets": {}}
    embedder = None
    rows = []
    for name in args.sets:
        work = scratch(f"quality-{name}")
        settings = build_settings(name, work / "data", extra)
        if embedder is None:
            embedder = build_embedder(settings.embedding, precision="int8" if args.int8 else "fp32")
            if args.cache:
                embedder = cached_embedder(embedder)
        kn = Knowledge(settings, embedder=embedder)
        started = time.perf_counter()
        progress = kn.sync(name)
        index_s = time.perf_counter() - started
        assert progress.error is None, progress.error
        chunks = kn.store.count_chunks()
        questions = load_questions((HANDBOOK if name == "handbook" else PYDOCS) / "questions.jsonl")
        report["sets"][name] = {"chunks": chunks, "index_seconds": round(index_s, 1), "modes": {}}
        for mode in args.modes:
            result = run_eval(questions, retrieval_only(kn, mode), k=settings.retrieval.top_k)
            report["sets"][name]["modes"][mode] = result
            o = result["overall"]
            rows.append((name, chunks, mode, o["recall_at_k"], o["mrr"]))
        kn.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"overrides: {extra or 'none (defaults)'}\n")
    print("| set | chunks | mode | recall@5 | MRR |")
    print("|---|---|---|---|---|")
    for name, chunks, mode, recall, mrr in rows:
        print(f"| {name} | {chunks} | {mode} | {recall:.4f} | {mrr:.4f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
