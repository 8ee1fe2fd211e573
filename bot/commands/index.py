"""`lore index`, `lore sources` and `lore eval`: the index and how well it answers (`lore ask` is in
bot/commands/ask.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.commands._common import err, error, knowledge_for, out, progress_bar, settings_of, sync_with_progress
from config import Settings


def register(app: typer.Typer) -> None:
    app.command()(index)
    app.command()(sources)
    app.command("eval")(eval_)


# -- index ---------------------------------------------------------------------


def index(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild from scratch.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Bring the index in line with the configured sources (incremental)."""
    settings = settings_of(ctx)
    if not settings.sources:
        err.print("No sources configured. Add a [[sources]] table to lore.toml (see docs/configuration.md).")
        raise typer.Exit(1)
    if settings.index.owner == "worker":  # building one here would make a second, unused index
        error(
            'the index belongs to the workers (index.owner = "worker"): '
            f"`lore sync run {source or '--all'}{' --full' if full else ''} --wait` "
            "queues the syncs for them"
        )
        raise typer.Exit(2)
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


# -- sources -------------------------------------------------------------------


def sources(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_principal: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="PRINCIPAL",
            help="List the documents this principal can see, per source: slack:U…, web:alice, "
            "group:hr, channel:slack:C…",
        ),
    ] = None,
) -> None:
    """Each source with its access, document and chunk counts and its last sync."""
    settings = settings_of(ctx)
    if as_principal is not None:
        _visible_sources(settings, as_principal, as_json)
        return
    with knowledge_for(settings) as kn:
        rows = kn.sources_status()
    if as_json:
        out.print_json(json.dumps({"sources": rows}))
        return
    abstain = "abstain below / if a name is missing"
    table = Table("source", "type", "access", "documents", "chunks", "last sync", abstain, "last error")
    for r in rows:
        table.add_row(
            r["name"],
            r["type"],
            r.get("access", ""),
            str(r["documents"]),
            str(r["chunks"]),
            r["last_sync"] or "never",
            _abstention(r.get("abstention"), r.get("calibration")),
            r["last_error"] or "",
        )
    out.print(table)


def _visible_sources(settings: Settings, principal: str, as_json: bool) -> None:
    """`lore sources --as PRINCIPAL`: what that principal's audience may read, as the engine filters."""
    from knowledge.access import AccessPolicy

    try:
        audience = AccessPolicy(settings).principal(principal)
    except ValueError as exc:
        error(exc)
        raise typer.Exit(2) from None
    with knowledge_for(settings) as kn:
        visible = kn.visible_documents(audience)
    if as_json:
        out.print_json(json.dumps({"audience": audience.as_dict(), "sources": visible}))
        return
    grants = ", ".join(sorted(audience.grants))
    out.print(f"{audience.label} sees, with {grants}:", highlight=False, markup=False)
    for name, paths in visible.items():
        out.print(f"\n{name}: {len(paths)} document{'s' if len(paths) != 1 else ''}", style="bold")
        for path in paths:
            out.print(f"  {path}", highlight=False, markup=False)


def _abstention(t: dict[str, Any] | None, calibration: dict[str, Any] | None) -> str:
    """'0.45 / 0.58 default (calibrated 0.44 / 0.55, off)': abstain below 0.45, or below 0.58 if
    the question names something no document mentions; where that comes from; the calibration."""
    if not t:
        return ""
    text = f"{t['floor']:.2f} / {t['named']:.2f} {t['origin']}"
    if calibration and t["origin"] != "calibrated":
        text += f" (calibrated {calibration['floor']:.2f} / {calibration['named']:.2f}, off)"
    return text


# -- eval ----------------------------------------------------------------------


def eval_(
    ctx: typer.Context,
    questions: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="questions.jsonl")],
    k: Annotated[int, typer.Option("--k", min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    answers: Annotated[
        bool,
        typer.Option(
            "--answers",
            help="Also check the answers: citations (valid, supported), uncited claims, ideal similarity.",
        ),
    ] = False,
) -> None:
    """Measure recall@k, MRR, abstention and fact hits on a question set (with --answers, the
    answers' citations and claims too)."""
    from knowledge.evaluate import EvalFileError, load_questions, run_eval

    try:
        qs = load_questions(questions)
    except EvalFileError as exc:
        error(exc)
        raise typer.Exit(1) from None
    settings = settings_of(ctx)
    with knowledge_for(settings) as kn:
        if kn.is_empty():
            err.print(_nothing_indexed(settings))
            raise typer.Exit(1)
        checker = _checker(kn, settings) if answers else None
        with progress_bar(disable=as_json and not sys.stderr.isatty()) as bar:
            task = bar.add_task("eval", total=len(qs), chunks=0)
            report = run_eval(
                qs,
                lambda q, k: kn.answer(q, top_k=k),
                k=k,
                on_step=lambda: bar.advance(task),
                checker=checker,
            )
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
    if answers:
        out.print(_answers_table(report["answers"]))


def _checker(kn: Any, settings: Settings) -> Any:
    """The answer checks with the process's embedding model (a remote index's answers are
    checked with this process's own copy of it)."""
    from knowledge.answer_checks import AnswerChecker

    engine = getattr(kn, "engine", None)
    if engine is not None:
        return engine.checker()
    from knowledge.embeddings import build_embedder

    return AnswerChecker(build_embedder(settings.embedding).query_model, settings.answers.support_threshold)


def _answers_table(report: dict[str, Any]) -> Table:
    table = Table(
        "kind",
        "answered",
        "citation validity",
        "citation support",
        "citation precision",
        "citation recall",
        "unsupported claims",
        "fact hits",
        "ideal F1 / cosine",
        title="Answers",
    )
    for kind, s in [("all", report["overall"]), *report["by_kind"].items()]:
        ideal = s["ideal"]
        table.add_row(
            kind,
            str(s["answered"]),
            *(
                _fmt(s[x])
                for x in (
                    "citation_validity",
                    "citation_support",
                    "citation_precision",
                    "citation_recall",
                    "unsupported_claims",
                )
            ),
            _fmt(s["fact_hit_rate"]),
            f"{_fmt(ideal['token_f1'])} / {_fmt(ideal['cosine'])}" if ideal["pairs"] else "-",
        )
    return table


def _nothing_indexed(settings: Settings) -> str:
    if settings.index.owner == "worker":
        return "Nothing is indexed yet. Queue the syncs for the workers: `lore sync run --all --wait`."
    return "Nothing is indexed yet. Run `lore index` first (sources come from lore.toml)."


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
