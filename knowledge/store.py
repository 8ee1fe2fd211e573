"""Where the index lives: the vector engine, and the key-value store beside it.

Embedded (default, `qdrant.url` empty): the engine named by `index.engine` under `data_dir`
(`edge`: Qdrant's Rust engine in-process; `qdrant-local`: qdrant-client's local mode) and a
JSON key-value file, all owned by one process (a lock file says so clearly). Server mode
(`qdrant.url`): a Qdrant server plus Redis for the docstore, so any worker can sync any source.

The collection records what built it: the embedding model and dimension, the sparse encoder
and the payload layout. Anything else is refused with a message saying to run
`lore index --full`, and so is an embedded index built by the other engine.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.kvstore.simple_kvstore import SimpleKVStore
from llama_index.core.storage.kvstore.types import BaseKVStore

from config.settings import Settings
from knowledge.backends import (
    DENSE_VECTOR,
    LAYOUT_VERSION,
    SPARSE_VECTOR,
    Backend,
    BackendLocked,
    local_collection_exists,
)
from knowledge.embeddings import EmbedIdentity
from knowledge.sparse import SparseEncoder
from knowledge.vector_store import LoreVectorStore

log = logging.getLogger(__name__)

__all__ = ["DENSE_VECTOR", "SPARSE_VECTOR", "DataDirLocked", "IndexStore", "LayoutMismatch", "ModelMismatch"]

ENGINES = ("edge", "qdrant-local")
_SERVER_HINT = (
    "Embedded mode is single-process: stop that process, or run a Qdrant server and set "
    "LORE_QDRANT__URL (plus LORE_REDIS__URL) so several processes can share the index."
)


class IndexError_(Exception):
    """The index can't be used as configured; the message says what to do."""


class ModelMismatch(IndexError_):
    pass


class LayoutMismatch(ModelMismatch):
    """The index was built another way (engine, sparse encoder, payload layout): rebuild it."""


class DataDirLocked(IndexError_):
    pass


