"""Answers to label: the handbook's answerable questions through the full answer path.

Each line of the output is one answer: the question, the generator, the draft (the generator's
text with the prompt's source numbers) and the sources as the prompt numbered them. The cited
sentences of these answers are what bench/citations/labels.jsonl labels by hand.

    nice -n 10 .venv/bin/python bench/citations/generate.py --generator extractive
    nice -n 10 .venv/bin/python bench/citations/generate.py --generator local --limit 40
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

from knowledge.answer_checks import answer_sources  # noqa: E402
from knowledge.evaluate import NOT_IN_CORPUS, load_questions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", choices=["extractive", "local"], default="extractive")
    parser.add_argument("--limit", type=int, default=0, help="the first N answerable questions (0: all)")
    parser.add_argument("--every", type=int, default=1, help="every Nth answerable question")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or REPO / "bench" / "citations" / f"answers-{args.generator}.jsonl"

    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(EmbeddingSettings())
    questions = [q for q in load_questions(EVAL_SETS["handbook"].questions) if q.kind != NOT_IN_CORPUS]
    questions = questions[:: args.every]
    if args.limit:
        questions = questions[: args.limit]
    with (
        open_eval("handbook", embedder, query={"llm": {"provider": args.generator}}) as kn,
        out.open("w") as f,
    ):
        for q in questions:
            started = time.perf_counter()
            answer = kn.answer(q.question)
            text, sources = answer_sources(answer)
            row = {
                "id": q.id,
                "generator": args.generator,
                "question": q.question,
                "abstained": answer.abstained,
                "draft": text,
                "sources": {str(n): texts for n, texts in sources.items()},
            }
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(f"{q.id} {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
