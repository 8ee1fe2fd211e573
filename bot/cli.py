"""The `lore` command. Settings are built once, here, and passed down."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bot.commands import register_all
from config import ConfigError, Settings, load_settings
from config.loader import masked
from config.logs import configure_logging

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Lore answers questions from your company's documents, with citations.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective settings.")
app.add_typer(config_app, name="config")

out = Console(soft_wrap=True)  # never break long paths and URLs mid-line
err = Console(stderr=True, soft_wrap=True)
_log = logging.getLogger("lore")
_json_logs = False  # log_format = "json": messages for the operator become JSON log records too


@app.callback()
def _startup(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="Settings file (default: lore.toml or $LORE_CONFIG).")
    ] = None,
) -> None:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        if ctx.invoked_subcommand == "doctor":  # the doctor reports it in its table
            ctx.obj = exc
            return
        error(exc, label="Configuration error")
        raise typer.Exit(2) from None
    configure_logging(settings)
    global _json_logs
    _json_logs = settings.log_format == "json"
    ctx.obj = settings


def error(message: object, *, label: str = "Error") -> None:
    if _json_logs:
        _log.error("%s: %s", label, message)
        return
    err.print(f"[red]{label}:[/red] {escape(str(message))}", highlight=False)


def say(markup: str) -> None:
    """A message for the operator on stderr (rich markup), or a log record with JSON logs."""
    if _json_logs:
        _log.info("%s", Text.from_markup(markup).plain)
    else:
        err.print(markup, highlight=False)


def json_logs() -> bool:
    return _json_logs


def settings_of(ctx: typer.Context) -> Settings:
    assert isinstance(ctx.obj, Settings)
    return ctx.obj


@contextmanager
def knowledge_for(settings: Settings) -> Iterator[Any]:
    from knowledge.service import Knowledge
    from knowledge.store import IndexError_

    kn = Knowledge(settings)
    try:
        yield kn
    except IndexError_ as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        kn.close()


# -- config --------------------------------------------------------------------


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings, secrets masked."""
    out.print_json(json.dumps(masked(settings_of(ctx)), default=str))


# -- index ---------------------------------------------------------------------


