"""`lore doctor`: check the deployment (settings, Redis, database, index, tokens, LLM, workers)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from config import ConfigError, Settings

out = Console(width=None if Console().is_terminal else 160)  # logs and CI: wide, nothing cut

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check every part Lore depends on and print a pass/fail table with fixes. Exits 1 on a failure."""
    from bot.doctor import run_checks

    obj = ctx.obj
    settings = obj if isinstance(obj, Settings) else None
    problem = str(obj) if isinstance(obj, ConfigError) else None
    checks = run_checks(settings, problem)
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        out.print_json(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}))
    else:
        table = Table(show_lines=False)
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("detail", overflow="fold", ratio=3)
        table.add_column("fix", overflow="fold", ratio=2)
        for c in checks:
            table.add_row(
                c.name, f"[{_STYLE[c.status]}]{c.status}[/]", escape(c.detail), escape(c.fix), style=None
            )
        out.print(table)
        summary = f"{len(failed)} failing" if failed else "all good"
        warned = sum(1 for c in checks if c.status == "warn")
        out.print(f"{summary}{f', {warned} warning(s)' if warned else ''}", highlight=False)
    raise typer.Exit(1 if failed else 0)
