"""`lore gaps`: the content-gap clusters (feedback/gaps.py) for scripts and terminals."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import typer

from bot.commands._common import err, error, knowledge_for, out, settings_of


def register(app: typer.Typer) -> None:
    app.command("gaps")(gaps)


def gaps(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Only questions from this date on (YYYY-MM-DD).")] = None,
    top: Annotated[
        bool, typer.Option("--top", help="Every question (Top questions), not only gaps.")
    ] = False,
    source: Annotated[
        str | None, typer.Option(help="Only questions whose answer searched this source.")
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help="Only this channel group: a platform (slack) or slack:C0123.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many clusters.")] = 20,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Cluster now (and store the run) instead of reading the last run."),
    ] = False,
    documents: Annotated[
        bool, typer.Option("--documents", help="Search the index for each cluster's nearest documents.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the clusters as JSON.")] = False,
) -> None:
    """Print the clusters of questions Lore abstained on or got 👎 on (or, with --top, of all)."""
    from feedback.db import Database
    from feedback.gaps import GapFilters, cluster_questions, latest_report, nearest_documents, view_report

    try:
        since_day = date.fromisoformat(since) if since else None
    except ValueError:
        error(f"--since must be a date like 2026-01-31, not {since!r}")
        raise typer.Exit(2) from None
    settings = settings_of(ctx)
    kind = "top" if top else "gaps"
    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        report = latest_report(db.sessions, kind)
        if refresh or report is None:
            from knowledge.embeddings import build_embedder

            err.print("clustering the questions…", highlight=False)
            cluster_questions(db.sessions, settings, build_embedder(settings.embedding), requested_by="cli")
            report = latest_report(db.sessions, kind)
    finally:
        db.dispose()
    assert report is not None
    views = view_report(report.clusters, GapFilters(source, channel, since_day), limit=limit)
    if documents and views:
        with knowledge_for(settings) as kn:
            for v in views:
                v.documents = nearest_documents(kn.search(v.label))
    body: dict[str, Any] = {
        "kind": kind,
        "ran_at": report.finished_at.isoformat(timespec="seconds"),
        "questions": report.questions,
        "clusters": [v.as_dict() for v in views],
    }
    if as_json:
        out.print_json(json.dumps(body))
        return
    err.print(
        f"{kind}: {report.questions} questions clustered at {body['ran_at']}; {len(views)} clusters shown",
        highlight=False,
    )
    for v in views:
        out.print(f"{v.rank:>3}. [{v.count}] {v.label}", highlight=False, markup=False)
        for q in v.examples[1:3]:
            out.print(f"       - {q}", highlight=False, markup=False)
        for d in v.documents:
            out.print(f"       ~ {d['score']:.2f} {d['title']} ({d['url']})", highlight=False, markup=False)