@app.command()
def index(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild from scratch.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Bring the index in line with the configured sources (incremental)."""
    settings = settings_of(ctx)
    if not settings.sources:
        err.print("No sources configured. Add a [[sources]] table to lore.toml (see README).")
        raise typer.Exit(1)
    try:
        names = [settings.source(source).name] if source else [s.name for s in settings.sources]
    except KeyError as exc:
        error(exc.args[0])
        raise typer.Exit(1) from None
    results: dict[str, Any] = {}
    with knowledge_for(settings) as kn:
        if full and not source:
            kn.rebuild()
        for name, result in sync_with_progress(
            kn, names, full=full, disable=as_json and not sys.stderr.isatty()
        ):
            results[name] = result
    failed = [n for n, r in results.items() if r.error]
    if as_json:
        out.print_json(json.dumps({"sources": {n: r.summary() for n, r in results.items()}}))
    else:
        _print_index_summary(results)
    raise typer.Exit(1 if failed else 0)


def sync_with_progress(
    kn: Any, names: list[str], *, full: bool = False, disable: bool = False
) -> Iterator[tuple[str, Any]]:
    """Sync each source under one progress bar per source (documents, chunks, ETA), yielding
    each result as it finishes."""
    with _progress(disable=disable) as bar:
        for name in names:
            task = bar.add_task(name, total=None, chunks=0)

            def show(p: Any, task: Any = task) -> None:
                bar.update(
                    task,
                    total=p.total,
                    completed=p.seen,
                    chunks=p.chunks_embedded,
                    description=f"{p.source} · {p.phase}",
                )

            yield name, kn.sync(name, full=full, on_progress=show)


def _progress(*, disable: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("docs · {task.fields[chunks]} chunks"),
        TimeRemainingColumn(),
        console=err,
        disable=disable,
        transient=False,
    )


def _print_index_summary(results: dict[str, Any]) -> None:
    table = Table(
        "source", "added", "changed", "deleted", "unchanged", "chunks embedded", "skipped", "seconds"
    )
    for name, r in results.items():
        s = r.summary()
        table.add_row(
            name,
            *(str(s[k]) for k in ("added", "changed", "deleted", "unchanged", "chunks_embedded")),
            str(len(s["skipped"])),
            f"{s['seconds']:.1f}",
        )
    out.print(table)
    for name, r in results.items():
        if r.error:
            out.print(
                f"[red]{name} failed[/red] (index unchanged for it): {escape(r.error)}", highlight=False
            )
        for skip in r.skipped:
            out.print(f"  skipped {name}:{skip['path']}: {skip['reason']}", highlight=False, markup=False)


# -- ask -----------------------------------------------------------------------


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="What you want to know.")],
    source: Annotated[str | None, typer.Option(help="Search only this source.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Answer as JSON.")] = False,
) -> None:
    """Answer a question from the indexed documents, with numbered sources."""
    settings = settings_of(ctx)
    with knowledge_for(settings) as kn:
        if kn.is_empty():
            err.print("Nothing is indexed yet. Run `lore index` first (sources come from lore.toml).")
            raise typer.Exit(1)
        answer = kn.answer(question, source=source)
    if as_json:
        out.print_json(answer.model_dump_json())
        return
    out.print(answer.text, highlight=False, markup=False)
    if answer.notice:
        err.print(f"[yellow]note:[/yellow] {escape(answer.notice)}", highlight=False)
    if answer.citations:
        out.print("\nSources:", style="bold")
        for c in answer.citations:
            updated = f" (updated {c.updated_at[:10]})" if c.updated_at else ""
            out.print(f"  [{c.n}] {c.title}{updated}\n      {c.url}", highlight=False, markup=False)
    t = answer.timings
    err.print(
        f"[dim]{answer.model} · retrieve {t.retrieve_ms:.0f} ms · generate {t.generate_ms:.0f} ms[/dim]"
    )


# -- sources -------------------------------------------------------------------


@app.command()
def sources(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each source with its document and chunk counts and its last sync."""
    with knowledge_for(settings_of(ctx)) as kn:
        rows = kn.sources_status()
    if as_json:
        out.print_json(json.dumps({"sources": rows}))
        return
    table = Table("source", "type", "documents", "chunks", "last sync", "last error")
    for r in rows:
        table.add_row(
            r["name"],
            r["type"],
            str(r["documents"]),
            str(r["chunks"]),
            r["last_sync"] or "never",
            r["last_error"] or "",
        )
    out.print(table)


# -- eval ----------------------------------------------------------------------


@app.command("eval")
def eval_(
    ctx: typer.Context,
    questions: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="questions.jsonl")],
    k: Annotated[int, typer.Option("--k", min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Measure recall@k, MRR, abstention and fact hits on a question set."""
    from knowledge.evaluate import EvalFileError, load_questions, run_eval

    try:
        qs = load_questions(questions)
    except EvalFileError as exc:
        error(exc)
        raise typer.Exit(1) from None
    with knowledge_for(settings_of(ctx)) as kn:
        if kn.is_empty():
            err.print("Nothing is indexed yet. Run `lore index` first.")
            raise typer.Exit(1)
        with _progress(disable=as_json and not sys.stderr.isatty()) as bar:
            task = bar.add_task("eval", total=len(qs), chunks=0)
            report = run_eval(qs, lambda q, k: kn.answer(q, top_k=k), k=k, on_step=lambda: bar.advance(task))
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table("kind", "n", f"recall@{k}", "MRR", "abstain (not in corpus)", "false abstain", "fact hits")
    for kind, s in [("all", report["overall"]), *report["by_kind"].items()]:
        table.add_row(
            kind,
            str(s["questions"]),
            *(
                _fmt(s[x])
                for x in ("recall_at_k", "mrr", "abstain_not_in_corpus", "false_abstain", "fact_hit_rate")
            ),
        )
    out.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# Feature modules add their commands (`lore worker`, `lore slack`, …). They import heavy
# dependencies inside the command functions, so `lore --help` stays fast.
register_all(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
