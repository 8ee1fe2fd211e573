"""Operating Lore as separate processes: real `lore` subprocesses on the real Redis and PostgreSQL.

`Proc` runs one `lore …` command with its stdout and stderr in files of their own (so a test can
check that every stderr line is a JSON log record), and stops it the way an orchestrator does:
SIGTERM to the process, then its exit code. Each test gets its own Redis key prefix; every
process a test starts is killed (with its process group) if it is still running at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.bot.web.conftest import make_lore
from tests.conftest import REPO, write
from tests.feedback.pg import PG_ADMIN

__all__ = ["make_lore"]  # the web console's fixture, reused

LORE = str(Path(sys.executable).with_name("lore"))
REDIS_URL = os.environ.get("LORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

DOCS = {
    "it/vpn.md": "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta. "
    "The VPN config is downloaded automatically after the first sign-in.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year. "
    "At most five unused leave days carry over into the next year.\n",
    "expenses/per-diem.md": "# Per diem\n\nThe per diem in New York is 95 USD a day for meals.\n",
    "engineering/deploys.md": "# Deploys\n\nProduction deploys happen Tuesday to Thursday through the "
    "release pipeline. Friday deploys need approval from the on-call lead.\n",
}


def make_docs(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for rel, text in docs.items():
        write(root, rel, text)
    return root


def base_env(tmp: Path, **settings: Any) -> dict[str, str]:
    """A clean environment (no developer LORE_*), an empty lore.toml, and `settings` as LORE_* vars
    (nested dicts become LORE_A__B; lists and dicts at the leaves become JSON)."""
    empty = tmp / "empty.toml"
    empty.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env |= {
        "LORE_CONFIG": str(empty),
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env |= lore_env(settings)
    return env


def lore_env(settings: dict[str, Any], prefix: str = "LORE_") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict):
            out |= lore_env(value, name + "__")
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


class Proc:
    """One `lore` command as a real process; stdout and stderr go to <name>.out / <name>.err."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.out_path, self.err_path = cwd / f"{name}.out", cwd / f"{name}.err"
        self._out, self._err = open(self.out_path, "ab"), open(self.err_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [LORE, *args], env=env, cwd=cwd, stdout=self._out, stderr=self._err, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def tail(self, n: int = 3000) -> str:
        return f"--- {self.name} stderr ---\n{self.err()[-n:]}\n--- stdout ---\n{self.out()[-n // 3 :]}"

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records on stderr (lines that are not JSON are skipped here)."""
        found = []
        for line in self.err().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            assert self.alive(), (
                f"{self.name} exited ({self.proc.returncode}) waiting for {what}\n{self.tail()}"
            )
            assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s: {what}\n{self.tail()}"
            await asyncio.sleep(0.25)

    async def wait_log(self, pattern: str, timeout: float = 90) -> re.Match[str]:  # noqa: ASYNC109
        return await self.wait_for(lambda: re.search(pattern, self.err()), timeout, f"/{pattern}/ in the log")

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)  # the process only, as `docker stop` / the kubelet do

    async def stopped(self, timeout: float = 60) -> int:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a child process
            await asyncio.sleep(0.1)
        assert not self.alive(), f"{self.name} still running {timeout:.0f} s after SIGTERM\n{self.tail()}"
        return int(self.proc.returncode)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started: main and pool
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()


class Procs:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[Proc] = []

    def __call__(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, args, env, self.cwd)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            proc.kill()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.kill_all()


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server (trust auth), dropped afterwards."""
    import psycopg

    name = f"lore_ops_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} ({exc}); run scripts/services")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_prefix() -> str:
    return f"lore-ops-{uuid.uuid4().hex[:10]}:"


def drop_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    value = new_prefix()
    yield value
    drop_prefix(value)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text output (labels matched exactly, in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        found = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        if have == labels:
            return float(found.group(3))
    return None
