"""The `lore` sub-commands, each module beside the others of its feature.

Each module exposes `register(app: typer.Typer) -> None`, which `bot.cli` calls. Settings come
from `bot.commands._common.settings_of(ctx)`, built once at start-up; `_common` also holds the
operator messages (`error`, `say`) and the sync progress bars every command shares.
"""
