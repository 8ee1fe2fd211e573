"""`lore tune`: retrain the retriever from reviewers' judgments and the corpus, or fine-tune the
answer model on curated answers; promote only a winner, roll back, cancel (workers/tuning.py and
workers/generator_tuning.py run them; knowledge/tuning/ holds the parts)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.commands._common import err, error, out, say, settings_of
from config import Settings

tune_app = typer.Typer(
    no_args_is_help=True, help="Retrain the retriever or the answer model, see the runs, roll back."
)


class MethodOption(StrEnum):
    full = "full"
    adapter = "adapter"


class PromoteOption(StrEnum):
    auto = "auto"
    never = "never"


class ProviderOption(StrEnum):
    openai = "openai"
    local = "local"


class FormatOption(StrEnum):
    sft = "sft"
    dpo = "dpo"


def register(app: typer.Typer) -> None:
    app.add_typer(tune_app, name="tune")


@tune_app.command("retriever")
def retriever(
    ctx: typer.Context,
    method: Annotated[
        MethodOption | None, typer.Option(help="full (fine-tune, re-index) or adapter (queries only).")
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option(min=0, help="Synthetic questions (default: tuning.synthetic)."),
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Question/source pairs in `lore eval` format."),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(min=0.05, help="Training budget (default: tuning.max_minutes)."),
    ] = None,
    promote: Annotated[PromoteOption, typer.Option(help="auto: serve it if it passes the gate.")] = (
        PromoteOption.auto
    ),
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Run on the train queue; return once the rebuild starts."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's result as JSON.")] = False,
) -> None:
    """Train a candidate retriever, measure it against the serving one on questions it never
    trained on, and (with --promote auto) serve it if it wins."""
    from workers.ports import TuneRequest

    settings = settings_of(ctx)
    request = TuneRequest(
        method=(method.value if method else settings.tuning.method),  # type: ignore[arg-type]
        synthetic=settings.tuning.synthetic if synthetic is None else synthetic,
        max_minutes=max_minutes or settings.tuning.max_minutes,
        promote=promote.value,  # type: ignore[arg-type]
        pairs_file=pairs.resolve() if pairs else None,
        requested_by="cli",
    )
    if no_wait or settings.index.owner == "worker":
        body = _on_workers(settings, request, wait=not no_wait)
    else:
        body = _here(settings, request, quiet=as_json and not sys.stderr.isatty())
    if as_json:
        out.print_json(json.dumps(body))
        return
    if "run_id" in body:
        _print_run(body)
    else:
        say(f"queued on the train queue: task {body['task_id']} ({escape(body.get('step') or 'waiting')})")


def _here(settings: Settings, request: Any, *, quiet: bool) -> dict[str, Any]:
    from workers.client import tune_here

    return _run_here(settings, request, tune_here, quiet=quiet)


def _generator_here(settings: Settings, request: Any, *, quiet: bool) -> dict[str, Any]:
    from knowledge.tuning.hosted import HostedTuningError
    from workers.client import tune_generator_here

    return _run_here(settings, request, tune_generator_here, quiet=quiet, errors=(HostedTuningError,))


def _run_here(
    settings: Settings,
    request: Any,
    run: Callable[..., dict[str, Any]],
    *,
    quiet: bool,
    errors: tuple[type[Exception], ...] = (),
) -> dict[str, Any]:
    """One tuning run in this process, with a progress bar on stderr; errors as one line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bot.commands._common import knowledge_for
    from feedback.db import Database
    from knowledge.tuning.lock import LockBusy

    db = Database.from_settings(settings)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
    )
    try:
        db.ensure_schema()
        with knowledge_for(settings) as kn, bar:
            task = bar.add_task("starting", total=None)

            def step(text: str) -> None:
                bar.update(task, description=text[:60])
                if not quiet:
                    bar.console.print(f"· {escape(text)}", highlight=False)

            def trained(done: int, planned: int) -> None:
                bar.update(task, completed=done, total=planned)

            expected: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, LockBusy, *errors)
            try:
                return run(settings, kn, db.sessions, request, step=step, on_train_step=trained)
            except expected as exc:
                error(exc)
                raise typer.Exit(1) from None
            except RuntimeError as exc:  # a cancelled run
                error(exc, label="Cancelled" if "cancel" in str(exc) else "Error")
                raise typer.Exit(1) from None
    finally:
        db.dispose()


def _on_workers(settings: Settings, request: Any, *, wait: bool) -> dict[str, Any]:
    from workers.client import request_tuning

    try:
        return request_tuning(settings, request, wait=wait, on_step=lambda s: err.print(f"· {escape(s)}"))
    except (ValueError, RuntimeError) as exc:
        error(exc)
        raise typer.Exit(1) from None


