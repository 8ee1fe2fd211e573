"""`lore serve`: the web console and every configured chat adapter (Slack, Discord) in one process.

On a fresh data directory it first indexes the configured sources (with progress), so
`make run` -> `lore serve` is all a newcomer needs to try Lore at http://127.0.0.1:8000.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from bot.commands._common import error, json_logs, say, settings_of, sync_with_progress

if TYPE_CHECKING:
    from bot.services import Services
    from config.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Web app address (default web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Web app port (default web.port).")] = None,
    gateways: Annotated[
        bool,
        typer.Option(
            "--gateways/--no-gateways",
            help="Also hold the chat gateway connections (Slack Socket Mode, Discord). "
            "--no-gateways: HTTP only (the console, and Slack's HTTP endpoint with slack.mode = http), "
            "when `lore slack` and `lore discord` run as processes of their own.",
        ),
    ] = True,
) -> None:
    """Run the web console and every chat adapter whose tokens are configured, until SIGTERM.
    Indexes the sources first when the index is empty (web.index_on_start)."""
    from bot.serve import serve
    from bot.services import StartupError, build_services

    settings = settings_of(ctx)
    slack = settings.slack.configured and (gateways or settings.slack.mode == "http")
    if slack and (problems := settings.slack.problems()):
        error("Slack is half configured: " + "; ".join(problems) + ". See docs/slack.md (Slack app setup).")
        raise typer.Exit(2)
    from knowledge.store import IndexError_

    services = build_services(settings)
    try:
        if settings.web.index_on_start:
            index_if_empty(services)
        _hint_users(settings, host, port)
    except IndexError_ as exc:
        asyncio.run(services.aclose())
        error(exc, label="Cannot start")
        raise typer.Exit(1) from None
    except BaseException:
        asyncio.run(services.aclose())
        raise
    try:
        asyncio.run(
            serve(settings, slack=slack, web=True, host=host, port=port, services=services, discord=gateways)
        )
    except StartupError as exc:
        error(exc, label="Cannot start")
        raise typer.Exit(1) from None


def index_if_empty(services: Services) -> bool:
    """Index every configured source when nothing is indexed yet. Embedded mode syncs here, with
    progress on stderr; with Redis the syncs are queued for the workers. True if it indexed."""
    from bot.services import local_knowledge

    settings, knowledge = services.settings, services.knowledge
    if not settings.sources:
        return False
    try:
        empty = knowledge.is_empty()
    except Exception as exc:  # index.owner = worker and the owner is not up (yet)
        if local_knowledge(knowledge) is not None:
            raise
        say(f"[yellow]could not ask the index owner whether anything is indexed[/yellow]: {exc}")
        return False
    if not empty:
        return False
    names = [s.name for s in settings.sources]
    local = local_knowledge(knowledge)
    if settings.redis.url or local is None:
        for name in names:
            handle = services.tasks.request_sync(name, requested_by="serve")
            say(f"nothing indexed yet: queued a sync of {name} for the workers ({handle.task_id})")
        return False
    say(f"Nothing is indexed yet: indexing {', '.join(names)} first (once).")
    for name, result in sync_with_progress(local, names, disable=json_logs()):
        if result.error:
            say(f"[red]{name} failed[/red] (serving anyway): {result.error}")
        else:
            s = result.summary()
            say(f"{name}: {s['added']} documents, {s['chunks_embedded']} chunks in {s['seconds']:.0f} s")
    return True


def _hint_users(settings: Settings, host: str | None, port: int | None) -> None:
    from feedback.db import Database
    from feedback.users import list_users

    where = f"http://{host or settings.web.host}:{settings.web.port if port is None else port}"
    say(f"The console will be at {where}/chat (review queue: {where}/review).")
    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        if not list_users(db.sessions):
            say(
                "No console users yet: create one with `lore users add NAME --role admin` to sign in "
                "to the review queue, sources and exports."
            )
    finally:
        db.dispose()
