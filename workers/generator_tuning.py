"""One answer-model fine-tuning run (`lore tune generator`, the `lore.tune_generator` task): export
the curated answers, train a candidate, measure it against the serving model on what it never
trained on, and promote it only if it wins.

The steps: `feedback.datasets.export` (redacted, split by question group: the validation split is
the held-out set, `tuning.held_out` of the groups) -> `knowledge.tuning.hosted` (OpenAI's API) or
`knowledge.tuning.lora` (LoRA on CPU, merged into a GGUF) -> `knowledge.tuning.answer_gate` on the
held-out items and every `[[evals]]` set -> `feedback.generators` (the `models` table: the record,
and the promotion every process follows). The run holds the tuning lock the retriever's runs take,
so one training run happens at a time.

A hosted job outlives the process watching it: its id is in the run's row and in a state file
beside its data (`data_dir/models/generators/<run>/job.json`), and the next `lore tune generator
--provider openai` resumes watching that job instead of starting another. `lore tune cancel` sets
the row's `cancel_requested` (and cancels a hosted job itself); a local run stops at its next step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from feedback import generators
from feedback.datasets.export import list_exports
from knowledge.generate import Generator, LocalGenerator, OpenAIGenerator, local_gguf_path
from knowledge.tuning import answer_gate
from knowledge.tuning.answer_gate import HELD_OUT, HeldOutExample, SetResult
from workers.ports import GeneratorRequest

if TYPE_CHECKING:
    from feedback.store import SessionFactory
    from knowledge.service import Knowledge

log = logging.getLogger(__name__)

Step = Callable[[str], None]
TrainStep = Callable[[int, int], None]


class RunCancelled(RuntimeError):
    """`lore tune cancel` stopped the run (or its hosted job was cancelled)."""


def run_dir(settings: Settings, run_id: str) -> Path:
    return settings.data_dir / "models" / "generators" / run_id


def job_state(settings: Settings, run_id: str) -> Path:
    """The hosted job's state file (`knowledge.tuning.hosted`): what a restarted run resumes."""
    return run_dir(settings, run_id) / "job.json"


def tune_generator(
    settings: Settings,
    knowledge: Knowledge,
    sessions: SessionFactory,
    request: GeneratorRequest,
    *,
    step: Step | None = None,
    on_train_step: TrainStep | None = None,
) -> dict[str, Any]:
    """Run it (or resume the hosted run a dead process left); returns the `lore tune generator
    --json` body. Raises `RunCancelled` when cancelled, and the error when the run failed (the
    row records both)."""
    from knowledge.tuning.lock import run_lock

    say = step or (lambda text: log.info("tune generator: %s", text))
    started = time.monotonic()
    with run_lock(settings):

        def resumable(run: generators.GeneratorRun) -> bool:
            return run.provider == "openai" and job_state(settings, run.id).exists()

        generators.close_interrupted(sessions, resumable)
        waiting = generators.unfinished(sessions, request.provider) if request.provider == "openai" else []
        if waiting:
            run = waiting[0]
            say(f"resuming run {run.id} (fine-tuning job {run.job_id or 'being created'})")
        else:
            run = generators.start_run(
                sessions,
                provider=request.provider,
                method=request.format,
                base=_base(settings, request.provider),
                requested_by=request.requested_by,
            )
        try:
            body = _run(settings, knowledge, sessions, request, run, say, on_train_step)
        except RunCancelled as exc:
            generators.save(sessions, run.id, status="cancelled", error=str(exc))
            raise
        except (KeyboardInterrupt, SystemExit):
            if run.provider != "openai":
                generators.save(sessions, run.id, status="failed", error="interrupted")
            raise  # a hosted job goes on: the row stays `training`, and the next run resumes it
        except BaseException as exc:
            generators.save(sessions, run.id, status="failed", error=f"{exc!r}"[:2000])
            raise
    body["seconds"] = round(time.monotonic() - started, 1)
    return body


def _base(settings: Settings, provider: str) -> str:
    if provider == "openai":
        return settings.llm.model
    return settings.llm.local_model_path or str(local_gguf_path())


