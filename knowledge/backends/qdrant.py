"""qdrant-client: local mode under `data_dir/qdrant` (pure Python), or a Qdrant server (`url=`).

The server path cannot run on the development machine (there is no server binary), so it is
the same calls as local mode, which the tests do run, with `url=` instead of `path=`; the only
server-only call is creating payload indexes (`doc_id`, `source`, `access`), which local mode
ignores; a server collection made before `access` was indexed gets that index when opened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from qdrant_client import QdrantClient
from qdrant_client.http import models as qm

from knowledge.backends import (
    DENSE_VECTOR,
    INDEXED_FIELDS,
    SPARSE_VECTOR,
    BackendLocked,
    CollectionInfo,
    Condition,
    Hit,
    IndexPoint,
    SearchRequest,
    Where,
    conditions,
    matches_nothing,
)

log = logging.getLogger(__name__)

UPSERT_BATCH = 256


class _LocalStorage:
    """One local-mode client per storage folder in a process (qdrant-client locks the folder), shared
    by the backends of its collections: a promotion builds a second collection beside the serving
    one. One backend per collection, like Edge's shards."""

    _open: ClassVar[dict[str, _LocalStorage]] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.key = str(path.resolve())
        try:
            self.client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # "Storage folder ... is already accessed by another instance"
            raise BackendLocked(str(exc)) from exc
        self.lock = threading.RLock()  # local mode is not thread-safe: one call at a time
        self.collections: set[str] = set()

    @classmethod
    def take(cls, path: Path, collection: str) -> _LocalStorage:
        with cls._guard:
            storage = cls._open.get(str(path.resolve())) or cls(path)
            if collection in storage.collections:
                raise BackendLocked(f"the local Qdrant collection {collection} in {path} is already open")
            storage.collections.add(collection)
            cls._open[storage.key] = storage
            return storage

    def give_back(self, collection: str) -> None:
        with self._guard:
            self.collections.discard(collection)
            if self.collections:
                return
            self._open.pop(self.key, None)
        with self.lock:
            self.client.close()