class _DataDirLock:
    """An advisory lock so a second process gets a clear message instead of an engine traceback.

    Shared within a process (`_DataDirLock.take`): a promotion builds a second collection beside
    the serving one in the process that owns the data dir."""

    _held: ClassVar[dict[Path, tuple[_DataDirLock, int]]] = {}
    _guard = threading.Lock()

    @classmethod
    def take(cls, data_dir: Path) -> _DataDirLock:
        key = data_dir.resolve()
        with cls._guard:
            lock, count = cls._held.get(key, (None, 0))
            if lock is None:
                lock = cls(data_dir)
            cls._held[key] = (lock, count + 1)
            return lock

    def _give_back(self) -> None:
        key = self.path.parent.resolve()
        with self._guard:
            lock, count = self._held.get(key, (None, 0))
            if lock is not self:
                return
            if count > 1:
                self._held[key] = (self, count - 1)
                return
            del self._held[key]
        self._unlock()

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "lore.lock"
        self._fh = open(self.path, "a+")  # noqa: SIM115 - held for the life of the process
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "unknown"
            self._fh.close()
            raise DataDirLocked(
                f"the embedded index in {data_dir} is in use by another Lore process (pid {holder}). "
                + _SERVER_HINT
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()

    def release(self) -> None:
        self._give_back()

    def _unlock(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


class _FileKV(SimpleKVStore):
    """SimpleKVStore persisted atomically, so a crash mid-write can't corrupt it."""

    def __init__(self, path: Path) -> None:
        data: dict[str, dict[str, Any]] = {}
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        super().__init__(data)
        self._path = path
        self._write_lock = threading.Lock()

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        path = Path(persist_path) if persist_path else self._path
        tmp = path.with_suffix(".tmp")
        with self._write_lock:
            tmp.write_text(json.dumps(self._collections_mappings), encoding="utf-8")
            os.replace(tmp, path)


def _engine_dir(data_dir: Path, engine: str) -> Path:
    return data_dir / ("edge" if engine == "edge" else "qdrant")


def _embedded_collection_exists(data_dir: Path, engine: str, collection: str) -> bool:
    if engine == "edge":
        return (_engine_dir(data_dir, engine) / f"{collection}.json").exists()
    return local_collection_exists(_engine_dir(data_dir, engine), collection)


def _open_backend(settings: Settings, engine: str, collection: str) -> Backend:
    if engine == "edge":
        from knowledge.backends.edge import EdgeBackend

        return EdgeBackend(
            _engine_dir(settings.data_dir, engine),
            collection,
            hnsw_m=settings.index.hnsw_m,
            hnsw_ef_construct=settings.index.hnsw_ef_construct,
        )
    from knowledge.backends.qdrant import QdrantBackend

    if engine == "qdrant-local":
        return QdrantBackend(collection, path=_engine_dir(settings.data_dir, engine))
    key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
    return QdrantBackend(collection, url=settings.qdrant.url, api_key=key, timeout=settings.qdrant.timeout)


def state_prefix(settings: Settings, collection: str) -> str:
    """Where a collection's docstore and state live in the key-value store: the configured
    collection keeps the historical `lore/...`; a model's own collection (`knowledge/tuning/
    registry.py`) gets its own, since it is synced separately."""
    return "lore" if collection == settings.qdrant.collection else f"lore@{collection}"


def state_file(settings: Settings, collection: str) -> Path:
    """The embedded key-value file of `collection` (one per collection: two stores open at once
    in one process must never overwrite each other's file)."""
    if collection == settings.qdrant.collection:
        return settings.data_dir / "docstore.json"
    return settings.data_dir / f"docstore.{collection}.json"


class IndexStore:
    def __init__(self, settings: Settings, *, collection: str | None = None) -> None:
        """`collection`: the concrete collection to open (default: the configured one); the
        serving model's comes from `knowledge.tuning.registry.serving_view`."""
        self.settings = settings
        self.collection = collection or settings.qdrant.collection
        self.prefix = state_prefix(settings, self.collection)
        self.embedded = settings.qdrant.url is None
        self.engine = settings.index.engine if self.embedded else "qdrant"
        self._lock: _DataDirLock | None = None
        if self.embedded:
            self._lock = _DataDirLock.take(settings.data_dir)
        try:
            self.backend: Backend = _open_backend(settings, self.engine, self.collection)
        except BackendLocked as exc:  # the engine's own lock, if someone bypassed ours
            if self._lock:
                self._lock.release()
            raise DataDirLocked(f"{exc}. {_SERVER_HINT}") from exc
        except BaseException:
            if self._lock:
                self._lock.release()
            raise
        self.sparse = SparseEncoder()
        self._vector_store: LoreVectorStore | None = None
        # The last successful check for searches: (identity, when, whether an index exists).
        self._checked: tuple[EmbedIdentity, float, bool] | None = None
        # Embedded: only this process changes the index, so a check holds until it does.
        # Server: a worker elsewhere may rebuild it, so check again now and then.
        self._check_ttl = float("inf") if self.embedded else 30.0
        self.kv = self._make_kv(settings)

    def _make_kv(self, settings: Settings) -> BaseKVStore:
        if not self.embedded and settings.redis.url:
            from llama_index.storage.kvstore.redis import RedisKVStore

            kv: BaseKVStore = RedisKVStore(redis_uri=settings.redis.url)
            return kv
        if not self.embedded:
            log.warning(
                "Qdrant server without Redis: the docstore stays in %s, so only this "
                "machine can sync sources",
                settings.data_dir,
            )
        return _FileKV(state_file(settings, self.collection))

    # -- the collection ------------------------------------------------------

    def layout(self, identity: EmbedIdentity) -> dict[str, Any]:
        """What the collection records about how it was built."""
        return {
            "embed_model": identity.name,
            "dim": identity.dim,
            "sparse": self.sparse.name,
            "layout": LAYOUT_VERSION,
            "engine": self.engine,
        }

    def exists(self) -> bool:
        return self.backend.exists()

    def ready_for(self, identity: EmbedIdentity) -> bool:
        """For searches: whether there is an index to search, after a (cached) `check_model`."""
        checked, now = self._checked, time.monotonic()
        if checked is not None and checked[0] == identity and now - checked[1] < self._check_ttl:
            return checked[2]
        self.check_model(identity)
        exists = self.backend.exists()
        self._checked = (identity, now, exists)
        return exists

    def collection_info(self) -> dict[str, Any] | None:
        info = self.backend.info()
        if info is None:
            return None
        return {
            "model": info.meta.get("embed_model"),
            "dim": info.dim,
            "points": info.points,
            "engine": self.engine,
            "sparse": info.meta.get("sparse") if info.has_sparse else None,
            "layout": info.meta.get("layout", 1),
        }

    def check_model(self, identity: EmbedIdentity) -> None:
        """Refuse an index built another way than configured; the message says to rebuild."""
        self._check_other_engine()
        info = self.collection_info()
        if info is None:
            return
        if info["model"] != identity.name or info["dim"] != identity.dim:
            raise ModelMismatch(
                f"the index was built with {info['model']} ({info['dim']} dims) but the configured "
                f"embedding model is {identity.describe()}. Mixing them would give wrong results: "
                "run `lore index --full` to rebuild the index with the new model."
            )
        if info["layout"] != LAYOUT_VERSION or info["sparse"] != self.sparse.name:
            built = (
                "without sparse (BM25) vectors, by an older Lore"
                if info["sparse"] is None
                else f"with the sparse encoder {info['sparse']} (layout {info['layout']})"
            )
            raise LayoutMismatch(
                f"the index was built {built}; this Lore needs {self.sparse.name} (layout "
                f"{LAYOUT_VERSION}) for hybrid search: run `lore index --full` to rebuild it."
            )

    def _check_other_engine(self) -> None:
        if not self.embedded:
            return
        data_dir = self.settings.data_dir
        for other in ENGINES:
            if other == self.engine or not _embedded_collection_exists(data_dir, other, self.collection):
                continue
            if not self.backend.exists():
                raise LayoutMismatch(
                    f"the index in {data_dir} was built with the {other!r} engine, but index.engine is "
                    f"{self.engine!r}: run `lore index --full` to rebuild it with {self.engine!r} "
                    f"(or set index.engine = {other!r} again)."
                )

    def ensure_collection(self, identity: EmbedIdentity) -> None:
        self.check_model(identity)
        if not self.backend.exists():
            self.backend.create(identity.dim, self.layout(identity))
            self._checked = None

    def drop_collection(self) -> None:
        """Drop the collection, and in embedded mode the other engine's copy too (a rebuild)."""
        self._checked = None
        self.backend.drop()
        if not self.embedded:
            return
        for other in ENGINES:
            if other != self.engine and _embedded_collection_exists(
                self.settings.data_dir, other, self.collection
            ):
                log.info("removing the %s engine's copy of the index", other)
                if other == "edge":
                    root = _engine_dir(self.settings.data_dir, other)
                    (root / f"{self.collection}.json").unlink(missing_ok=True)
                    shutil.rmtree(root / self.collection, ignore_errors=True)
                else:
                    backend = _open_backend(self.settings, other, self.collection)
                    try:
                        backend.drop()
                    finally:
                        backend.close()

    def vector_store(self) -> LoreVectorStore:
        if self._vector_store is None:
            retrieval = self.settings.retrieval
            self._vector_store = LoreVectorStore(
                self.backend,
                self.sparse,
                candidates=retrieval.candidates,
                rrf_k=retrieval.rrf_k,
                hnsw_ef=self.settings.index.hnsw_ef,
                max_per_doc=retrieval.max_per_doc,
                depth=retrieval.depth,
                doc_boost=retrieval.doc_boost,
                context_chunks=retrieval.context_chunks,
                fusion=retrieval.fusion,
                dense_weight=retrieval.dense_weight,
            )
        return self._vector_store

    def count_chunks(self, source: str | None = None) -> int:
        return self.backend.count({"source": source} if source else None)

    def chunk_ids(self, source: str | None = None) -> Iterator[tuple[str, str]]:
        """(chunk id, doc id) of every point, for checks and tests."""
        for point_id, payload, _ in self.backend.scroll({"source": source} if source else None, ["doc_id"]):
            yield point_id, str(payload.get("doc_id", ""))

    def delete_source_points(self, source: str) -> None:
        self.backend.delete_where("source", source)

    def delete_document(self, doc_id: str) -> None:
        self.backend.delete_where("doc_id", doc_id)

    def optimize(self) -> None:
        """After a sync: build the search index (HNSW) if enough changed. Cheap when nothing did."""
        self.backend.flush()
        self.backend.optimize()

    # -- docstores and small state ------------------------------------------

    def docstore(self, source: str) -> KVDocumentStore:
        # One namespace per source: an upsert-and-delete sync of one source must never see
        # (and delete) another source's documents.
        return KVDocumentStore(self.kv, namespace=f"{self.prefix}/docs/{source}")

    def get_state(self, collection: str, key: str) -> dict[str, Any] | None:
        return self.kv.get(key, collection=f"{self.prefix}/{collection}")

    def put_state(self, collection: str, key: str, value: dict[str, Any]) -> None:
        self.kv.put(key, value, collection=f"{self.prefix}/{collection}")

    def delete_state(self, collection: str, key: str) -> None:
        self.kv.delete(key, collection=f"{self.prefix}/{collection}")

    def forget_sources(self) -> None:
        """Forget what the docstore and state say about every configured source (the collection
        is being rebuilt or dropped)."""
        for src in self.settings.sources:
            docstore = self.docstore(src.name)
            for doc_id in list(docstore.get_all_document_hashes().values()):
                docstore.delete_document(doc_id, raise_error=False)
            for kind in ("pending", "sync", "vocabulary", "access", "calibration"):
                self.delete_state(kind, src.name)
        self.persist()

    def persist(self) -> None:
        if isinstance(self.kv, _FileKV):
            self.kv.persist()

    def close(self) -> None:
        self.persist()
        try:
            self.backend.close()
        finally:
            if self._lock:
                self._lock.release()
