"""What every `lore` sub-command shares: the settings built at start-up, messages for the
operator (rich markup on stderr, or log records with JSON logs), and progress bars for syncs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from config import Settings

out = Console(soft_wrap=True)  # never break long paths and URLs mid-line
err = Console(stderr=True, soft_wrap=True)
_log = logging.getLogger("lore")
_json_logs = False  # log_format = "json": messages for the operator become JSON log records too


def use_json_logs(on: bool) -> None:
    """Called once at start-up with `log_format == "json"`."""
    global _json_logs
    _json_logs = on


def json_logs() -> bool:
    return _json_logs


def error(message: object, *, label: str = "Error") -> None:
    if _json_logs:
        _log.error("%s: %s", label, message)
        return
    err.print(f"[red]{label}:[/red] {escape(str(message))}", highlight=False)


def say(markup: str) -> None:
    """A message for the operator on stderr (rich markup), or a log record with JSON logs."""
    if _json_logs:
        _log.info("%s", Text.from_markup(markup).plain)
    else:
        err.print(markup, highlight=False)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings `bot.cli` built at start-up (the root context's object)."""
    assert isinstance(ctx.obj, Settings)
    return ctx.obj


@contextmanager
def knowledge_for(settings: Settings) -> Iterator[Any]:
    """The index as this process may use it (`bot.services.knowledge_base`): a local `Knowledge`,
    or, with index.owner = "worker", the owner's, asked over the `answer` queue (this process
    never opens an index of its own). An index error ends the command with its message."""
    from bot.services import knowledge_base
    from knowledge.store import IndexError_
    from workers.ports import OwnerUnavailable, RemoteIndexError

    kn = knowledge_base(settings)
    try:
        yield kn
    except (IndexError_, OwnerUnavailable, RemoteIndexError) as exc:
        error(exc)
        raise typer.Exit(1) from None
    finally:
        kn.close()


def sync_with_progress(
    kn: Any, names: list[str], *, full: bool = False, disable: bool = False
) -> Iterator[tuple[str, Any]]:
    """Sync each source under one progress bar per source (documents, chunks, ETA), yielding
    each result as it finishes."""
    with progress_bar(disable=disable) as bar:
        for name in names:
            task = bar.add_task(name, total=None, chunks=0)

            def show(p: Any, task: Any = task) -> None:
                bar.update(
                    task,
                    total=p.total,
                    completed=p.seen,
                    chunks=p.chunks_embedded,
                    description=f"{p.source} · {p.phase}",
                )

            yield name, kn.sync(name, full=full, on_progress=show)


def progress_bar(*, disable: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("docs · {task.fields[chunks]} chunks"),
        TimeRemainingColumn(),
        console=err,
        disable=disable,
        transient=False,
    )
