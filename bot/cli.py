"""The `lore` command. Settings are built once, here, and passed down (`ctx.obj`).

Each sub-command lives in `bot/commands/`, beside the others of its feature, and registers itself
with `register(app)`. They import heavy dependencies inside the command functions, so
`lore --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bot.commands import ask, dataset, discord, doctor, gaps, index, serve, slack, tune, users, worker
from bot.commands._common import error, out, settings_of, use_json_logs
from config import ConfigError, load_settings
from config.loader import masked
from config.logs import configure_logging

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Lore answers questions from your company's documents, with citations.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective settings.")
app.add_typer(config_app, name="config")


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
    use_json_logs(settings.log_format == "json")
    ctx.obj = settings


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings, secrets masked, and the answer model that serves."""
    from feedback.generators import active

    settings = settings_of(ctx)
    body = masked(settings)
    body["serving"] = {"generator": active(settings)}
    out.print_json(json.dumps(body, default=str))


for _commands in (index, ask, worker, slack, discord, serve, users, dataset, gaps, tune, doctor):
    _commands.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
