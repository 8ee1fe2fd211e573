"""Choose the abstention threshold: abstention on not-in-corpus questions against false
abstention on answerable ones, for several thresholds, from `lore eval --json` reports.

Run the evals with abstention off (threshold -1) so every question's top score is recorded:
  LORE_RETRIEVAL__ABSTAIN_BELOW=-1 lore eval QUESTIONS --json > report.json
then: .venv/bin/python bench/abstention.py report1.json [report2.json ...]
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    rows = []
    for path in sys.argv[1:]:
        with open(path) as fh:
            rows += json.load(fh)["per_question"]
    answerable = [r["top_score"] for r in rows if r["answerable"]]
    outside = [r["top_score"] for r in rows if not r["answerable"]]
    print(
        f"{len(answerable)} answerable, {len(outside)} not-in-corpus questions ({', '.join(sys.argv[1:])})\n"
    )
    print("| threshold | abstains on not-in-corpus | false abstention on answerable |")
    print("|---|---|---|")
    for t in [x / 100 for x in range(20, 56, 2)]:
        hit = sum(s < t for s in outside)
        false = sum(s < t for s in answerable)
        print(
            f"| {t:.2f} | {hit}/{len(outside)} ({hit / len(outside):.0%}) | "
            f"{false}/{len(answerable)} ({false / len(answerable):.1%}) |"
        )


if __name__ == "__main__":
    main()
