"""The answer checks of `lore eval --answers` on the handbook, per generator.

The same report as `lore eval examples/handbook/questions.jsonl --answers --json` (its
"answers" key), over the cached handbook index (bench/evalcache.py), for each generator asked.
The local model takes about half a minute an answer on this machine: `--every` samples.

    nice -n 10 .venv/bin/python bench/citations/answers.py --generators extractive
    nice -n 10 .venv/bin/python bench/citations/answers.py --generators local --every 6
    nice -n 10 .venv/bin/python bench/citations/answers.py --generators extractive --drop
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from evalcache import EVAL_SETS, REPO, open_eval  # noqa: E402

from knowledge.evaluate import load_questions, run_eval  # noqa: E402

KEYS = (
    "answered",
    "citation_validity",
    "citation_support",
    "citation_precision",
    "citation_recall",
    "uncited_sentences",
    "unsupported_claims",
    "answers_with_unsupported_claims",
    "fact_hit_rate",
    "abstain_not_in_corpus",
    "false_abstain",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generators", nargs="+", default=["extractive"], choices=["extractive", "local"])
    parser.add_argument("--every", type=int, default=1, help="every Nth question")
    parser.add_argument("--drop", action="store_true", help="with answers.drop_unsupported = true")
    args = parser.parse_args()

    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(EmbeddingSettings())
    questions = load_questions(EVAL_SETS["handbook"].questions)[:: args.every]
    results = {}
    for name in args.generators:
        started = time.perf_counter()
        query = {"llm": {"provider": name}, "answers": {"drop_unsupported": args.drop}}
        with open_eval("handbook", embedder, query=query) as kn:
            report = run_eval(questions, lambda q, k: kn.answer(q, top_k=k), k=5, checker=kn.engine.checker())
        results[name] = {**report["answers"], "seconds": round(time.perf_counter() - started)}
        out = REPO / "bench" / "results" / f"answers-{name}{'-drop' if args.drop else ''}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    print(f"{len(questions)} questions\n")
    print("| generator | " + " | ".join(KEYS) + " | seconds |")
    print("|---|" + "---|" * (len(KEYS) + 1))
    for name, r in results.items():
        o = r["overall"]
        cells = ["–" if o[k] is None else str(o[k]) for k in KEYS]
        print(f"| {name} | " + " | ".join(cells) + f" | {r['seconds']} |")


if __name__ == "__main__":
    main()
