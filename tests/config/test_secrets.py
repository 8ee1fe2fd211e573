"""Secrets never show: not in `lore config show`, not in a log line, even inside a URL."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from config.logs import configure_logging
from config.settings import Settings

REDIS = "redis://:hunter2@cache.internal:6379/0"
POSTGRES = "postgresql://lore:Sup3r-secret@db.internal:5432/lore"


def test_config_show_masks_passwords_inside_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"LORE_REDIS__URL": REDIS, "LORE_DATABASE__URL": POSTGRES, "LORE_INDEX__OWNER": "self"}
    result = CliRunner().invoke(app, ["config", "show"], env={**os.environ, **env}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "Sup3r-secret" not in result.output
    # What is not secret stays, so the operator can still check the address.
    assert "cache.internal:6379" in result.output and "lore:**********@db.internal" in result.output


def test_log_lines_mask_passwords_inside_urls(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis={"url": REDIS}, database={"url": POSTGRES})
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(settings, stream=stream)
        logging.getLogger("lore.test").warning("cannot reach %s or %s", REDIS, POSTGRES)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = stream.getvalue()
    assert "cannot reach" in line
    assert "hunter2" not in line and "Sup3r-secret" not in line


@pytest.mark.parametrize(
    ("quieted", "logger", "line"),
    [
        ("llama_index", "llama_index.core.indices.utils", "> Top 2 nodes: CANARY passage"),
        # The pool of a feedback worker, applying an interaction record (the answer in its arguments).
        (
            "celery.pool",
            "celery.pool",
            "TaskPool: Apply <fast_trace_task> (args:('lore.record_interaction', 'CANARY'",
        ),
    ],
)
def test_passages_and_task_arguments_stay_out_of_debug_logs(
    tmp_path: Path, quieted: str, logger: str, line: str
) -> None:
    # LlamaIndex logs retrieved text at DEBUG, and Celery's pool each task's arguments; a log
    # reader may not read restricted passages.
    settings = Settings(data_dir=tmp_path, log_level="DEBUG")
    stream = io.StringIO()
    root = logging.getLogger()
    passages = logging.getLogger(quieted)
    saved = root.handlers[:], root.level, passages.level
    try:
        configure_logging(settings, stream=stream)
        logging.getLogger(logger).debug(line)
        logging.getLogger("lore.test").debug("lore's own debug line")
    finally:
        root.handlers[:], level, passages_level = saved
        root.setLevel(level)
        passages.setLevel(passages_level)
    assert "lore's own debug line" in stream.getvalue()
    assert "CANARY" not in stream.getvalue()
