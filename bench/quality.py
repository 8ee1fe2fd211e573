"""Retrieval quality of named configurations over every eval set, with leave-one-corpus-out selection.

Each configuration is a set of settings overrides: query-time ones (`retrieval.*`), which reuse
the cached index of each set (bench/evalcache.py), and optionally index-time ones (`chunking.*`,
...), which build (once) and cache an index of their own. For every set and configuration it
reports recall@5, MRR, both by question kind, abstention on not-in-corpus questions and false
abstention (and with `--answers`, the extractive answers' fact hit rate).

Leave one corpus out: for each set in turn, the configuration with the best mean of
(recall@5 + MRR) / 2 over the *other* sets is chosen, and its figures on the left-out set are
what the method would get on a corpus it was never tuned on. A configuration wins only if it
wins there.

Run (from the repo root; builds the cached indexes first if needed, one at a time):

    nice -n 10 .venv/bin/python bench/quality.py                     # every set, every configuration
    nice -n 10 .venv/bin/python bench/quality.py --sets git sqlite --configs before defaults "rrf_k=5"
    nice -n 10 .venv/bin/python bench/quality.py --config 'mine={"retrieval": {"rrf_k": 3}}'

It writes bench/results/quality.json and bench/results/quality.md (the table for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import retrieval_answer
from evalcache import EVAL_SETS, REPO, cached_index, meta, open_eval

from knowledge.answer import Answer
from knowledge.evaluate import load_questions, run_eval
from knowledge.query import normalize_question

# name -> {"query": settings overrides, "index": index-time overrides (optional)}.
# Ranking as it was before issue 17; every configuration below changes it in one or two ways.
BEFORE = {"rrf_k": 1, "max_per_doc": 0, "doc_boost": 0.0}


def _query(**retrieval: Any) -> dict[str, Any]:
    return {"query": {"retrieval": {**BEFORE, **retrieval}}}


CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},  # the defaults of the code being measured
    "before": _query(),
    "dense": _query(mode="dense"),
    "sparse": _query(mode="sparse"),
    **{f"rrf_k={k}": _query(rrf_k=k) for k in (3, 5, 10, 20, 60)},
    **{f"dense_weight={w}": _query(dense_weight=w) for w in (0.5, 0.75, 1.5, 2.0)},
    "dbsf": _query(fusion="dbsf"),
    "dbsf dense_weight=1.5": _query(fusion="dbsf", dense_weight=1.5),
    **{f"max_per_doc={n}": _query(max_per_doc=n) for n in (1, 2, 3)},
    "max_per_doc=1 depth=40": _query(max_per_doc=1, depth=40),
    **{f"rrf_k=3 max_per_doc={n}": _query(rrf_k=3, max_per_doc=n) for n in (1, 2)},
    **{f"rrf_k=5 max_per_doc={n}": _query(rrf_k=5, max_per_doc=n) for n in (1, 2)},
    **{
        f"max_per_doc={n} doc_boost={b}": _query(max_per_doc=n, doc_boost=b)
        for n in (1, 2)
        for b in (0.05, 0.1, 0.2, 0.3)
    },
    "max_per_doc=1 doc_boost=0.1 depth=40": _query(max_per_doc=1, doc_boost=0.1, depth=40),
    "max_per_doc=1 doc_boost=0.1 rrf_k=3": _query(max_per_doc=1, doc_boost=0.1, rrf_k=3),
    **{
        f"max_per_doc=1 doc_boost={b} rrf_k={k}": _query(max_per_doc=1, doc_boost=b, rrf_k=k)
        for k in (10, 20)
        for b in (0, 0.1, 0.3)
    },
    **{
        f"max_per_doc=1 doc_boost={b} dbsf": _query(max_per_doc=1, doc_boost=b, fusion="dbsf")
        for b in (0, 0.1, 0.3)
    },
}

# Figures before this work (lore eval, defaults): no set may drop below them.
BASELINE = {
    "handbook": (0.9875, 0.9365),
    "pydocs": (0.870, 0.827),
    "postfix": (0.85, 0.74),
    "git": (0.79, 0.69),
    "sqlite": (0.75, 0.62),
}


def objective(overall: dict[str, Any]) -> float:
    return (float(overall["recall_at_k"]) + float(overall["mrr"])) / 2


def retrieval_only(kn: Any, abstention: bool = True) -> Callable[[str, int], Answer]:
    """Retrieval and the abstention decision, no generator (the chunks are the same).
    Without `abstention`, no confidence either (it embeds the top chunks' sentences: slow)."""

    def ask(question: str, k: int) -> Answer:
        clean = normalize_question(question) or question
        if not abstention:
            chunks = kn.engine.search(clean, top_k=k)
            return Answer(
                question=question, text="", abstained=False, chunks=chunks, model="-", prompt_version="-"
            )
        return retrieval_answer(question, kn.engine.lookup(clean, top_k=k))

    return ask


def evaluate(kn: Any, questions: list[Any], answers: bool, abstention: bool = True) -> dict[str, Any]:
    ask = (lambda q, k: kn.answer(q, top_k=k)) if answers else retrieval_only(kn, abstention)
    return run_eval(questions, ask, k=5)


def leave_one_out(results: dict[str, dict[str, Any]], sets: list[str]) -> dict[str, dict[str, Any]]:
    """For each set: the configuration best on the other sets, and its figures on this one."""
    out = {}
    for held in sets:
        others = [s for s in sets if s != held]
        if not others:
            continue
        chosen = max(
            results,
            key=lambda c: sum(objective(results[c][s]["overall"]) for s in others) / len(others),
        )
        o = results[chosen][held]["overall"]
        out[held] = {"chosen": chosen, "recall_at_k": o["recall_at_k"], "mrr": o["mrr"]}
    return out


def fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(results: dict[str, dict[str, Any]], sets: list[str], loco: dict[str, dict[str, Any]]) -> str:
    lines = [
        "recall@5 / MRR on answerable questions; abstention on not-in-corpus (abst.) and on",
        "answerable ones (false). **Bold†**: the configuration chosen on the other sets, on the",
        "set left out.",
        "",
        "| configuration | " + " | ".join(sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for config, per_set in results.items():
        cells = []
        for s in sets:
            o = per_set[s]["overall"]
            cell = f"{fmt(o['recall_at_k'])} / {fmt(o['mrr'])}"
            if loco.get(s, {}).get("chosen") == config:
                cell = f"**{cell}**†"
            n_out, n_ans = o["not_in_corpus"], o["answerable"]
            abst = round((o["abstain_not_in_corpus"] or 0) * n_out)
            false = round((o["false_abstain"] or 0) * n_ans)
            if per_set[s].get("abstention", True):
                cell += f" · abst. {abst}/{n_out}, false {false}/{n_ans}"
            if o.get("fact_hit_rate") is not None and per_set[s].get("answers"):
                cell += f" · facts {o['fact_hit_rate']:.2f}"
            cells.append(cell)
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Leave one corpus out:",
        "",
        "| left out | chosen on the others | recall@5 | MRR | before (recall@5 / MRR) |",
        "|---|---|---|---|---|",
    ]
    for s, row in loco.items():
        before = BASELINE.get(s)
        was = f"{before[0]:.2f} / {before[1]:.2f}" if before else "–"
        lines.append(f"| {s} | {row['chosen']} | {fmt(row['recall_at_k'])} | {fmt(row['mrr'])} | {was} |")
    return "\n".join(lines) + "\n"


def by_kind_table(results: dict[str, dict[str, Any]], sets: list[str]) -> str:
    lines = ["| configuration | set | " + "kind recall@5 / MRR | " * 1, "|---|---|---|"]
    for config, per_set in results.items():
        for s in sets:
            kinds = per_set[s]["by_kind"]
            text = ", ".join(
                f"{k} {fmt(v['recall_at_k'])}/{fmt(v['mrr'])}" for k, v in kinds.items() if v["answerable"]
            )
            lines.append(f"| {config} | {s} | {text} |")
    return "\n".join(lines) + "\n"


def write_report(
    out: Path,
    sets: list[str],
    configs: dict[str, Any],
    results: dict[str, dict[str, Any]],
    chunks: dict[str, int],
) -> None:
    loco = leave_one_out(results, sets)
    table = markdown(results, sets, loco)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "sets": sets,
        "chunks": chunks,
        "configs": configs,
        "leave_one_out": loco,
        "results": {
            c: {s: {k: v for k, v in r.items() if k != "per_question"} for s, r in per.items()}
            for c, per in results.items()
        },
        "per_question": {
            c: {s: r["per_question"] for s, r in per.items() if "per_question" in r}
            for c, per in results.items()
        },
    }
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(table + "\nBy kind:\n\n" + by_kind_table(results, sets))


def merge(files: list[Path], out: Path) -> None:
    """One report from runs over different sets: the configurations every file has."""
    reports = [json.loads(f.read_text()) for f in files]
    sets = [s for r in reports for s in r["sets"]]
    names = [c for c in reports[0]["results"] if all(c in r["results"] for r in reports)]
    results: dict[str, dict[str, Any]] = {c: {} for c in names}
    for r in reports:
        for c in names:
            for s in r["sets"]:
                results[c][s] = {**r["results"][c][s], "per_question": r["per_question"][c][s]}
    configs = {c: reports[0]["configs"][c] for c in names}
    write_report(out, sets, configs, results, {k: v for r in reports for k, v in r["chunks"].items()})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=list(EVAL_SETS), choices=list(EVAL_SETS))
    parser.add_argument("--configs", nargs="+", help=f"names from CONFIGS (default: all of {list(CONFIGS)})")
    parser.add_argument(
        "--config",
        dest="extra",
        action="append",
        default=[],
        help='an extra configuration: NAME=\'{"query": {...}, "index": {...}}\' (or just the query part)',
    )
    parser.add_argument("--answers", action="store_true", help="the full answer path (fact hit rate too)")
    parser.add_argument("--fast", action="store_true", help="ranking only: no confidence, no abstention")
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="no runs: combine earlier --out JSON files (sets run apart)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "quality.json")
    args = parser.parse_args()

    if args.merge:
        merge(args.merge, args.out)
        return
    configs = {name: CONFIGS[name] for name in (args.configs or list(CONFIGS))}
    for item in args.extra:
        name, raw = item.split("=", 1)
        spec = json.loads(raw)
        configs[name] = spec if set(spec) <= {"query", "index"} else {"query": spec}

    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(EmbeddingSettings())

    results: dict[str, dict[str, Any]] = {name: {} for name in configs}
    chunks: dict[str, int] = {}
    for s in args.sets:
        questions = load_questions(EVAL_SETS[s].questions)
        for name, spec in configs.items():
            started = time.perf_counter()
            index = spec.get("index")
            chunks.setdefault(s, meta(cached_index(s, embedder, index=index))["chunks"])
            with open_eval(s, embedder, index=index, query=spec.get("query")) as kn:
                result = evaluate(kn, questions, args.answers, abstention=not args.fast)
            result["answers"] = args.answers
            result["abstention"] = args.answers or not args.fast
            results[name][s] = result
            o = result["overall"]
            print(
                f"{s:9} {name:24} recall@5 {o['recall_at_k']:.4f} MRR {o['mrr']:.4f} "
                f"abst {o['abstain_not_in_corpus']} false {o['false_abstain']} "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    write_report(args.out, args.sets, configs, results, chunks)


if __name__ == "__main__":
    main()
