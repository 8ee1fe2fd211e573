"""Fixtures shared by every test folder. See tests/README.md for what each folder covers."""

from __future__ import annotations

import os
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


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
