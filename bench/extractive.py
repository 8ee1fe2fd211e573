"""Fact hit rate of extractive answers (no LLM), per eval set.

Each answerable question goes through the full answer path (`Knowledge.answer`, top 5, the
extractive generator), as `lore eval` does. Reported per set:

- `fact hit`: the share of expected facts that appear verbatim (case-insensitive) in the
  answer, over all answerable questions (abstained answers hit nothing), as `lore eval`
  reports it;
- `in top 5`: the share of facts that appear in the text of the retrieved top-5 chunks: what
  a perfect quote picker could reach on this retrieval;
- `of reachable`: fact hit / in top 5;
- the answers' mean length (characters) and quoted lines.

Indexes come from the eval-index cache (bench/evalcache.py: built once per reader/chunker
version). `--index SET=DIR` reads an existing index folder instead (copied, never changed).

Run: nice -n 10 .venv/bin/python bench/extractive.py [--sets handbook postfix git sqlite pydocs]
     [--index git=~/.cache/lore/evals/git-<key>] [--out bench/results/extractive.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalcache import EVAL_SETS, make_settings, open_eval

from knowledge.evaluate import NOT_IN_CORPUS, load_questions


@contextmanager
def open_index(name: str, embedder: Any, folder: Path | None) -> Iterator[Any]:
    if folder is None:
        with open_eval(name, embedder) as kn:
            yield kn
        return
    from knowledge.service import Knowledge

    with tempfile.TemporaryDirectory(prefix=f"lore-extractive-{name}-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(folder, data, ignore=shutil.ignore_patterns("meta.json", "lore.lock"))
        kn = Knowledge(make_settings(EVAL_SETS[name], data), embedder=embedder)
        try:
            yield kn
        finally:
            kn.close()


def measure(name: str, embedder: Any, folder: Path | None) -> dict[str, Any]:
    questions = [q for q in load_questions(EVAL_SETS[name].questions) if q.kind != NOT_IN_CORPUS]
    rows = []
    with open_index(name, embedder, folder) as kn:
        started = time.perf_counter()
        for q in questions:
            answer = kn.answer(q.question, top_k=5)
            text = answer.text.lower()
            retrieved = " ".join(c.text for c in answer.chunks).lower()
            rows.append(
                {
                    "id": q.id,
                    "kind": q.kind,
                    "facts": len(q.facts),
                    "hit": [f for f in q.facts if f.lower() in text],
                    "reachable": [f for f in q.facts if f.lower() in retrieved],
                    "missed": [f for f in q.facts if f.lower() not in text],
                    "abstained": answer.abstained,
                    "chars": len(answer.text),
                    "lines": answer.text.count("\n- ") + answer.text.startswith("- "),
                    "question": q.question,
                    "answer": answer.text,
                }
            )
        seconds = time.perf_counter() - started

    def rate(rs: list[dict[str, Any]], key: str) -> float | None:
        n = sum(r["facts"] for r in rs)
        return round(sum(len(r[key]) for r in rs) / n, 4) if n else None

    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    hit, reachable = rate(rows, "hit"), rate(rows, "reachable")
    return {
        "set": name,
        "questions": len(rows),
        "facts": sum(r["facts"] for r in rows),
        "fact_hit_rate": hit,
        "in_top5": reachable,
        "of_reachable": round(hit / reachable, 4) if hit is not None and reachable else None,
        "mean_chars": round(sum(r["chars"] for r in rows) / len(rows)),
        "mean_lines": round(sum(r["lines"] for r in rows) / len(rows), 2),
        "by_kind": {k: rate(rs, "hit") for k, rs in sorted(by_kind.items())},
        "ms_per_question": round(1000 * seconds / max(len(rows), 1)),
        "per_question": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=list(EVAL_SETS), choices=list(EVAL_SETS))
    parser.add_argument(
        "--index", action="append", default=[], metavar="SET=DIR", help="an existing index folder"
    )
    parser.add_argument("--out", type=Path, default=None, help="write every answer and score as JSON")
    args = parser.parse_args()
    folders = {k: Path(v).expanduser() for k, v in (item.split("=", 1) for item in args.index)}
    from config.settings import Settings
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(Settings().embedding)
    results = []
    print("| set | answerable | facts | fact hit | in top 5 | of reachable | mean chars | mean lines |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        r = measure(name, embedder, folders.get(name))
        results.append(r)
        print(
            f"| {name} | {r['questions']} | {r['facts']} | **{r['fact_hit_rate']}** | {r['in_top5']} "
            f"| {r['of_reachable']} | {r['mean_chars']} | {r['mean_lines']} |",
            flush=True,
        )
    for r in results:
        print(f"{r['set']} by kind: {r['by_kind']}  ({r['ms_per_question']} ms/question)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
