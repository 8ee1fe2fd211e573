"""Eval-index cache: each eval set indexed once, reused until something that shapes the index changes.

An index lives under `~/.cache/lore/evals/<set>-<key>/` (or `$LORE_EVAL_CACHE/...`). The key
hashes everything that changes what the index holds:

* the corpus: every file the set's sources select (relative path, size, mtime);
* the index-time settings: chunking, the embedding model and backend, the engine and its HNSW
  graph, per-document limits, the collection name and the sources themselves;
* the code that turns files into chunks and vectors (`INDEX_CODE`: readers, chunking, the
  sparse encoder, sync, ...), so changing the reader or the chunker rebuilds;
* the index layout version, the sparse encoder's name and the embedding model's identity.

Not in the key: knowledge/vector_store.py and knowledge/store.py, which are mostly query time
(and edited often while tuning); a change to how they *write* points must bump LAYOUT_VERSION
or be added to INDEX_CODE. A build takes chunk vectors from the embedding cache of
bench/_common.py when the same text was embedded before, so a rebuild after a reader change
embeds only the chunks that changed.

Query-time settings (top-k, fusion, diversity, abstention) are not in the key: `open_eval()`
opens a private copy of the cached index with any of them overridden, so configurations can
be compared without re-indexing, and two processes (or a test and a benchmark) can use the
same cached index at once. A build runs in a temporary folder renamed into place when it
succeeds, under a lock file, so a killed run never leaves a half index behind and two runs
never build the same index twice.

    from bench.evalcache import EVAL_SETS, open_eval
    with open_eval("git", embedder, query={"retrieval": {"rrf_k": 5}}) as kn:
        kn.answer("how do i undo a rebase")

Run `python bench/evalcache.py [SET ...]` to build (or just locate) the cached indexes.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from config import load_settings  # noqa: E402
from config.settings import Settings  # noqa: E402

# Source files whose code decides what an index holds (relative to the repo). A change to any
# of them gives a new key, so the next run rebuilds. Add a module here if it starts to shape
# what a sync writes (e.g. something computed and stored at the end of a sync).
INDEX_CODE = (
    "knowledge/readers.py",
    "knowledge/html.py",
    "knowledge/chunking.py",
    "knowledge/sparse.py",
    "knowledge/sync.py",
    "knowledge/calibrate.py",  # a full sync ends with a calibration stored in the index
    "knowledge/vocabulary.py",
    "knowledge/sources/base.py",
    "knowledge/sources/directory.py",
    "knowledge/backends/__init__.py",
    "knowledge/backends/edge.py",
)
# Settings sections and fields that shape the index (everything else is query time).
INDEX_FIELDS: dict[str, tuple[str, ...] | None] = {
    "chunking": None,  # None: the whole section
    "embedding": ("provider", "model", "backend", "openai_model"),
    "index": ("engine", "max_file_mb", "max_chunks_per_doc", "hnsw_m", "hnsw_ef_construct"),
    "qdrant": ("collection",),
}
HANDBOOK = REPO / "examples" / "handbook"
EVALSETS = REPO / "bench" / "evalsets"
PYDOCS = REPO / "bench" / "pydocs"


@dataclass(frozen=True)
class EvalSet:
    name: str
    questions: Path
    config: Path | None  # a lore.toml with the set's sources; None: the handbook folder
    install: Path | None = None  # the script that installs the corpus
    parts: tuple[EvalSet, ...] = ()  # a corpus made of other sets' sources, indexed together

    def sources(self) -> list[dict[str, Any]]:
        if self.parts:
            return [src for part in self.parts for src in part.sources()]
        if self.config is None:
            return [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}]
        return [s.model_dump(mode="json") for s in load_settings(self.config).sources]

    def missing_corpus(self) -> str | None:
        """Why the corpus can't be indexed (not installed), or None."""
        for part in self.parts:
            if problem := part.missing_corpus():
                return problem
        for src in self.sources():
            if src["type"] == "directory" and not Path(src["path"]).is_dir():
                hint = f": run {self.install.relative_to(REPO)}" if self.install else ""
                return f"the {self.name} corpus ({src['path']}) is missing{hint}"
        return None


EVAL_SETS: dict[str, EvalSet] = {
    "handbook": EvalSet("handbook", HANDBOOK / "questions.jsonl", None),
    "pydocs": EvalSet(
        "pydocs", PYDOCS / "questions.jsonl", PYDOCS / "lore.toml", PYDOCS / "install_corpus.sh"
    ),
    **{
        name: EvalSet(
            name,
            EVALSETS / name / "questions.jsonl",
            EVALSETS / name / "lore.toml",
            EVALSETS / name / "install_corpus.sh",
        )
        for name in ("postfix", "git", "sqlite")
    },
}
# Corpora for timing work at scale, not in the default list of sets a benchmark walks. git+postfix
# holds more than 10k chunks, the size the whole tuning loop's target names (issue 18); its
# questions are git's, asked over both manuals.
SCALE_SETS: dict[str, EvalSet] = {
    "git+postfix": EvalSet(
        "git+postfix",
        EVAL_SETS["git"].questions,
        None,
        parts=(EVAL_SETS["git"], EVAL_SETS["postfix"]),
    ),
}


def find_set(name: str) -> EvalSet:
    """An eval set or a scale set, by name."""
    found = EVAL_SETS.get(name) or SCALE_SETS.get(name)
    if found is None:
        raise KeyError(f"no eval set {name!r}; known: {', '.join([*EVAL_SETS, *SCALE_SETS])}")
    return found


