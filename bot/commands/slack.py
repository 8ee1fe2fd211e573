"""`lore slack`: the Slack adapter alone (Socket Mode, or HTTP mode behind the web server)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from bot.commands._common import error, settings_of


def register(app: typer.Typer) -> None:
    app.command("slack")(slack)


def slack(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="HTTP mode: listen here (default web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP mode: port (default web.port).")] = None,
) -> None:
    """Run the Slack adapter. Socket Mode needs bot + app tokens; HTTP mode the signing secret."""
    from bot.serve import serve
    from bot.services import StartupError

    settings = settings_of(ctx)
    problems = settings.slack.problems()
    if problems:
        error("Slack is not configured: " + "; ".join(problems) + ". See docs/slack.md (Slack app setup).")
        raise typer.Exit(2)
    try:
        asyncio.run(serve(settings, slack=True, web=False, host=host, port=port))
    except StartupError as exc:
        error(exc, label="Cannot start")
        raise typer.Exit(1) from None
