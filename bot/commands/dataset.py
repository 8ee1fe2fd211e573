"""`lore dataset export`: fine-tuning data (SFT, DPO, KTO) from the reviewed feedback log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bot.commands._common import err, error, out, settings_of

dataset_app = typer.Typer(no_args_is_help=True, help="Fine-tuning datasets from reviewed answers.")


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


@dataset_app.command("export")
def export(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", "-f", help="sft, dpo or kto.")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Parent directory (default datasets.out_dir, else data_dir/datasets)."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only answers from this date on (YYYY-MM-DD).")] = None,
    include_restricted: Annotated[
        bool,
        typer.Option(
            "--include-restricted",
            help="Also keep answers whose context used restricted (not public) documents; "
            "left out by default, and counted on the dataset card either way.",
        ),
    ] = False,
    include_attachments: Annotated[
        bool,
        typer.Option(
            "--include-attachments",
            help="Also keep answers whose context used passages of a file attached to the question "
            "(never indexed); left out by default, and counted on the dataset card either way.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write a redacted, de-duplicated, split and validated export to OUT/<format>-<timestamp>/."""
    from feedback.datasets.build import FORMATS
    from feedback.datasets.export import ExportError, export_dataset, parse_since
    from feedback.datasets.schemas import InvalidExample
    from feedback.db import Database

    if format not in FORMATS:
        error(f"--format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        error(exc)
        raise typer.Exit(2) from None
    settings = settings_of(ctx)
    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        result = export_dataset(
            db.sessions,
            format,
            settings,
            out_dir=out_dir,
            since=since_at,
            include_restricted=include_restricted,
            include_attachments=include_attachments,
        )
    except (ExportError, InvalidExample) as exc:
        error(exc, label="Export failed (nothing was written)")
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    if as_json:
        out.print_json(json.dumps(result.summary()))
        return
    c, s = result.counts, result.splits
    out.print(f"{result.directory}", highlight=False, markup=False)
    err.print(
        f"{c['examples']} examples ({s['train']} train, {s['validation']} validation) from "
        f"{c['answers_considered']} answers; duplicates dropped: {c['duplicates_dropped']['exact']} exact, "
        f"{c['duplicates_dropped']['near']} near",
        highlight=False,
    )
    restricted = c["restricted"]
    if include_restricted:
        err.print(f"restricted: {restricted['included']} included (--include-restricted)", highlight=False)
    else:
        err.print(
            f"restricted: {restricted['left_out']} left out (--include-restricted keeps them)",
            highlight=False,
        )
    attached = c["attachments"]
    if include_attachments:
        err.print(f"attachments: {attached['included']} included (--include-attachments)", highlight=False)
    else:
        err.print(
            f"attachments: {attached['left_out']} left out (--include-attachments keeps them)",
            highlight=False,
        )
    redacted = ", ".join(f"{k} {n}" for k, n in result.redactions.items()) or "nothing"
    err.print(f"redacted: {escape(redacted)}", highlight=False)
    if result.changes:
        ch = result.changes
        err.print(
            f"since {ch['previous']}: {ch['new']} new, {ch['changed']} changed, {ch['removed']} removed",
            highlight=False,
        )
    if not c["examples"]:
        err.print(
            "[yellow]no examples: review some answers in the console first (lore serve → /review)[/yellow]"
        )
