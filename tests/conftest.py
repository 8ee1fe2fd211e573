"""Fixtures shared by every test folder. See tests/README.md for what each folder covers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
HANDBOOK = REPO / "examples" / "handbook"


@pytest.fixture(autouse=True)
def _no_stray_lore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own LORE_* variables must not leak into tests.
    for key in list(os.environ):
        if key.startswith("LORE_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real all-MiniLM-L6-v2, loaded once per test session."""
    from config.settings import EmbeddingSettings
    from knowledge.embeddings import build_embedder

    return build_embedder(EmbeddingSettings())


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Any]:
    from config.settings import Settings

    def make(sources: list[dict[str, Any]] | None = None, **overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("llm", {"provider": "extractive"})
        return Settings(sources=sources or [], **overrides)

    return make


@pytest.fixture
def make_knowledge(make_settings: Callable[..., Any], embedder: Any) -> Iterator[Callable[..., Any]]:
    from knowledge.service import Knowledge

    opened: list[Knowledge] = []

    def make(sources: list[dict[str, Any]] | None = None, **overrides: Any) -> Knowledge:
        kn = Knowledge(make_settings(sources, **overrides), embedder=embedder)
        opened.append(kn)
        return kn

    yield make
    for kn in opened:
        kn.close()


def corpus_sources(docs: Path) -> list[dict[str, Any]]:
    """A small test corpus as Lore's one source, `handbook`, with links under wiki.example."""
    return [
        {"name": "handbook", "type": "directory", "path": str(docs), "url_prefix": "https://wiki.example/hb/"}
    ]


def index_corpus(data: Path, docs: Path, embedder: Any) -> Path:
    """Index `docs` into `data` once per session; tests copy the result, because one Knowledge
    owns a data directory at a time."""
    from config.settings import Settings
    from knowledge.service import Knowledge

    kn = Knowledge(
        Settings(data_dir=data, sources=corpus_sources(docs), llm={"provider": "extractive"}),
        embedder=embedder,
    )
    try:
        assert kn.sync("handbook").error is None
    finally:
        kn.close()
    return data


async def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:  # noqa: ASYNC109
    """Poll a predicate that depends on something the test can't await (a database, a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.05)


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


async def start_lore(*args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    """A real `lore` process (this venv's console script), its stderr merged into stdout."""
    import sys

    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("lore")),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server (llama.cpp) serving the SmolLM2 GGUF; yields its /v1 URL."""
    yield from _run_llama_server(tmp_path_factory)


def _run_llama_server(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[str]:
    import subprocess
    import sys
    import time

    import httpx

    from knowledge.generate import local_gguf_path

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(local_gguf_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--n_ctx",
        "4096",
        *extra,
    ]
    # llama.cpp logs a lot while loading; a pipe nobody reads would fill up and block it.
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp server did not start within 60 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
