"""What the canary tests check besides messages: log lines (Lore's own logging at DEBUG, as
`config/logs.py` sets it up, and pytest's capture) and the Prometheus metrics text."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

from tests.canary.corpus import CanaryCorpus


@contextlib.contextmanager
def lore_logging_at_debug(settings: Any, caplog: Any) -> Iterator[io.StringIO]:
    """Lore's logging as a process at `log_level = "debug"` sets it up (its formatter, its quiet
    loggers, llama_index kept at INFO), writing to the returned stream, with pytest's capture
    (`caplog`) kept on the root logger too. Restored afterwards."""
    from config.logs import configure_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(settings.model_copy(update={"log_level": "debug"}), stream=stream)
    root.handlers[:] = [*root.handlers, *handlers]
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def lore_logging(settings: Any, caplog: Any, *, debug: bool) -> Iterator[io.StringIO]:
    """`lore_logging_at_debug`, or Lore's default level (INFO) in pytest's capture alone (the
    stream returned stays empty)."""
    if debug:
        with lore_logging_at_debug(settings, caplog) as stream:
            yield stream
    else:
        caplog.set_level(logging.INFO)
        yield io.StringIO()


def log_leaks(corpus: CanaryCorpus, caplog: Any, *streams: str) -> list[str]:
    """Markers in any captured log record (message and traceback) or in the given log text."""
    found = []
    for record in caplog.records:
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        found += [f"{record.name}: {m}" for m in corpus.leaks(text)]
    for text in streams:
        found += corpus.leaks(text)
    return found


def metrics_text() -> str:
    """This process's /metrics body (bot/metrics.py)."""
    from bot.metrics import render_metrics

    return render_metrics().decode()
