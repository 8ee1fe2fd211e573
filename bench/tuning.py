"""Retriever tuning (issue 18): each eval set before and after a real `lore tune` run, per method.

For each set (its cached eval index, `bench/evalcache.py`, opened as a private copy) and each
method (`adapter`, `full`), the run of `workers/tuning.py` itself, with `--promote never`:

- `synthetic`: synthetic pairs from the corpus only; measured on all of the set's questions
  (configured as an `[[evals]]` set, so never trained on).
- `half`: half of the set's questions (a seeded split by id) as imported pairs (`--pairs`),
  measured on the other half, then the halves swapped; the two halves' figures are averaged,
  weighted by their question counts.

Figures are recall@5 and MRR as the gate measures them (dense by cosine, the index's BM25,
Lore's fusion and per-document cap), plus training seconds per 1,000 pairs. `--loop SET` also
times the whole loop with a promotion (re-index included) on that set, e.g. git+postfix (more
than 10k chunks; `bench/evalcache.py` SCALE_SETS).

Run: nice -n 10 .venv/bin/python bench/tuning.py [--sets handbook pydocs] [--methods adapter full]
     [--synthetic 1000] [--max-minutes 10] [--loop git+postfix] [--out ~/.cache/lore/bench/tuning.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def halves(questions: list[Any], seed: int = 0) -> tuple[list[Any], list[Any]]:
    """The set's questions in two halves by a seeded hash of their id (not-in-corpus ones too)."""
    ranked = sorted(questions, key=lambda q: hashlib.sha256(f"{seed}:{q.id}".encode()).hexdigest())
    return ranked[: len(ranked) // 2], ranked[len(ranked) // 2 :]


def write_questions(path: Path, questions: list[Any]) -> Path:
    path.write_text("".join(q.model_dump_json() + "\n" for q in questions), encoding="utf-8")
    return path


def one_run(
    kn: Any, evals: dict[str, Path], method: str, args: argparse.Namespace, pairs: Path | None
) -> dict:
    """A `lore tune retriever --promote never` run over `kn`'s index, measured on `evals`."""
    from config.settings import EvalSet
    from feedback.db import Database
    from workers.ports import TuneRequest
    from workers.tuning import tune_retriever

    settings = kn.settings.model_copy(
        update={
            "evals": [EvalSet(name=n, path=p) for n, p in evals.items()],
            "database": kn.settings.database.model_copy(
                update={"url": f"sqlite:///{kn.settings.data_dir / 'feedback.sqlite3'}"}
            ),
        }
    )
    db = Database.from_settings(settings)
    db.ensure_schema()
    try:
        request = TuneRequest(method, args.synthetic, args.max_minutes, "never", pairs, "bench")
        body = tune_retriever(
            settings, kn, db.sessions, request, step=lambda s: print(f"    · {s}", flush=True)
        )
    finally:
        db.dispose()
    from knowledge.tuning import registry

    training = registry.load(settings, body["run_id"]).extra["training"]
    trained = sum(body["pairs"].values())
    body["training_seconds_per_1k_pairs"] = round(training["seconds"] / max(trained, 1) * 1000, 1)
    body["training"] = training
    return body


def bench_set(name: str, embedder: Any, args: argparse.Namespace, on_method: Any = None) -> dict[str, Any]:
    from bench.evalcache import EVAL_SETS, open_eval
    from knowledge.evaluate import load_questions

    questions = load_questions(EVAL_SETS[name].questions)
    first, second = halves(questions)
    out: dict[str, Any] = {"questions": len(questions), "methods": {}}
    with tempfile.TemporaryDirectory(prefix="lore-tune-bench-") as tmp:
        files = {
            "all": write_questions(Path(tmp) / "all.jsonl", questions),
            "a": write_questions(Path(tmp) / "a.jsonl", first),
            "b": write_questions(Path(tmp) / "b.jsonl", second),
        }
        for method in args.methods:
            runs: dict[str, Any] = {}
            print(f"{name} · {method} · synthetic only", flush=True)
            with open_eval(name, embedder) as kn:
                out["chunks"] = kn.store.count_chunks()
                runs["synthetic"] = one_run(kn, {name: files["all"]}, method, args, None)
            for train_half, test_half in (("a", "b"), ("b", "a")):
                print(
                    f"{name} · {method} · pairs from half {train_half}, measured on half {test_half}",
                    flush=True,
                )
                with open_eval(name, embedder) as kn:
                    runs[f"half-{train_half}"] = one_run(
                        kn, {f"{name}-half-{test_half}": files[test_half]}, method, args, files[train_half]
                    )
            out["methods"][method] = summarize(name, runs, len(first), len(second))
            if on_method:
                on_method(out)  # saved as each method finishes: a long run keeps what it measured
    return out


def summarize(name: str, runs: dict[str, Any], n_a: int, n_b: int) -> dict[str, Any]:
    """Before/after on the whole set (synthetic) and on the held-out halves (weighted mean)."""

    def fig(body: dict[str, Any], key: str, side: str) -> dict[str, float]:
        return body[side].get(key, {})

    synthetic = runs["synthetic"]
    halves_after: dict[str, float] = {}
    halves_before: dict[str, float] = {}
    for metric in ("recall@5", "mrr"):
        b = fig(runs["half-a"], f"{name}-half-b", "before").get(metric, 0) * n_b
        b += fig(runs["half-b"], f"{name}-half-a", "before").get(metric, 0) * n_a
        a = fig(runs["half-a"], f"{name}-half-b", "after").get(metric, 0) * n_b
        a += fig(runs["half-b"], f"{name}-half-a", "after").get(metric, 0) * n_a
        halves_before[metric], halves_after[metric] = round(b / (n_a + n_b), 4), round(a / (n_a + n_b), 4)
    return {
        "synthetic": {
            "before": fig(synthetic, name, "before"),
            "after": fig(synthetic, name, "after"),
            "gate": synthetic["gate"],
            "pairs": synthetic["pairs"],
        },
        "half": {
            "before": halves_before,
            "after": halves_after,
            "gates": [runs["half-a"]["gate"]["passed"], runs["half-b"]["gate"]["passed"]],
            "pairs": [runs["half-a"]["pairs"], runs["half-b"]["pairs"]],
        },
        "training_seconds_per_1k_pairs": [r["training_seconds_per_1k_pairs"] for r in runs.values()],
        "run_seconds": [r["seconds"] for r in runs.values()],
    }


def whole_loop(name: str, embedder: Any, method: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run with `--promote auto` (forced past the gate if it refuses, to time the re-index)."""
    from bench.evalcache import open_eval
    from feedback.db import Database
    from knowledge.tuning import promotion, registry
    from workers.ports import TuneRequest
    from workers.tuning import tune_retriever

    with open_eval(name, embedder) as kn:
        chunks = kn.store.count_chunks()
        settings = kn.settings
        db = Database(f"sqlite:///{settings.data_dir / 'feedback.sqlite3'}")
        db.ensure_schema()
        started = time.monotonic()
        steps: list[tuple[float, str]] = []  # when each step of the run began, for where the time goes

        def step(s: str) -> None:
            steps.append((round(time.monotonic() - started, 1), s))
            print(f"    · {s}", flush=True)

        request = TuneRequest(method, args.synthetic, args.max_minutes, "auto", None, "bench")
        body = tune_retriever(settings, kn, db.sessions, request, step=step)
        promoted_at = time.monotonic()
        if not body["promoted"]:  # time the promotion anyway: it is part of the loop when it wins
            promotion.promote(settings, body["run_id"], embedder=kn.embedder, force=True)
        reindex = time.monotonic() - promoted_at if not body["promoted"] else None
        total = time.monotonic() - started
        db.dispose()
        training = registry.load(settings, body["run_id"]).extra["training"]
    return {
        "set": name,
        "chunks": chunks,
        "method": method,
        "pairs": body["pairs"],
        "gate_passed": body["gate"]["passed"],
        "gate_reasons": body["gate"]["reasons"],
        "promoted_by_gate": body["promoted"],
        "loop_seconds": round(total, 1),
        "training_seconds": training["seconds"],
        "reindex_seconds": round(reindex, 1) if reindex is not None else None,
        "steps": steps,
    }


def markdown(results: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables: before -> after per set, method and training data; then timings."""
    lines = [
        "| set | method | trained on | measured on | recall@5 | MRR | gate |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, found in results["sets"].items():
        for method, m in found["methods"].items():
            for key, trained, measured in (
                ("synthetic", "synthetic only", f"all {found['questions']} questions"),
                ("half", "half the questions + synthetic", "the other half (both ways)"),
            ):
                row = m[key]
                b, a = row["before"], row["after"]
                gate = (
                    ("passed" if row["gate"]["passed"] else "refused")
                    if key == "synthetic"
                    else " / ".join("passed" if g else "refused" for g in row["gates"])
                )
                lines.append(
                    f"| {name} | {method} | {trained} | {measured} | "
                    f"{b.get('recall@5', 0):.3f} → {a.get('recall@5', 0):.3f} | "
                    f"{b.get('mrr', 0):.3f} → {a.get('mrr', 0):.3f} | {gate} |"
                )
    lines += [
        "",
        "| set | method | training s per 1,000 pairs | run s (synthetic, half a, half b) |",
        "|---|---|---|---|",
    ]
    for name, found in results["sets"].items():
        for method, m in found["methods"].items():
            per_k = ", ".join(f"{x:.0f}" for x in m["training_seconds_per_1k_pairs"])
            runs = ", ".join(f"{x:.0f}" for x in m["run_seconds"])
            lines.append(f"| {name} ({found.get('chunks', '?')} chunks) | {method} | {per_k} | {runs} |")
    for loop in results.get("loops", []):
        lines.append(
            f"\nWhole loop on {loop['set']} ({loop['chunks']} chunks, {loop['method']}): "
            f"{loop['loop_seconds'] / 60:.1f} min (training {loop['training_seconds'] / 60:.1f} min, "
            f"re-index {loop['reindex_seconds'] / 60 if loop['reindex_seconds'] else float('nan'):.1f} min)."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="*", default=["handbook", "pydocs"], help="none: only --loop")
    parser.add_argument("--methods", nargs="+", default=["adapter", "full"], choices=["adapter", "full"])
    parser.add_argument("--synthetic", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--loop", nargs="*", default=[], help="Sets to time the whole loop on (full method).")
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache/lore/bench/tuning.json")
    parser.add_argument("--markdown", action="store_true", help="Print the tables of --out and stop.")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return

    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(EmbeddingSettings(backend="onnx"))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "sets": {}, "loops": []}
    if args.out.exists():
        results = json.loads(args.out.read_text()) | {"args": results["args"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(name: str, found: dict[str, Any]) -> None:
        results["sets"][name] = found
        args.out.write_text(json.dumps(results, indent=2))

    for name in args.sets:
        save(name, bench_set(name, embedder, args, on_method=lambda found, name=name: save(name, found)))
        print(json.dumps({name: results["sets"][name]["methods"]}, indent=2), flush=True)
    for name in args.loop:
        results["loops"].append(whole_loop(name, embedder, "full", args))
        args.out.write_text(json.dumps(results, indent=2))
        print(json.dumps(results["loops"][-1], indent=2), flush=True)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
