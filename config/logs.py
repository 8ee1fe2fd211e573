"""Logging for every Lore process: text or JSON lines, with configured secrets masked."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from config.settings import Settings

# The correlation id of the answer being worked on, if any: it appears on every log line.
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


def url_password(value: str) -> str | None:
    """The password in a URL such as redis://:pw@host or postgresql://lore:pw@db/lore, if any."""
    if "://" not in value or "@" not in value:
        return None
    try:
        return urlsplit(value).password or None
    except ValueError:
        return None


def secret_values(settings: BaseModel) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            if len(value.get_secret_value()) >= 6:  # masking "abc" everywhere would garble logs
                found.append(value.get_secret_value())
        elif isinstance(value, str) and (password := url_password(value)):
            found.append(f":{password}@")  # as it stands in the URL, however short
            if len(password) >= 6:
                found.append(password)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    return sorted(set(found), key=len, reverse=True)


class _AddCorrelationId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get() or "-"
        return True


class _MaskingFormatter(logging.Formatter):
    """Masks secrets in the finished line, so tracebacks and reprs are covered too."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", "-"),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_AddCorrelationId())
    inner = (
        _JsonFormatter()
        if settings.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
    )
    handler.setFormatter(_MaskingFormatter(inner, secret_values(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # warnings are log records too: same format, same masking
    for noisy in (
        "httpx",
        "httpcore",
        "urllib3",
        "sentence_transformers",
        "filelock",
        "asyncio",
        "alembic.runtime.plugins",
        "markdown_it",  # a line per parser rule and token at DEBUG
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # At DEBUG, LlamaIndex logs the retrieved passages, restricted ones included, and Celery's
    # pool every task's arguments (an interaction record carries its answer): a log reader may
    # not read them (docs/permissions.md). The chat SDKs' payload loggers are quieted by their
    # adapters (bot/slack/app.py, bot/discord/app.py) for the same reason.
    for payloads in ("llama_index", "celery.pool"):
        logger = logging.getLogger(payloads)
        logger.setLevel(max(logger.level, logging.INFO))
