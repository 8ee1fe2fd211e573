"""Real Redis, real `celery` worker processes, real SQLite/PostgreSQL.

Each test gets its own Redis key prefix (broker queues, locks and progress all live under
it) and its own data directory, and every worker it starts is stopped with its whole
process group, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import REPO

REDIS_URL = os.environ.get("LORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LORE_BIN = str(Path(sys.executable).with_name("lore"))
CELERY_BIN = str(Path(sys.executable).with_name("celery"))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Stack:
    """The settings a test's workers and clients share, as keyword overrides for `Settings`."""

    tmp: Path
    prefix: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Any:
        from config.settings import Settings

        return Settings(**self.overrides)

    def env(self) -> dict[str, str]:
        empty = self.tmp / "empty.toml"
        empty.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
        env.update(
            LORE_CONFIG=str(empty), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
        )
        for key, value in self.overrides.items():
            env[f"LORE_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value, default=str)
        return env


class Worker:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> Worker:
        wait_for(lambda: " ready." in self.text() or self.proc.poll() is not None, timeout, "worker ready")
        assert self.proc.poll() is None, f"worker exited:\n{self.text()[-3000:]}"
        return self

    def kill(self) -> None:
        """kill -9 the whole process group: the main process and its pool children."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._fh.close()

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # children of a stopped main may linger
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


@pytest.fixture
def redis_client() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not running at {REDIS_URL} ({exc}); run scripts/services")
    yield client
    client.close()


@pytest.fixture
def stack(tmp_path: Path, redis_client: Redis) -> Iterator[Stack]:
    prefix = f"lore-test-{uuid.uuid4().hex[:10]}:"
    s = Stack(
        tmp=tmp_path,
        prefix=prefix,
        overrides={
            "data_dir": str(tmp_path / "data"),
            "llm": {"provider": "extractive"},
            "redis": {"url": REDIS_URL, "prefix": prefix},
            # Fast redelivery for tests; the kill -9 test uses the shipped defaults.
            "worker": {"visibility_timeout": 10, "lease_interval": 1, "restore_interval": 1, "lock_ttl": 5},
        },
    )
    yield s
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        redis_client.delete(*keys[i : i + 500])


class Workers:
    """Starts worker processes for a test (call it) and stops them all at the end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: list[Worker] = []

    def __call__(
        self, queues: str = "ingest,feedback", *, concurrency: int | None = None, via: str = "lore"
    ) -> Worker:
        n = len(self.started)
        node = f"w{n}-{uuid.uuid4().hex[:6]}@%h"
        if via == "lore":
            argv = [LORE_BIN, "worker", "-Q", queues, "--loglevel", "INFO", "-n", node]
            if concurrency:
                argv += ["--concurrency", str(concurrency)]
        else:  # the plain Celery entry point
            argv = [CELERY_BIN, "-A", "workers.celery_app", "worker", "-Q", queues, "--pool", "prefork"]
            argv += ["--loglevel", "INFO", "-n", node, "--without-gossip", "--without-mingle"]
            argv += ["--concurrency", str(concurrency or 1)]
        worker = Worker(argv, self.stack.env(), self.stack.tmp / f"worker-{n}.log", cwd=self.stack.tmp)
        self.started.append(worker)
        return worker.wait_ready()

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop(timeout=5)


@pytest.fixture
def start_worker(stack: Stack) -> Iterator[Workers]:
    workers = Workers(stack)
    yield workers
    workers.stop_all()


@pytest.fixture
def client(stack: Stack) -> Iterator[Any]:
    from workers.sender import CeleryTaskClient

    c = CeleryTaskClient(stack.settings())
    yield c
    c.close()


def history(client: Any, source: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
    items = list(reversed(client.history(500)))  # oldest first
    return [
        h
        for h in items
        if (source is None or h.get("source") == source) and (event is None or h.get("event") == event)
    ]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # `lore` commands run through CliRunner add log handlers on streams that close after them.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