def _print_run(body: dict[str, Any]) -> None:
    table = Table("set", "recall@5 before", "after", "MRR before", "after")
    for name, before in body["before"].items():
        after = body["after"].get(name, {})
        table.add_row(
            name,
            f"{before.get('recall@5', 0):.3f}",
            f"{after.get('recall@5', 0):.3f}",
            f"{before.get('mrr', 0):.3f}",
            f"{after.get('mrr', 0):.3f}",
        )
    out.print(table)
    counts = ", ".join(f"{k} {v}" for k, v in body["pairs"].items())
    out.print(f"run {body['run_id']} ({body['method']}): pairs {counts}", highlight=False)
    for reason in body["gate"]["reasons"]:
        out.print(f"  {escape(reason)}", highlight=False)
    verdict = (
        "promoted: it serves now"
        if body["promoted"]
        else ("passed the gate (not promoted: --promote never)" if body["gate"]["passed"] else "refused")
    )
    out.print(f"{verdict}  ({body['seconds']} s)", highlight=False)


@tune_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """The tuning runs, newest first, and which model serves."""
    from knowledge.tuning import registry

    settings = settings_of(ctx)
    serving = registry.serving_id(settings)
    runs = registry.runs(settings)
    answer_runs = _generator_runs(settings)
    if as_json:
        body = {
            "serving": serving,
            "runs": [json.loads(r.model_dump_json()) for r in runs],
            "generator": {"serving": _active(settings), "runs": [r.as_dict() for r in answer_runs]},
        }
        out.print_json(json.dumps(body, default=str))
        return
    out.print(f"serving: {serving}", highlight=False)
    table = Table("run", "method", "status", "held-out recall@5", "gate")
    for r in runs:
        primary = "held-out" if r.after.get("held-out") else "synthetic"
        figure = (
            f"{r.before[primary]['recall@5']:.3f} -> {r.after[primary]['recall@5']:.3f} ({primary})"
            if r.before.get(primary) and r.after.get(primary)
            else "-"
        )
        table.add_row(r.id, r.method, r.status, figure, "passed" if r.gate.passed else "refused")
    out.print(table)
    active = _active(settings)
    out.print(f"answer model: {active['model']} ({active['source']}, {active['provider']})", highlight=False)
    if answer_runs:
        table = Table("answer-model run", "provider", "format", "status", "model", "gate")
        for g in answer_runs:
            gate = "-" if not g.gate else ("passed" if g.gate.get("passed") else "refused")
            table.add_row(g.id, g.provider, g.method, g.status, g.model or "-", gate)
        out.print(table)


@tune_app.command("rollback")
def rollback(
    ctx: typer.Context,
    generator: Annotated[bool, typer.Option("--generator", help="Roll back the answer model.")] = False,
) -> None:
    """Serve the model the serving one replaced again (re-indexing only if its collection is gone);
    with --generator, the answer model the serving one replaced (or the configured one)."""
    from knowledge.tuning.promotion import PromotionError
    from knowledge.tuning.promotion import rollback as roll_back

    settings = settings_of(ctx)
    if generator:
        _rollback_generator(settings)
        return
    try:
        record = roll_back(settings)
    except PromotionError as exc:
        error(exc)
        raise typer.Exit(1) from None
    say(f"model {record.id} serves again")


@tune_app.command("promote")
def promote_(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The run id (see `lore tune status`).")],
    force: Annotated[bool, typer.Option("--force", help="Serve it even though the gate refused it.")] = False,
) -> None:
    """Serve a candidate that passed the gate (promotion builds its collection first if needed)."""
    from knowledge.tuning.promotion import PromotionError, promote
    from knowledge.tuning.registry import UnknownModel

    settings = settings_of(ctx)
    if model.startswith("gen-"):
        _promote_generator(settings, model, force=force)
        return
    try:
        record = promote(settings, model, force=force)
    except (PromotionError, UnknownModel) as exc:
        error(exc)
        raise typer.Exit(1) from None
    say(f"model {record.id} serves now")


# -- the answer model ----------------------------------------------------------------------------


