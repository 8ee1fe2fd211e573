"""The citation-support check against hand labels: its precision and recall, and its threshold.

bench/citations/labels.jsonl holds (answer sentence, cited source, supported?) pairs, labelled
by reading the source, for the handbook's answers (bench/citations/answers-extractive.jsonl
keeps each answer's sources as the prompt numbered them). Four sets:

- `quoted`: every cited sentence of the extractive answers, with the source it cites;
- `miscited`: each answer's first cited sentence with another source of the same prompt (what
  a model that cites the wrong number produces);
- `paraphrase`: that sentence reworded as a language model would write it, same source;
- `altered`: a paraphrase with a fact changed or made up.

For each threshold the support check (`knowledge.answer_checks.AnswerChecker`, MiniLM cosine
with the source's best sentence) is scored against the labels: precision and recall of
"supported", and of "unsupported" (what `answers.drop_unsupported` removes). The threshold is
the one with the best balanced accuracy on the pairs a language model would write
(paraphrase, miscited, altered), and as a check, chosen on the even-numbered questions only and
measured on the odd ones. A pair passes when its cosine reaches the threshold and the sentence's
numbers, names and links are in the cited source. It also reports ALCE's citation
recall and precision of the extractive answers as the labels and as the check see them, and
how many altered sentences the uncited-claims check catches.

    nice -n 10 .venv/bin/python bench/citations/support.py
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))


def load() -> tuple[list[dict[str, Any]], dict[str, dict[int, list[str]]]]:
    labels = [json.loads(line) for line in (HERE / "labels.jsonl").read_text().splitlines() if line.strip()]
    sources = {}
    for line in (HERE / "answers-extractive.jsonl").read_text().splitlines():
        row = json.loads(line)
        sources[row["id"]] = {int(n): texts for n, texts in row["sources"].items()}
    return labels, sources


# The pairs a language model would write (it paraphrases, miscites, changes a fact); verbatim
# quotes pass at any threshold up to ~0.8, and would only pull the choice towards them.
WRITTEN = ("paraphrase", "miscited", "altered")


def _even(row: dict[str, Any]) -> bool:
    return int(row["id"][-1]) % 2 == 0


def metrics(pairs: list[tuple[float, bool]], threshold: float) -> dict[str, float]:
    tp = sum(1 for s, y in pairs if s >= threshold and y)
    fp = sum(1 for s, y in pairs if s >= threshold and not y)
    fn = sum(1 for s, y in pairs if s < threshold and y)
    tn = sum(1 for s, y in pairs if s < threshold and not y)

    def div(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {
        "precision": div(tp, tp + fp),
        "recall": div(tp, tp + fn),
        "unsupported_precision": div(tn, tn + fn),
        "unsupported_recall": div(tn, tn + fp),
        "balanced_accuracy": (div(tp, tp + fn) + div(tn, tn + fp)) / 2,
        "accuracy": div(tp + tn, len(pairs)),
    }


def choose(pairs: list[tuple[float, bool]]) -> float:
    """The threshold (on a 0.01 grid) with the best balanced accuracy; ties: the lowest."""
    grid = [round(0.2 + 0.01 * i, 2) for i in range(76)]
    return max(grid, key=lambda t: (round(metrics(pairs, t)["balanced_accuracy"], 6), -t))


def drop_cost(model: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """(median, p90) ms of `drop_unsupported` on each extractive answer's draft: a fresh checker
    (sources new to it), then the same answers again (their vectors cached)."""
    import statistics
    import time

    from knowledge.answer_checks import AnswerChecker

    rows = [json.loads(line) for line in (HERE / "answers-extractive.jsonl").read_text().splitlines()]
    rows = [r for r in rows if not r["abstained"]]
    checker = AnswerChecker(model)
    out = []
    for _pass in range(2):
        times = []
        for r in rows:
            started = time.perf_counter()
            checker.drop_unsupported(r["draft"], {int(n): t for n, t in r["sources"].items()})
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        out.append((statistics.median(times), times[int(0.9 * len(times))]))
    return out[0], out[1]


def main() -> None:
    from config.settings import EmbeddingSettings
    from knowledge.answer_checks import AnswerChecker, Sentence, extract_claims, unsupported
    from knowledge.embeddings import build_embedder

    labels, sources = load()
    checker = AnswerChecker(build_embedder(EmbeddingSettings()).query_model)
    for row in labels:
        sentence = Sentence(row["sentence"], row["sentence"], [row["n"]], 0)
        checked = checker.support([sentence], sources[row["id"]])[0]
        row["cosine"] = checked.scores.get(row["n"], 0.0)
        row["missing"] = checked.missing.get(row["n"], [])
        # What the check compares with the threshold: a claim missing from the source fails it.
        row["score"] = -1.0 if row["missing"] else row["cosine"]
    pairs = [(r["score"], bool(r["supported"])) for r in labels]
    written = [(r["score"], bool(r["supported"])) for r in labels if r["set"] in WRITTEN]
    threshold = choose(written)
    even = [(r["score"], bool(r["supported"])) for r in labels if r["set"] in WRITTEN and _even(r)]
    odd = [(r["score"], bool(r["supported"])) for r in labels if r["set"] in WRITTEN and not _even(r)]
    split_threshold = choose(even)
    cosine_only = choose([(r["cosine"], bool(r["supported"])) for r in labels if r["set"] in WRITTEN])

    by_set: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for r in labels:
        by_set[r["set"]].append((r["score"], bool(r["supported"])))
    quoted = by_set["quoted"]
    altered = [r for r in labels if r["set"] == "altered"]
    caught = sum(1 for r in altered if unsupported(extract_claims(r["sentence"]), sources[r["id"]][r["n"]]))
    paraphrases = [r for r in labels if r["set"] == "paraphrase"]
    false_flags = sum(
        1 for r in paraphrases if unsupported(extract_claims(r["sentence"]), sources[r["id"]][r["n"]])
    )

    def fmt(m: dict[str, float]) -> str:
        return " | ".join(
            f"{m[k]:.3f}" for k in ("precision", "recall", "unsupported_precision", "unsupported_recall")
        )

    lines = [
        f"{len(labels)} labelled pairs from {len({r['id'] for r in labels})} handbook answers; "
        f"{sum(1 for _s, y in pairs if y)} supported, {sum(1 for _s, y in pairs if not y)} not.",
        "",
        f"Threshold with the best balanced accuracy on the paraphrased, miscited and altered "
        f"pairs: **{threshold:.2f}** (on their even-numbered questions only: {split_threshold:.2f}; "
        f"with the cosine alone, no claims: {cosine_only:.2f}).",
        "",
        "| pairs | threshold | precision | recall | unsupported: precision | unsupported: recall |",
        "|---|---|---|---|---|---|",
        f"| all ({len(pairs)}) | {threshold:.2f} | {fmt(metrics(pairs, threshold))} |",
        f"| paraphrased, miscited, altered ({len(written)}) | {threshold:.2f} | "
        f"{fmt(metrics(written, threshold))} |",
        f"| the same, odd questions ({len(odd)}), threshold from the even ones | {split_threshold:.2f} | "
        f"{fmt(metrics(odd, split_threshold))} |",
    ]
    for t in (0.5, 0.6, 0.7, 0.8):
        lines.append(f"| all | {t:.2f} | {fmt(metrics(pairs, t))} |")
    cos_pairs = [(r["cosine"], bool(r["supported"])) for r in labels]
    lines.append(
        f"| all, cosine alone (no claims) | {threshold:.2f} | {fmt(metrics(cos_pairs, threshold))} |"
    )
    lines += [
        "",
        "| set | pairs | labelled supported | check says supported (at the threshold) |",
        "|---|---|---|---|",
    ]
    for name, ps in by_set.items():
        passed = sum(1 for s, _y in ps if s >= threshold)
        lines.append(f"| {name} | {len(ps)} | {sum(1 for _s, y in ps if y)} | {passed} |")
    labelled_recall = sum(1 for _s, y in quoted if y) / len(quoted)
    check_recall = sum(1 for s, _y in quoted if s >= threshold) / len(quoted)
    lines += [
        "",
        f"ALCE citation recall (= precision: one source per sentence) of the extractive answers: "
        f"{labelled_recall:.3f} by the labels, {check_recall:.3f} by the check.",
        f"Uncited-claims check: flags {caught} of {len(altered)} altered sentences, and "
        f"{false_flags} of {len(paraphrases)} faithful paraphrases.",
    ]
    cold, warm = drop_cost(checker.model)
    lines.append(
        f"answers.drop_unsupported per answer: {cold[0]:.0f} ms median, {cold[1]:.0f} ms p90 with new "
        f"sources; {warm[0]:.0f} ms, {warm[1]:.0f} ms with sources seen before."
    )
    table = "\n".join(lines) + "\n"
    print(table)
    out = REPO / "bench" / "results" / "citations.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "threshold": threshold,
                "split_threshold": split_threshold,
                "metrics": metrics(pairs, threshold),
                "scores": [
                    {k: r[k] for k in ("id", "set", "n", "supported", "cosine", "missing")} for r in labels
                ],
            },
            indent=1,
        )
    )
    out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
