"""Where the index lives: the Qdrant collection, and the key-value store beside it.

Embedded (default): Qdrant local mode under `data_dir/qdrant` and a JSON key-value file,
both owned by one process (a lock file says so clearly). Server mode (`qdrant.url`): a
Qdrant server plus Redis for the docstore, so any worker can sync any source.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.kvstore.simple_kvstore import SimpleKVStore
from llama_index.core.storage.kvstore.types import BaseKVStore
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient
from qdrant_client.http import models as qm

from config.settings import Settings
from knowledge.embeddings import EmbedIdentity

log = logging.getLogger(__name__)

DENSE_VECTOR = "text-dense"  # LlamaIndex's QdrantVectorStore default name


class IndexError_(Exception):
    """The index can't be used as configured; the message says what to do."""


class ModelMismatch(IndexError_):
    pass


class DataDirLocked(IndexError_):
    pass


class _Serialized:
    """Qdrant local mode is not thread-safe; this proxy runs one call at a time."""

    def __init__(self, client: QdrantClient) -> None:
        self._wrapped = client
        self._lock = threading.RLock()
        self._client = client._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._wrapped, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


class _DataDirLock:
    """An advisory lock so a second process gets a clear message instead of a Qdrant traceback."""

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
                "Embedded mode is single-process: stop that process, or run a Qdrant server and set "
                "LORE_QDRANT__URL (plus LORE_REDIS__URL) so several processes can share the index."
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()

    def release(self) -> None:
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


class IndexStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.collection = settings.qdrant.collection
        self.embedded = settings.qdrant.url is None
        self._lock: _DataDirLock | None = None
        if self.embedded:
            self._lock = _DataDirLock(settings.data_dir)
            path = settings.data_dir / "qdrant"
            try:
                self.client: Any = _Serialized(QdrantClient(path=str(path)))
            except RuntimeError as exc:  # Qdrant's own lock, if someone bypassed ours
                self._lock.release()
                raise DataDirLocked(
                    f"{exc}. Use a Qdrant server (LORE_QDRANT__URL) for several processes."
                ) from exc
        else:
            key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
            self.client = QdrantClient(url=settings.qdrant.url, api_key=key, timeout=settings.qdrant.timeout)
        self.kv = self._make_kv(settings)

    def _make_kv(self, settings: Settings) -> BaseKVStore:
        if not self.embedded and settings.redis.url:
            from llama_index.storage.kvstore.redis import RedisKVStore

            return RedisKVStore(redis_uri=settings.redis.url)
        if not self.embedded:
            log.warning(
                "Qdrant server without Redis: the docstore stays in %s, so only this "
                "machine can sync sources",
                settings.data_dir,
            )
        return _FileKV(settings.data_dir / "docstore.json")

    # -- the collection ------------------------------------------------------

    def collection_info(self) -> dict[str, Any] | None:
        if not self.client.collection_exists(self.collection):
            return None
        info = self.client.get_collection(self.collection)
        meta = dict(info.config.metadata or {})
        params = info.config.params.vectors
        size = params[DENSE_VECTOR].size if isinstance(params, dict) else params.size
        return {"model": meta.get("embed_model"), "dim": size, "points": info.points_count or 0}

    def check_model(self, identity: EmbedIdentity) -> None:
        info = self.collection_info()
        if info is None:
            return
        if info["model"] != identity.name or info["dim"] != identity.dim:
            raise ModelMismatch(
                f"the index was built with {info['model']} ({info['dim']} dims) but the configured "
                f"embedding model is {identity.describe()}. Mixing them would give wrong results: "
                "run `lore index --full` to rebuild the index with the new model."
            )

    def ensure_collection(self, identity: EmbedIdentity) -> None:
        self.check_model(identity)
        if self.client.collection_exists(self.collection):
            return
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE_VECTOR: qm.VectorParams(size=identity.dim, distance=qm.Distance.COSINE)},
            metadata={"embed_model": identity.name, "dim": identity.dim},
        )
        if not self.embedded:  # local mode ignores payload indexes (and warns)
            for field in ("doc_id", "source"):
                self.client.create_payload_index(self.collection, field, qm.PayloadSchemaType.KEYWORD)

    def drop_collection(self) -> None:
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)

    def vector_store(self) -> QdrantVectorStore:
        return QdrantVectorStore(collection_name=self.collection, client=self.client, batch_size=256)

    def count_chunks(self, source: str | None = None) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        flt = _source_filter(source) if source else None
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def chunk_ids(self, source: str | None = None) -> Iterator[tuple[str, str]]:
        """(chunk id, doc id) of every point, for checks and tests."""
        if not self.client.collection_exists(self.collection):
            return
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                scroll_filter=_source_filter(source) if source else None,
                limit=1024,
                offset=offset,
                with_payload=["doc_id"],
                with_vectors=False,
            )
            for p in points:
                yield str(p.id), str((p.payload or {}).get("doc_id", ""))
            if offset is None:
                return

    def delete_source_points(self, source: str) -> None:
        if self.client.collection_exists(self.collection):
            self.client.delete(
                self.collection, points_selector=qm.FilterSelector(filter=_source_filter(source))
            )

    # -- docstores and small state ------------------------------------------

    def docstore(self, source: str) -> KVDocumentStore:
        # One namespace per source: an upsert-and-delete sync of one source must never see
        # (and delete) another source's documents.
        return KVDocumentStore(self.kv, namespace=f"lore/docs/{source}")

    def get_state(self, collection: str, key: str) -> dict[str, Any] | None:
        return self.kv.get(key, collection=f"lore/{collection}")

    def put_state(self, collection: str, key: str, value: dict[str, Any]) -> None:
        self.kv.put(key, value, collection=f"lore/{collection}")

    def delete_state(self, collection: str, key: str) -> None:
        self.kv.delete(key, collection=f"lore/{collection}")

    def persist(self) -> None:
        if isinstance(self.kv, _FileKV):
            self.kv.persist()

    def close(self) -> None:
        self.persist()
        try:
            self.client.close()
        finally:
            if self._lock:
                self._lock.release()


def _source_filter(source: str | None) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key="source", match=qm.MatchValue(value=source or ""))])