def _run(
    settings: Settings,
    knowledge: Knowledge,
    sessions: SessionFactory,
    request: GeneratorRequest,
    run: generators.GeneratorRun,
    say: Step,
    on_train_step: TrainStep | None,
) -> dict[str, Any]:
    fmt = run.method
    directory = run_dir(settings, run.id)
    say("exporting the curated answers (redacted)")
    data = _export(settings, sessions, fmt, directory / "data")
    held = _held_out(data, fmt)
    train_file, dropped = _leak_free(settings, data / _train_file(fmt, run.provider))
    if dropped:
        say(f"left out {dropped} curated answers to [[evals]] questions: those are measured, not trained on")
    train_count = _count(train_file)
    examples = {"train": train_count, "held_out": len(held)}
    generators.save(sessions, run.id, examples=examples)
    if not train_count:
        raise ValueError(f"nothing to train on: no curated answers in the {fmt} export")

    if run.provider == "openai":
        candidate = _train_hosted(settings, sessions, run, train_file, say, on_train_step)
    else:
        candidate = _train_local(settings, sessions, run, train_file, request, say, on_train_step)
    generators.save(sessions, run.id, model=candidate)  # still `training`: a resumed hosted run re-measures

    say("measuring the candidate against the serving model")
    served = generators.served_model(sessions)
    current = served.model if served is not None and served.provider == run.provider else run.base
    before = _measure(settings, knowledge, _generator(settings, run.provider, current), held)
    after = _measure(settings, knowledge, _generator(settings, run.provider, candidate), held)
    verdict = answer_gate.decide(before, after, settings.tuning)
    figures = {"before": _figures(before), "after": _figures(after)}
    status = "candidate" if verdict.passed else "refused"
    generators.save(sessions, run.id, figures=figures, gate=verdict.as_dict(), status=status)

    promoted = False
    if not verdict.passed:
        say("refused by the gate: the serving model stays")
    elif request.promote == "auto":
        generators.promote(sessions, run.id)
        promoted = True
        say(f"promoted: {candidate} answers now")
    return {
        "run_id": run.id,
        "provider": run.provider,
        "format": fmt,
        "examples": examples,
        "before": figures["before"],
        "after": figures["after"],
        "gate": verdict.as_dict(),
        "promoted": promoted,
        "model": candidate,
    }


# -- data ---------------------------------------------------------------------------------------


def _export(settings: Settings, sessions: SessionFactory, fmt: str, out: Path) -> Path:
    """The run's export (made once: a resumed run reuses it, so it trains on the same file)."""
    from feedback.datasets.export import ExportError, export_dataset

    found = list_exports(out)
    if found:
        return Path(found[0]["path"])
    held_out = settings.datasets.model_copy(update={"validation_fraction": settings.tuning.held_out})
    try:
        result = export_dataset(
            sessions, fmt, settings.model_copy(update={"datasets": held_out}), out_dir=out
        )
    except ExportError as exc:
        raise ValueError(f"the curated answers could not be exported: {exc}") from exc
    return result.directory


def _train_file(fmt: str, provider: str) -> str:
    if fmt == "sft":
        return "train.jsonl"
    return "train.openai.jsonl" if provider == "openai" else "train.trl.jsonl"


def _question(record: dict[str, Any]) -> str:
    """The question a training line asks (the end of its user message, `knowledge.prompt`)."""
    messages = record.get("messages") or record.get("prompt") or record.get("input", {}).get("messages", [])
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return str(user).rpartition("\nQuestion: ")[2]


def _leak_free(settings: Settings, path: Path) -> tuple[Path, int]:
    """`path`, or a copy without the lines that ask an `[[evals]]` question (which the gate
    measures, so they are never trained on); and how many lines were left out."""
    from feedback.datasets.clean import normalize
    from knowledge.tuning.gate import load_evals

    forbidden = {normalize(q.question) for qs in load_evals(settings.evals).values() for q in qs}
    if not forbidden or not path.exists():
        return path, 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if normalize(_question(json.loads(line))) not in forbidden]
    if len(kept) == len(lines):
        return path, 0
    out = path.with_name(path.name.replace("train.", "train.leak-free.", 1))
    out.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return out, len(lines) - len(kept)


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _held_out(data: Path, fmt: str) -> list[HeldOutExample]:
    """The validation split as prompts and the reviewers' answers."""
    path = data / ("validation.jsonl" if fmt == "sft" else "validation.trl.jsonl")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if not line.strip():
            continue
        record = json.loads(line)
        if fmt == "sft":
            prompt, ideal = record["messages"][:-1], record["messages"][-1]["content"]
        else:
            prompt, ideal = record["prompt"], record["chosen"][-1]["content"]
        out.append(HeldOutExample(prompt=prompt, ideal=ideal))
    return out


# -- training -----------------------------------------------------------------------------------


