"""`lore serve`: every configured adapter (web app, Slack, …) in one process."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from bot.cli import error, settings_of


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Web app address (default web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Web app port (default web.port).")] = None,
) -> None:
    """Run the web app and every chat adapter whose tokens are configured, until SIGTERM."""
    from bot.serve import StartupError, serve

    settings = settings_of(ctx)
    if settings.slack.configured and (problems := settings.slack.problems()):
        error("Slack is half configured: " + "; ".join(problems) + ". See the README, 'Slack app setup'.")
        raise typer.Exit(2)
    try:
        asyncio.run(serve(settings, slack=True, web=True, host=host, port=port))
    except StartupError as exc:
        error(exc, label="Cannot start")
        raise typer.Exit(1) from None
