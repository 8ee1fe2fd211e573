"""The eval-index cache (bench/evalcache.py): built once, rebuilt when the index would differ,
never left half built, and shared by query-time configurations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench import evalcache
from bench.evalcache import EvalSet, cached_index, meta, open_eval
from tests.conftest import write


@pytest.fixture
def tiny_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-page corpus as eval set `tiny`, with the cache (and vector cache) under tmp_path."""
    docs = tmp_path / "docs"
    write(docs, "vpn.md", "# VPN\n\nThe VPN gateway is vpn.example.com; reconnect after a laptop sleep.\n")
    write(docs, "leave.md", "# Leave\n\nParental leave is 16 weeks at full pay.\n")
    config = tmp_path / "lore.toml"
    config.write_text(f'[[sources]]\nname = "tiny"\ntype = "directory"\npath = "{docs}"\n')
    write(tmp_path, "questions.jsonl", "")
    monkeypatch.setitem(evalcache.EVAL_SETS, "tiny", EvalSet("tiny", tmp_path / "questions.jsonl", config))
    monkeypatch.setenv("LORE_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return docs


def test_built_once_and_reused_across_query_settings(tiny_set: Path, embedder: Any) -> None:
    first = cached_index("tiny", embedder)
    assert meta(first)["chunks"] == 2
    built_at = (first / "meta.json").stat().st_mtime_ns
    assert cached_index("tiny", embedder) == first
    assert (first / "meta.json").stat().st_mtime_ns == built_at  # not rebuilt
    with open_eval("tiny", embedder, query={"retrieval": {"rrf_k": 9, "max_per_doc": 1}}) as kn:
        assert kn.settings.retrieval.rrf_k == 9
        assert kn.settings.data_dir != first  # a private copy: the cache stays as built
        assert kn.engine.search("how long is parental leave", top_k=1)[0].path == "leave.md"
    with open_eval("tiny", embedder) as kn:  # a second opener: no lock left behind
        assert kn.store.count_chunks() == 2
    assert sorted(p.name for p in first.parent.iterdir() if p.is_dir()) == [first.name]


def test_the_key_follows_what_shapes_the_index(tiny_set: Path, embedder: Any) -> None:
    first = cached_index("tiny", embedder)
    assert cached_index("tiny", embedder, index={"chunking": {"size": 64}}) != first
    page = tiny_set / "leave.md"
    page.write_text(page.read_text() + "Adoption counts too.\n")
    os.utime(page, ns=(1, 1))
    assert cached_index("tiny", embedder) != first


def test_a_failed_build_leaves_nothing(
    tiny_set: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.service import Knowledge

    def broken(self: Any, name: str, **kwargs: Any) -> Any:
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(Knowledge, "sync", broken)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        cached_index("tiny", embedder)
    cache = Path(os.environ["LORE_EVAL_CACHE"])
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []


def test_a_scale_set_indexes_its_parts_together(
    tiny_set: Path, tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    write(other, "gc.md", "# GC\n\nUnreachable reflog entries expire after 30 days.\n")
    config = tmp_path / "other.toml"
    config.write_text(f'[[sources]]\nname = "other"\ntype = "directory"\npath = "{other}"\n')
    parts = (evalcache.EVAL_SETS["tiny"], EvalSet("other", tmp_path / "questions.jsonl", config))
    monkeypatch.setitem(evalcache.SCALE_SETS, "both", EvalSet("both", parts[0].questions, None, parts=parts))
    with open_eval("both", embedder) as kn:
        assert [s.name for s in kn.settings.sources] == ["tiny", "other"]
        assert kn.store.count_chunks() == 3
        assert kn.engine.search("when do reflog entries expire", top_k=1)[0].path == "gc.md"
    with pytest.raises(KeyError, match="no eval set 'neither'"):
        cached_index("neither", embedder)
    (other / "gc.md").unlink()
    other.rmdir()
    with pytest.raises(FileNotFoundError, match="other corpus"):
        cached_index("both", embedder)