def _train_hosted(
    settings: Settings,
    sessions: SessionFactory,
    run: generators.GeneratorRun,
    train_file: Path,
    say: Step,
    on_train_step: TrainStep | None,
) -> str:
    from knowledge.tuning import hosted

    client = hosted.client_for(settings.llm)
    state_path = job_state(settings, run.id)
    say(f"uploading {train_file.name} and starting the fine-tuning job on {run.base}")
    state = hosted.start(
        client,
        train_file,
        fmt=run.method,  # type: ignore[arg-type]
        base_model=run.base,
        state_path=state_path,
        seed=settings.tuning.seed,
        suffix="lore",
    )
    generators.save(sessions, run.id, job_id=state.job_id)

    def report(p: hosted.Progress) -> None:
        data = p.data or {}
        if on_train_step and isinstance(data.get("step"), int) and isinstance(data.get("total_steps"), int):
            on_train_step(data["step"], data["total_steps"])
        say(f"job {p.job_id} [{p.status}] {p.message}")
        if generators.cancel_requested(sessions, run.id) and p.status not in hosted.TERMINAL:
            hosted.cancel(client, p.job_id)  # the watch then sees the job cancelled

    try:
        return hosted.watch(client, state_path, progress=report, poll_interval=settings.tuning.poll_seconds)
    except hosted.JobFailed as exc:
        if exc.status == "cancelled":
            raise RunCancelled(f"fine-tuning job {exc.job_id} was cancelled") from exc
        raise


def _train_local(
    settings: Settings,
    sessions: SessionFactory,
    run: generators.GeneratorRun,
    train_file: Path,
    request: GeneratorRequest,
    say: Step,
    on_train_step: TrainStep | None,
) -> str:
    from knowledge.tuning import lora

    rows = lora.read_jsonl(train_file)
    options = lora.LoraOptions(
        max_minutes=request.max_minutes, max_steps=settings.tuning.generator_steps, seed=settings.tuning.seed
    )

    def progress(p: lora.Progress) -> None:
        if on_train_step:
            on_train_step(p.step, p.max_steps)
        if generators.cancel_requested(sessions, run.id):
            raise RunCancelled(f"run {run.id} was cancelled at step {p.step}")

    say(f"training a LoRA ({run.method}) on {len(rows)} examples, at most {request.max_minutes:g} min")
    out = run_dir(settings, run.id) / "lora"
    train = lora.train_sft if run.method == "sft" else lora.train_dpo
    result = train(rows, out, options, progress=progress, gguf=Path(run.base))
    if result.gguf_model is None:
        raise RuntimeError("the LoRA run wrote no merged model")
    say(f"trained {result.steps} steps in {result.seconds:.0f} s; merged into {result.gguf_model.name}")
    return str(result.gguf_model)


# -- measuring ----------------------------------------------------------------------------------


def _generator(settings: Settings, provider: str, model: str) -> Generator:
    """`model` answering deterministically (temperature 0)."""
    llm = settings.llm.model_copy(update={"provider": provider, "temperature": 0.0})
    if provider == "openai":
        return OpenAIGenerator(llm.model_copy(update={"model": model}))
    return LocalGenerator(llm.model_copy(update={"local_model_path": model}))


def _measure(
    settings: Settings, knowledge: Knowledge, generator: Generator, held: list[HeldOutExample]
) -> dict[str, SetResult]:
    from knowledge.engine import CitingQueryEngine
    from knowledge.tuning.gate import load_evals

    chat = getattr(generator, "chat")  # noqa: B009 - both LLM generators have it; extractive never gets here
    checker = knowledge.engine.checker()
    out: dict[str, SetResult] = {}
    if held:
        out[HELD_OUT] = answer_gate.measure_held_out(chat, held, checker)
    evals = load_evals(settings.evals)
    if evals:
        base = knowledge.model_settings
        strict = base.model_copy(
            update={"llm": base.llm.model_copy(update={"fallback_to_extractive": False})}
        )
        engine = CitingQueryEngine.build(strict, knowledge.store, knowledge.embedder, generator)
        for name, questions in evals.items():
            out[name] = answer_gate.measure_eval(lambda q, k: engine.answer(q, top_k=k), questions, checker)
    if not out:
        raise ValueError("nothing to measure on: no held-out curated answers and no [[evals]] sets")
    return out


def _figures(results: dict[str, SetResult]) -> dict[str, Any]:
    return {name: r.figures for name, r in results.items()}