class QdrantBackend:
    def __init__(
        self,
        collection: str,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: int = 30,
    ) -> None:
        self.collection = collection
        self.local = url is None
        self.engine = "qdrant-local" if self.local else "qdrant"
        self._storage: _LocalStorage | None = None
        if self.local:
            assert path is not None
            self._storage = _LocalStorage.take(path, collection)
            client = self._storage.client
        else:
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
        self.client = client
        # Local mode is not thread-safe: one call at a time. A server client is.
        self._lock: threading.RLock | None = self._storage.lock if self._storage else None
        if not self.local:
            self._ensure_indexes()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.client, name)
        if self._lock is None:
            return method(*args, **kwargs)
        with self._lock:
            return method(*args, **kwargs)

    # -- the collection ----------------------------------------------------------

    def info(self) -> CollectionInfo | None:
        if not self._call("collection_exists", self.collection):
            return None
        info = self._call("get_collection", self.collection)
        params = info.config.params
        vectors = params.vectors
        if isinstance(vectors, dict):
            dim = vectors[DENSE_VECTOR].size if DENSE_VECTOR in vectors else None
        else:
            dim = vectors.size if vectors is not None else None
        return CollectionInfo(
            meta=dict(info.config.metadata or {}),
            dim=dim,
            points=int(info.points_count or 0),
            has_sparse=SPARSE_VECTOR in (params.sparse_vectors or {}),
        )

    def exists(self) -> bool:
        return bool(self._call("collection_exists", self.collection))

    def create(self, dim: int, meta: dict[str, Any]) -> None:
        self._call(
            "create_collection",
            self.collection,
            vectors_config={DENSE_VECTOR: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)},
            sparse_vectors_config={SPARSE_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            metadata=meta,
        )
        if not self.local:  # local mode ignores payload indexes (and warns)
            for key in INDEXED_FIELDS:
                self._call("create_payload_index", self.collection, key, qm.PayloadSchemaType.KEYWORD)

    def _ensure_indexes(self) -> None:
        """A server collection made before a field was indexed (`access`) gets the index now."""
        try:
            if not self._call("collection_exists", self.collection):
                return
            have = set(self._call("get_collection", self.collection).payload_schema or {})
        except Exception as exc:  # the server is down: searches will say so, clearly
            log.warning("could not check the payload indexes of %s: %s", self.collection, exc)
            return
        for key in INDEXED_FIELDS:
            if key not in have:
                self._call("create_payload_index", self.collection, key, qm.PayloadSchemaType.KEYWORD)
                log.info("indexed the payload field %s of %s", key, self.collection)

    def drop(self) -> None:
        if self._call("collection_exists", self.collection):
            self._call("delete_collection", self.collection)

    # -- points ------------------------------------------------------------------

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [
                qm.PointStruct(
                    id=p.id,
                    vector={
                        DENSE_VECTOR: list(map(float, p.dense)),
                        SPARSE_VECTOR: qm.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                    },
                    payload=p.payload,
                )
                for p in points[start : start + UPSERT_BATCH]
            ]
            self._call("upsert", self.collection, batch, wait=True)

    def delete_where(self, key: str, value: str) -> None:
        if self._call("collection_exists", self.collection):
            self._call(
                "delete",
                self.collection,
                points_selector=qm.FilterSelector(
                    filter=qm.Filter(must=[qm.FieldCondition(key=key, match=qm.MatchValue(value=value))])
                ),
                wait=True,
            )

    def set_payload(self, where: Where, values: dict[str, Any]) -> int:
        conds = conditions(where)
        if not conds or matches_nothing(conds) or not self._call("collection_exists", self.collection):
            return 0  # never the whole collection by accident
        flt = qm.Filter(must=[_condition(k, v) for k, v in conds])
        n = int(self._call("count", self.collection, count_filter=flt, exact=True).count)
        if n:
            self._call(
                "set_payload",
                self.collection,
                payload=dict(values),
                points=qm.FilterSelector(filter=flt),
                wait=True,
            )
        return n

    def count(self, where: Where | None = None, *, access: Sequence[str] | None = None) -> int:
        conds = conditions(where, access=access)
        if matches_nothing(conds) or not self._call("collection_exists", self.collection):
            return 0
        return int(self._call("count", self.collection, count_filter=_filter(conds), exact=True).count)

    def scroll(
        self,
        where: Where | None = None,
        fields: Sequence[str] = (),
        with_dense: bool = False,
        *,
        access: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any], list[float] | None]]:
        conds = conditions(where, access=access)
        if matches_nothing(conds) or not self._call("collection_exists", self.collection):
            return
        offset = None
        while True:
            points, offset = self._call(
                "scroll",
                self.collection,
                scroll_filter=_filter(conds),
                limit=1024,
                offset=offset,
                with_payload=list(fields) if fields else False,
                with_vectors=[DENSE_VECTOR] if with_dense else False,
            )
            for p in points:
                yield str(p.id), dict(p.payload or {}), _dense_of(p.vector)
            if offset is None:
                return

    def search(self, request: SearchRequest) -> list[Hit]:
        return self.search_batch([request])[0]

    def search_batch(self, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        # Only stop words, or nothing the reader may see: no match, without asking the engine.
        out: list[list[Hit] | None] = [
            [] if (r.mode == "sparse" and not r.sparse) or matches_nothing(r.conditions()) else None
            for r in requests
        ]
        todo = [(i, r) for i, r in enumerate(requests) if out[i] is None]
        if todo:
            results = self._call(
                "query_batch_points", self.collection, requests=[self._request(r) for _, r in todo]
            )
            for (i, _), res in zip(todo, results, strict=True):
                out[i] = [_hit(p) for p in res.points]
        return [hits or [] for hits in out]

    def _request(self, request: SearchRequest) -> qm.QueryRequest:
        if request.mode == "sparse":
            assert request.sparse is not None, "a sparse search needs the sparse query"
            query: Any = qm.SparseVector(indices=request.sparse.indices, values=request.sparse.values)
            using = SPARSE_VECTOR
        else:
            assert request.dense is not None, "a dense search needs the query vector"
            query, using = list(map(float, request.dense)), DENSE_VECTOR
        return qm.QueryRequest(
            query=query,
            using=using,
            filter=_filter(request.conditions()),
            # Local mode is exact search anyway (and warns about search parameters).
            params=None if self.local else qm.SearchParams(hnsw_ef=request.hnsw_ef, exact=request.exact),
            limit=request.limit,
            with_payload=request.with_payload,
            with_vector=[DENSE_VECTOR] if request.with_dense else False,
        )

    def fetch(self, ids: Sequence[str], *, with_dense: bool = False) -> list[Hit]:
        if not ids:
            return []
        records = self._call(
            "retrieve",
            self.collection,
            list(ids),
            with_payload=True,
            with_vectors=[DENSE_VECTOR] if with_dense else False,
        )
        return [Hit(str(r.id), 0.0, dict(r.payload or {}), _dense_of(r.vector)) for r in records]

    # -- lifecycle ---------------------------------------------------------------

    def optimize(self, *, force: bool = False) -> bool:
        """A server builds its HNSW in the background; local mode has none to build."""
        return False

    def flush(self) -> None:
        """Local mode writes through to its SQLite file; a server persists on its own."""

    def close(self) -> None:
        if self._storage is not None:
            storage, self._storage = self._storage, None
            storage.give_back(self.collection)
        elif not self.local:
            self._call("close")


def _hit(point: Any) -> Hit:
    return Hit(str(point.id), float(point.score), dict(point.payload or {}), _dense_of(point.vector))


def _filter(conds: Sequence[Condition]) -> qm.Filter | None:
    if not conds:
        return None
    return qm.Filter(must=[_condition(k, v) for k, v in conds])


def _condition(key: str, value: str | tuple[str, ...]) -> qm.FieldCondition:
    match: qm.MatchValue | qm.MatchAny = (
        qm.MatchValue(value=value) if isinstance(value, str) else qm.MatchAny(any=list(value))
    )
    return qm.FieldCondition(key=key, match=match)


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict) and DENSE_VECTOR in vector:
        return list(vector[DENSE_VECTOR])
    return None