@tune_app.command("generator")
def generator_(
    ctx: typer.Context,
    provider: Annotated[ProviderOption, typer.Option(help="openai (hosted fine-tuning) or local (LoRA).")],
    fmt: Annotated[FormatOption, typer.Option("--format", help="sft (curated answers) or dpo (edits).")] = (
        FormatOption.sft
    ),
    max_minutes: Annotated[
        float | None,
        typer.Option(min=0.05, help="Local training budget (default: tuning.max_minutes)."),
    ] = None,
    promote: Annotated[PromoteOption, typer.Option(help="auto: serve it if it passes the gate.")] = (
        PromoteOption.auto
    ),
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Run on the train queue; return once it has started.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's result as JSON.")] = False,
) -> None:
    """Fine-tune the answer model on the curated answers, measure it against the serving one on
    questions it never trained on, and (with --promote auto) serve it if it wins. A hosted job a
    stopped `lore` was watching is resumed, not started again."""
    from workers.ports import GeneratorRequest

    settings = settings_of(ctx)
    request = GeneratorRequest(
        provider=provider.value,  # type: ignore[arg-type]
        format=fmt.value,  # type: ignore[arg-type]
        max_minutes=max_minutes or settings.tuning.max_minutes,
        promote=promote.value,  # type: ignore[arg-type]
        requested_by="cli",
    )
    if no_wait or settings.index.owner == "worker":
        body = _on_workers(settings, request, wait=not no_wait)
    else:
        body = _generator_here(settings, request, quiet=as_json and not sys.stderr.isatty())
    if as_json:
        out.print_json(json.dumps(body))
        return
    if "run_id" not in body:
        say(f"queued on the train queue: task {body['task_id']} ({escape(body.get('step') or 'waiting')})")
        return
    table = Table(
        "set", "validity", "support", "unsupported claims", "false abstain", "fact hits", "ideal F1"
    )
    for name, before in body["before"].items():
        after = body["after"].get(name, {})

        def pair(key: str, b: dict[str, Any] = before, a: dict[str, Any] = after) -> str:
            return f"{_num(b.get(key))} -> {_num(a.get(key))}"

        f1 = f"{_num(before['ideal']['token_f1'])} -> {_num(after.get('ideal', {}).get('token_f1'))}"
        table.add_row(
            name,
            pair("citation_validity"),
            pair("citation_support"),
            pair("unsupported_claims"),
            pair("false_abstain"),
            pair("fact_hit_rate"),
            f1,
        )
    out.print(table)
    ex = body["examples"]
    out.print(f"run {body['run_id']} ({body['provider']}, {body['format']}): {ex['train']} examples, "
              f"{ex['held_out']} held out; candidate {body['model']}", highlight=False)  # fmt: skip
    for reason in body["gate"]["reasons"]:
        out.print(f"  {escape(reason)}", highlight=False)
    verdict = (
        "promoted: it answers now"
        if body["promoted"]
        else ("passed the gate (not promoted: --promote never)" if body["gate"]["passed"] else "refused")
    )
    out.print(f"{verdict}  ({body['seconds']} s)", highlight=False)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _generator_runs(settings: Settings) -> list[Any]:
    from feedback.db import Database
    from feedback.generators import runs

    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        return runs(db.sessions)
    finally:
        db.dispose()


def _active(settings: Settings) -> dict[str, Any]:
    from feedback.generators import active

    return active(settings)


def _rollback_generator(settings: Settings) -> None:
    from feedback.db import Database
    from feedback.generators import PromotionRefused
    from feedback.generators import rollback as roll_back

    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        run = roll_back(db.sessions)
    except PromotionRefused as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    if run is None:
        say("the configured answer model serves again")
    else:
        say(f"answer model {escape(run.model or '')} (run {run.id}) serves again")


def _promote_generator(settings: Settings, run_id: str, *, force: bool) -> None:
    from feedback.db import Database
    from feedback.generators import PromotionRefused
    from feedback.generators import promote as promote_run

    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        run = promote_run(db.sessions, run_id, force=force)
    except PromotionRefused as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    say(f"answer model {escape(run.model or '')} (run {run.id}) serves now")


@tune_app.command("cancel")
def cancel(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="The run (default: the one training).")] = None,
) -> None:
    """Cancel the answer-model run in progress: its hosted fine-tuning job is cancelled at the
    provider, a local run stops at its next training step."""
    from feedback.db import Database
    from feedback.generators import request_cancel
    from knowledge.tuning import hosted

    settings = settings_of(ctx)
    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        run = request_cancel(db.sessions, run_id)
    finally:
        db.dispose()
    if run is None:
        error("no answer-model run is training")
        raise typer.Exit(1)
    if run.provider == "openai" and run.job_id:
        status = hosted.cancel(hosted.client_for(settings.llm), run.job_id)
        if status == "cancelled":  # whether or not a process still watches it
            from feedback.generators import save

            db = Database.from_settings(settings)
            try:
                save(db.sessions, run.id, status="cancelled", error="cancelled with `lore tune cancel`")
            finally:
                db.dispose()
        say(f"fine-tuning job {run.job_id} of run {run.id}: {status}")
    else:
        say(f"run {run.id} will stop at its next step")