def cache_root() -> Path:
    explicit = os.environ.get("LORE_EVAL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lore" / "evals"


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def make_settings(
    evalset: EvalSet,
    data_dir: Path,
    index: Mapping[str, Any] | None = None,
    query: Mapping[str, Any] | None = None,
) -> Settings:
    """The set's settings: defaults, then the index-time and query-time overrides."""
    overrides = deep_merge(dict(index or {}), dict(query or {}))
    overrides.setdefault("llm", {"provider": "extractive"})
    return Settings(data_dir=data_dir, sources=evalset.sources(), **overrides)


def _corpus_files(settings: Settings) -> list[tuple[str, str, int, int]]:
    from knowledge.sources import make_loader

    files = []
    for src in settings.sources:
        if src.type != "directory":
            raise ValueError(f"eval sets read directory sources only, not {src.type!r}")
        loader: Any = make_loader(src, data_dir=settings.data_dir, max_bytes=1)
        for entry in loader._list():  # the loader's own selection (include/exclude, no symlinked folders)
            if isinstance(entry, Path):
                st = entry.stat()
                files.append((src.name, entry.relative_to(src.path).as_posix(), st.st_size, st.st_mtime_ns))
    return files


def cache_key(settings: Settings, embed_identity: str) -> str:
    """A hash of what the index would hold: corpus files, index-time settings, code, identities."""
    from knowledge.backends import LAYOUT_VERSION
    from knowledge.sparse import SparseEncoder

    dumped = settings.model_dump(mode="json")
    index_settings = {
        section: (dumped[section] if fields is None else {f: dumped[section].get(f) for f in fields})
        for section, fields in INDEX_FIELDS.items()
    }
    code = {path: hashlib.sha256((REPO / path).read_bytes()).hexdigest() for path in INDEX_CODE}
    material = {
        "sources": dumped["sources"],
        "files": _corpus_files(settings),
        "settings": index_settings,
        "code": code,
        "layout": LAYOUT_VERSION,
        "sparse": SparseEncoder.name,
        "embedder": embed_identity,
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _embed_identity(embedder: Any) -> str:
    return str(embedder.identity.name)


def cached_index(
    name: str, embedder: Any, *, index: Mapping[str, Any] | None = None, log: Any = None
) -> Path:
    """The folder of the set's cached index (its data_dir), built first if needed."""
    evalset = find_set(name)
    problem = evalset.missing_corpus()
    if problem:
        raise FileNotFoundError(problem)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    probe = make_settings(evalset, root / "_probe", index)
    key = cache_key(probe, _embed_identity(embedder))
    final = root / f"{name}-{key}"
    if (final / "meta.json").exists():
        return final
    with open(root / f"{name}-{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # someone else building it: wait, then reuse theirs
        if (final / "meta.json").exists():
            return final
        _build(evalset, key, final, embedder, index, log or (lambda msg: print(msg, file=sys.stderr)))
    return final


def _build(
    evalset: EvalSet, key: str, final: Path, embedder: Any, index: Mapping[str, Any] | None, log: Any
) -> None:
    from knowledge.service import Knowledge

    work = Path(tempfile.mkdtemp(prefix=f".build-{evalset.name}-{key}-", dir=final.parent))
    # Vectors of chunk texts embedded before (by any build) come from the embedding cache: a
    # reader change that alters a few chunks re-embeds only those.
    embedder = _with_vector_cache(embedder)
    try:
        settings = make_settings(evalset, work, index)
        log(f"evalcache: indexing {evalset.name} into {final} ...")
        started = time.perf_counter()
        kn = Knowledge(settings, embedder=embedder)
        try:
            summaries = {}
            for src in settings.sources:
                progress = kn.sync(src.name)
                if progress.error is not None:
                    raise RuntimeError(f"indexing {evalset.name}/{src.name} failed: {progress.error}")
                summaries[src.name] = progress.summary()
            chunks = kn.store.count_chunks()
        finally:
            kn.close()
        seconds = round(time.perf_counter() - started, 1)
        (work / "lore.lock").unlink(missing_ok=True)
        meta = {
            "set": evalset.name,
            "key": key,
            "chunks": chunks,
            "index_seconds": seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "index_overrides": dict(index or {}),
            "sync": summaries,
        }
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        os.rename(work, final)  # atomic: the index appears whole or not at all
        log(f"evalcache: {evalset.name}: {chunks} chunks in {seconds} s")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _with_vector_cache(embedder: Any) -> Any:
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    from _common import cached_embedder

    return cached_embedder(embedder)


def meta(path: Path) -> dict[str, Any]:
    return dict(json.loads((path / "meta.json").read_text()))


@contextmanager
def open_eval(
    name: str,
    embedder: Any,
    *,
    index: Mapping[str, Any] | None = None,
    query: Mapping[str, Any] | None = None,
    log: Any = None,
) -> Iterator[Any]:
    """A `Knowledge` over a private copy of the set's cached index, with `query` overrides.

    The copy (a few MB to a few tens of MB) keeps the cache pristine: opening an index may
    write to it, and one process owns an embedded index at a time."""
    from knowledge.service import Knowledge

    cached = cached_index(name, embedder, index=index, log=log)
    with tempfile.TemporaryDirectory(prefix=f"lore-eval-{name}-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(cached, data, ignore=shutil.ignore_patterns("meta.json", "lore.lock"))
        kn = Knowledge(make_settings(find_set(name), data, index, query), embedder=embedder)
        try:
            yield kn
        finally:
            kn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sets", nargs="*", default=list(EVAL_SETS), help="also: " + ", ".join(SCALE_SETS))
    args = parser.parse_args()
    from knowledge.embeddings import build_embedder

    embedder = build_embedder(Settings().embedding)
    for name in args.sets:
        path = cached_index(name, embedder)
        print(f"{name}: {path} ({meta(path)['chunks']} chunks)")


if __name__ == "__main__":
    main()
