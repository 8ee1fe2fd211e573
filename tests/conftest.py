"""Fixtures shared by every test folder. See tests/README.md for what each folder covers."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
HANDBOOK = REPO / "examples" / "handbook"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    # pytest-randomly prints its seed in the header, which -q hides; a failure in a shuffled order
    # is only worth something if that order can be run again.
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(
            f"test order: pytest-randomly seed {seed} (rerun it with --randomly-seed={seed})"
        )


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


# The small handbook the chat and console tests ask about: one corpus, indexed once per run.
DOCS = {
    "it/vpn.md": "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta. "
    "The VPN config is downloaded automatically after the first sign-in.\n\n"
    "## Split tunnelling\n\nSplit tunnelling is disabled on company laptops for security reasons.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year. "
    "At most five unused leave days carry over into the next year.\n",
    "expenses/per-diem.md": "# Per diem\n\nThe per diem in New York is 95 USD a day for meals. "
    "Other US cities get 75 USD a day.\n",
    "engineering/deploys.md": "# Deploys\n\nProduction deploys happen Tuesday to Thursday through the "
    "release pipeline. Friday deploys need approval from the on-call lead.\n",
}


def corpus_sources(docs: Path) -> list[dict[str, Any]]:
    """A corpus as Lore's one source, `handbook`, with links under wiki.example."""
    return [
        {"name": "handbook", "type": "directory", "path": str(docs), "url_prefix": "https://wiki.example/hb/"}
    ]


@pytest.fixture(scope="session")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`DOCS` on disk, shared by the whole run: a test that changes documents copies it first."""
    root = tmp_path_factory.mktemp("docs")
    for rel, text in DOCS.items():
        write(root, rel, text)
    return root


@pytest.fixture(scope="session")
def index_template(tmp_path_factory: pytest.TempPathFactory, docs_dir: Path, embedder: Any) -> Path:
    """`docs_dir` indexed once per run. No test opens it: one Knowledge owns a data directory at a
    time, and a test may sync or reset, so `lore_settings` hands each test a copy."""
    from config.settings import Settings
    from knowledge.service import Knowledge

    data = tmp_path_factory.mktemp("index") / "data"
    kn = Knowledge(
        Settings(data_dir=data, sources=corpus_sources(docs_dir), llm={"provider": "extractive"}),
        embedder=embedder,
    )
    try:
        assert kn.sync("handbook").error is None
    finally:
        kn.close()
    return data


@pytest.fixture(scope="session")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The canary corpus (tests/canary/corpus.py) on disk, shared by the whole run."""
    from tests.canary.corpus import write_canary_corpus

    return write_canary_corpus(tmp_path_factory.mktemp("canary"))


@pytest.fixture(scope="session")
def canary_template(
    tmp_path_factory: pytest.TempPathFactory, index_template: Path, canary: Any, embedder: Any
) -> Path:
    """`index_template` plus the canary corpus as the source `company`, indexed once per run
    (labelled: restricted/** for `group:secret`). Pass it as `lore_settings(template=...)` with
    `extra_sources=[canary_source(canary.root)]` and a `secret` group."""
    from config.settings import Settings
    from knowledge.service import Knowledge
    from tests.canary.corpus import canary_source

    data = tmp_path_factory.mktemp("canary-index") / "data"
    shutil.copytree(index_template, data)
    kn = Knowledge(
        Settings(
            data_dir=data,
            sources=[canary_source(canary.root)],
            groups={"secret": ["web:nobody"]},
            llm={"provider": "extractive"},
        ),
        embedder=embedder,
    )
    try:
        assert kn.sync("company").error is None
    finally:
        kn.close()
    return data


@pytest.fixture(scope="session")
def canary_owner(
    tmp_path_factory: pytest.TempPathFactory, canary_template: Path, canary: Any, docs_dir: Path
) -> Iterator[Any]:
    """A real `lore worker -Q ingest` owning a copy of `canary_template`, for the whole run
    (tests/canary/owner.py). Ask for `index_owner` instead: it is ready and forgets chat state."""
    from tests.canary.corpus import canary_source
    from tests.canary.owner import IndexOwner

    sources = [*corpus_sources(docs_dir), canary_source(canary.root)]
    owner = IndexOwner(tmp_path_factory.mktemp("canary-owner"), canary_template, sources)
    yield owner
    owner.close()


@pytest.fixture(params=["embedded", pytest.param("worker", marks=[pytest.mark.redis, pytest.mark.worker])])
async def index_owner(request: pytest.FixtureRequest) -> Any:
    """The canary tests run twice: the index in the test's own process (None), and owned by a
    real `lore worker` process (an `IndexOwner`: pass `**index_owner.chat` to the chat side's
    settings, and it asks the owner through `RemoteKnowledge`)."""
    if request.param == "embedded":
        return None
    return await request.getfixturevalue("canary_owner").ready()


@pytest.fixture
def lore_settings(
    make_settings: Callable[..., Any], docs_dir: Path, index_template: Path, tmp_path: Path
) -> Callable[..., Any]:
    """`lore_settings(docs=None, data_dir="data", extra_sources=(), chat={...}, template=None,
    **overrides)` -> settings over a private copy (`tmp_path / data_dir`) of the indexed corpus
    (or of `template`, another indexed data directory), with generous rate limits. `docs` swaps
    in a private copy of the corpus; `extra_sources` adds sources. With `index={"owner":
    "worker"}` the data directory stays empty: a chat process has no index of its own then."""

    def make(
        *,
        docs: Path | None = None,
        data_dir: str = "data",
        extra_sources: Sequence[dict[str, Any]] = (),
        chat: dict[str, Any] | None = None,
        template: Path | None = None,
        **over: Any,
    ) -> Any:
        data = tmp_path / data_dir
        if over.get("index", {}).get("owner") == "worker":
            data.mkdir(exist_ok=True)
        elif not data.exists():
            shutil.copytree(template or index_template, data)
        chat_cfg = {"user_per_minute": 1000, "channel_per_minute": 1000} | (chat or {})
        sources = corpus_sources(docs or docs_dir) + list(extra_sources)
        return make_settings(sources, data_dir=data, chat=chat_cfg, **over)

    return make


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
