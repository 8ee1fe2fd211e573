"""Sub-commands that live beside their feature (workers, chat adapters, web, datasets).

Each module here exposes `register(app: typer.Typer) -> None`; `bot.cli` calls them all.
Settings come from `bot.cli.settings_of(ctx)`, built once at start-up.
"""

from __future__ import annotations

import importlib

import typer

MODULES: list[str] = [
    "bot.commands.worker",
    "bot.commands.slack",
    "bot.commands.discord",
    "bot.commands.serve",
    "bot.commands.users",
    "bot.commands.dataset",
    "bot.commands.doctor",
]


def register_all(app: typer.Typer) -> None:
    for name in MODULES:
        importlib.import_module(name).register(app)
