"""`lore tune`: retrain the retriever from reviewers' judgments and the corpus, promote only a
winner, roll back (workers/tuning.py runs it; knowledge/tuning/ holds the parts)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.commands._common import err, error, out, say, settings_of
from config import Settings

tune_app = typer.Typer(no_args_is_help=True, help="Retrain the retriever, see the runs, roll back.")


class MethodOption(StrEnum):
    full = "full"
    adapter = "adapter"


class PromoteOption(StrEnum):
    auto = "auto"
    never = "never"


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bot.commands._common import knowledge_for
    from feedback.db import Database
    from knowledge.tuning.lock import LockBusy
    from workers.client import tune_here

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
                bar.update(task, description=text)
                if quiet:
                    return
                bar.console.print(f"· {escape(text)}", highlight=False)

            def trained(done: int, planned: int) -> None:
                bar.update(task, completed=done, total=planned)

            try:
                return tune_here(settings, kn, db.sessions, request, step=step, on_train_step=trained)
            except (ValueError, FileNotFoundError, LockBusy) as exc:
                error(exc)
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
    if as_json:
        body = {"serving": serving, "runs": [json.loads(r.model_dump_json()) for r in runs]}
        out.print_json(json.dumps(body))
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


@tune_app.command("rollback")
def rollback(ctx: typer.Context) -> None:
    """Serve the model the serving one replaced again (re-indexing only if its collection is gone)."""
    from knowledge.tuning.promotion import PromotionError
    from knowledge.tuning.promotion import rollback as roll_back

    settings = settings_of(ctx)
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
    try:
        record = promote(settings, model, force=force)
    except (PromotionError, UnknownModel) as exc:
        error(exc)
        raise typer.Exit(1) from None
    say(f"model {record.id} serves now")
