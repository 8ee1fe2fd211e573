"""Choose the abstention threshold: abstention on not-in-corpus questions against false
abstention on answerable ones, for several thresholds.

Reads the per-question confidence that `lore eval --json` (or bench/retrieval_quality.py
--out) records. Confidence is what `CitingQueryEngine.confidence` computes: the highest cosine
similarity between the question and one of the top three retrieved chunks or one sentence of
them. Run the evals with abstention off so every question is answered and scored:

  LORE_RETRIEVAL__ABSTAIN_BELOW=-1 lore eval QUESTIONS --json > report.json
  .venv/bin/python bench/abstention.py report1.json [report2.json ...] [--mode hybrid]

(a retrieval_quality.py report holds one run per retrieval mode; `--mode` picks one).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def rows_of(path: str, mode: str) -> list[dict[str, Any]]:
    with open(path) as fh:
        data = json.load(fh)
    if "per_question" in data:  # lore eval --json
        return list(data["per_question"])
    rows: list[dict[str, Any]] = []
    for result in data["sets"].values():  # bench/retrieval_quality.py --out
        rows += result["modes"][mode]["per_question"]
    return rows


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument("--low", type=float, default=0.36)
    parser.add_argument("--high", type=float, default=0.56)
    parser.add_argument("--step", type=float, default=0.02)
    args = parser.parse_args()
    rows = [r for path in args.reports for r in rows_of(path, args.mode)]
    answerable = [r["confidence"] for r in rows if r["answerable"]]
    outside = [r["confidence"] for r in rows if not r["answerable"]]
    sources = ", ".join(args.reports)
    print(f"{len(answerable)} answerable, {len(outside)} not-in-corpus questions ({sources})\n")
    print("| threshold | abstains on not-in-corpus | false abstention on answerable |")
    print("|---|---|---|")
    steps = round((args.high - args.low) / args.step)
    for i in range(steps + 1):
        t = args.low + i * args.step
        hit = sum(s < t for s in outside)
        false = sum(s < t for s in answerable)
        print(
            f"| {t:.2f} | {hit}/{len(outside)} ({hit / len(outside):.0%}) | "
            f"{false}/{len(answerable)} ({false / len(answerable):.1%}) |"
        )


if __name__ == "__main__":
    main()
