"""`lore discord`: the Discord adapter alone (the gateway connection; no web server)."""

from __future__ import annotations

import asyncio

import typer

from bot.commands._common import error, settings_of


def register(app: typer.Typer) -> None:
    app.command("discord")(discord_command)


def discord_command(ctx: typer.Context) -> None:
    """Run the Discord adapter until SIGTERM. Needs the bot token (discord.token)."""
    from bot.serve import serve
    from bot.services import StartupError

    settings = settings_of(ctx)
    problems = settings.discord.problems()
    if problems:
        error(
            "Discord is not configured: " + "; ".join(problems) + ". See docs/discord.md (Discord app setup)."
        )
        raise typer.Exit(2)
    try:
        asyncio.run(serve(settings, slack=False, web=False, discord=True))
    except StartupError as exc:
        error(exc, label="Cannot start")
        raise typer.Exit(1) from None
