"""Qdrant Edge: Qdrant's Rust engine in this process (`qdrant-edge-py`), under `data_dir/edge`.

Call for call the same as `QdrantBackend`: named dense + sparse (IDF) vectors, keyword payload
indexes on `doc_id`, `source` and `access` (the filter inside every search of an audience),
and several ranked lists in one engine call (`search_batch`: hybrid search asks for the dense
and the sparse list; `LoreVectorStore` fuses them in Python).

Building the HNSW graph (`optimize()`) holds the GIL for as long as it runs: tens of seconds
to minutes at 100k chunks on two cores, which would freeze a chat bot that syncs in-process.
So a large build runs off to the side: the shard is flushed and copied, a child process
optimizes the copy, and the optimized copy replaces the live shard in one short locked swap.
Searches keep running on the live shard meanwhile (exact search on its new points, which is
still fast in Rust). Small changes need no build: segments below the indexing threshold are
searched exactly anyway. A small shard (below that threshold) is optimized in-process after
every change: that only vacuums deleted points, which still count in BM25's IDF until then.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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
# Segments smaller than this many KB of vectors stay unindexed (exact search); 384-dim float32
# vectors take 1.5 KB, so this is about 10k chunks, where exact search in Rust takes ~1 ms.
INDEXING_THRESHOLD_KB = 15_000
# Searches of a segment (or a filtered subset) smaller than this many KB of vectors are exact.
FULL_SCAN_THRESHOLD_KB = 10_000
# Changes since the last build before a new one is worth it (an HNSW build of the changed
# segments, or a vacuum of deleted points).
REBUILD_AFTER_CHANGES = 5_000
REBUILD_AFTER_SHARE = 0.10

_OPTIMIZE_CHILD = """
import sys, qdrant_edge as qe
shard = qe.EdgeShard.load(sys.argv[1])
shard.optimize()
shard.flush()
shard.close()
"""


class EdgeBackend:
    engine = "edge"

    def __init__(
        self,
        root: Path,
        collection: str,
        *,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        search_threads: int | None = None,
    ) -> None:
        self.collection = collection
        self.path = root / collection
        self._meta_path = root / f"{collection}.json"
        self._hnsw = (hnsw_m, hnsw_ef_construct)
        self._search_threads = search_threads
        self._lock = threading.RLock()
        self._shard: Any = None
        self._meta_cache: dict[str, Any] = {}
        root.mkdir(parents=True, exist_ok=True)
        self._recover_interrupted_swap()
        if self._meta_path.exists() and self.path.is_dir():
            self._meta_cache = json.loads(self._meta_path.read_text(encoding="utf-8"))
            self._shard = self._load(self.path)
            self._ensure_indexes()

    # -- opening -------------------------------------------------------------------

    def _config(self, dim: int | None = None) -> Any:
        m, ef_construct = self._hnsw
        return qe.EdgeConfig(
            vectors=(
                {DENSE_VECTOR: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
                if dim is not None
                else None
            ),
            sparse_vectors=(
                {SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
                if dim is not None
                else None
            ),
            hnsw_config=qe.HnswIndexConfig(
                m=m, ef_construct=ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
            ),
            # Deleted points still count in BM25's IDF until their segment is vacuumed, so let small
            # segments be vacuumed too (Qdrant's default waits for 1000 points).
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=INDEXING_THRESHOLD_KB, vacuum_min_vector_number=1
            ),
            max_search_threads=self._search_threads,
        )

    def _load(self, path: Path) -> Any:
        try:
            return qe.EdgeShard.load(str(path))
        except Exception as exc:  # the engine raises a bare Exception
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise BackendLocked(f"the Qdrant Edge shard in {path} is already open ({exc})") from exc
            raise

    def _recover_interrupted_swap(self) -> None:
        """Finish or undo a swap that a crash interrupted (see `optimize`)."""
        side, old = self._side_paths()
        if not self.path.exists() and (side / ".optimized").exists():
            side.rename(self.path)
        if not self.path.exists() and old.exists():
            old.rename(self.path)
        for leftover in (side, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)

    def _side_paths(self) -> tuple[Path, Path]:
        return self.path.with_name(self.path.name + ".next"), self.path.with_name(self.path.name + ".old")

    # -- the collection --------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return dict(self._meta_cache)

    def _write_meta(self, data: dict[str, Any]) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self._meta_path)
        self._meta_cache = dict(data)

    def exists(self) -> bool:
        return self._shard is not None

    def info(self) -> CollectionInfo | None:
        with self._lock:
            if self._shard is None:
                return None
            meta = self._meta()
            return CollectionInfo(
                meta=meta.get("metadata", {}),
                dim=meta.get("dim"),
                points=int(self._shard.count(qe.CountRequest(exact=True))),
                has_sparse=True,
            )

    def create(self, dim: int, meta: dict[str, Any]) -> None:
        with self._lock:
            if self._shard is not None:
                return
            if self.path.exists():  # a shard without our metadata: an interrupted create
                shutil.rmtree(self.path)
            shard = qe.EdgeShard.create(str(self.path), self._config(dim))
            for key in INDEXED_FIELDS:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            shard.flush()
            self._shard = shard
            self._write_meta({"dim": dim, "metadata": meta, "changes": 0})

    def _ensure_indexes(self) -> None:
        """A collection made before a field was indexed (`access`) gets the index on open."""
        with self._lock:
            if self._shard is None:
                return
            have = set(self._shard.info().payload_schema)
            missing = [key for key in INDEXED_FIELDS if key not in have]
            for key in missing:
                self._shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            if missing:
                self._shard.flush()
                log.info("indexed the payload fields %s of %s", ", ".join(missing), self.collection)

    def drop(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            self._meta_path.unlink(missing_ok=True)
            self._meta_cache = {}
            shutil.rmtree(self.path, ignore_errors=True)

    # -- points ----------------------------------------------------------------------

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [
                qe.Point(
                    p.id,
                    {
                        DENSE_VECTOR: list(map(float, p.dense)),
                        SPARSE_VECTOR: qe.SparseVector(p.sparse.indices, p.sparse.values),
                    },
                    p.payload,
                )
                for p in points[start : start + UPSERT_BATCH]
            ]
            with self._lock:
                self._require().update(qe.UpdateOperation.upsert_points(batch))
        self._changed(len(points))

    def delete_where(self, key: str, value: str) -> None:
        with self._lock:
            if self._shard is None:
                return
            flt = _filter([(key, value)])
            gone = int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))
            if gone:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        if gone:
            self._changed(gone)

    def set_payload(self, where: Where, values: dict[str, Any]) -> int:
        conds = conditions(where)
        if not conds or matches_nothing(conds):  # never the whole collection by accident
            return 0
        flt = _filter(conds)
        with self._lock:
            if self._shard is None:
                return 0
            n = int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))
            if n:
                self._shard.update(qe.UpdateOperation.set_payload_by_filter(flt, dict(values)))
        if n:
            self._changed(n)  # so that an HNSW build running on a copy meanwhile is not swapped in
        return n

    def count(self, where: Where | None = None, *, access: Sequence[str] | None = None) -> int:
        conds = conditions(where, access=access)
        if matches_nothing(conds):
            return 0
        with self._lock:
            if self._shard is None:
                return 0
            return int(self._shard.count(qe.CountRequest(exact=True, filter=_filter(conds))))

    def scroll(
        self,
        where: Where | None = None,
        fields: Sequence[str] = (),
        with_dense: bool = False,
        *,
        access: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any], list[float] | None]]:
        conds = conditions(where, access=access)
        if matches_nothing(conds):
            return
        offset: Any = None
        while True:
            with self._lock:
                if self._shard is None:
                    return
                records, offset = self._shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=1024,
                        filter=_filter(conds),
                        with_payload=qe.PayloadSelector.Include(list(fields)) if fields else False,
                        with_vector=[DENSE_VECTOR] if with_dense else False,
                    )
                )
            for r in records:
                yield str(r.id), dict(r.payload or {}), _dense_of(r.vector)
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
            batch = qe.QueryBatchRequest([self._request(r) for _, r in todo])
            with self._lock:
                if self._shard is None:
                    return [[] for _ in requests]
                results = self._shard.query_batch(batch)
            for (i, r), points in zip(todo, results, strict=True):
                if r.with_payload or r.with_dense:
                    out[i] = [
                        Hit(str(p.id), float(p.score), dict(p.payload or {}), _dense_of(p.vector))
                        for p in points
                    ]
                else:  # hybrid search's lists: ids and scores only, and Python is most of the cost
                    out[i] = [Hit(str(p.id), float(p.score), {}) for p in points]
        return [hits or [] for hits in out]

    def _request(self, request: SearchRequest) -> Any:
        if request.mode == "sparse":
            assert request.sparse is not None, "a sparse search needs the sparse query"
            vector: Any = qe.SparseVector(request.sparse.indices, request.sparse.values)
            query = qe.Query.Nearest(vector, using=SPARSE_VECTOR)
        else:
            assert request.dense is not None, "a dense search needs the query vector"
            query = qe.Query.Nearest(list(map(float, request.dense)), using=DENSE_VECTOR)
        return qe.QueryRequest(
            limit=request.limit,
            query=query,
            filter=_filter(request.conditions()),
            params=qe.SearchParams(hnsw_ef=request.hnsw_ef, exact=request.exact),
            with_payload=request.with_payload,
            with_vector=[DENSE_VECTOR] if request.with_dense else False,
        )

    def fetch(self, ids: Sequence[str], *, with_dense: bool = False) -> list[Hit]:
        if not ids:
            return []
        with self._lock:
            if self._shard is None:
                return []
            records = self._shard.retrieve(
                list(ids), with_payload=True, with_vector=[DENSE_VECTOR] if with_dense else False
            )
        return [Hit(str(r.id), 0.0, dict(r.payload or {}), _dense_of(r.vector)) for r in records]

    # -- lifecycle -------------------------------------------------------------------

    def _require(self) -> Any:
        if self._shard is None:
            raise RuntimeError("the collection does not exist yet: create() it first")
        return self._shard

    def _changed(self, n: int) -> None:
        with self._lock:
            if self._shard is not None:
                meta = self._meta()
                meta["changes"] = int(meta.get("changes", 0)) + n
                self._write_meta(meta)

    def flush(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()

    def optimize(self, *, force: bool = False) -> bool:
        """Build the HNSW index (and vacuum deletions) if enough changed since the last build.

        Returns whether a build ran. The build runs in a child process on a copy; see the
        module docstring for why.
        """
        with self._lock:
            if self._shard is None:
                return False
            meta = self._meta()
            points = int(self._shard.count(qe.CountRequest(exact=True)))
            changes = int(meta.get("changes", 0))
            if changes == 0 and not force:
                return False
            vector_kb = int(meta.get("dim", 384)) * 4 / 1024
            if points * vector_kb < INDEXING_THRESHOLD_KB:  # too small to index: vacuum in-process, quickly
                self._shard.optimize()
                meta["changes"] = 0
                self._write_meta(meta)
                return True
            if not force and changes < max(REBUILD_AFTER_CHANGES, REBUILD_AFTER_SHARE * points):
                return False
            self._shard.flush()
            side, old = self._side_paths()
            shutil.rmtree(side, ignore_errors=True)
            generation = changes
        # Copy outside the lock: searches go on, and the only writer (the sync) is the caller.
        started = time.perf_counter()
        shutil.copytree(self.path, side, ignore=shutil.ignore_patterns(".lock"))
        child = subprocess.run(  # noqa: S603 - our own interpreter running our own fixed script
            [sys.executable, "-c", _OPTIMIZE_CHILD, str(side)], capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            shutil.rmtree(side, ignore_errors=True)
            log.error("building the HNSW index failed (exact search until the next sync): %s", child.stderr)
            return False
        (side / ".optimized").touch()
        with self._lock:
            if int(self._meta().get("changes", 0)) != generation:  # written to meanwhile: keep live data
                shutil.rmtree(side, ignore_errors=True)
                return False
            self._shard.close()
            self.path.rename(old)
            side.rename(self.path)
            (self.path / ".optimized").unlink()
            self._shard = self._load(self.path)
            meta["changes"] = 0
            self._write_meta(meta)
        shutil.rmtree(old, ignore_errors=True)
        log.info("built the HNSW index of %d chunks in %.1f s", points, time.perf_counter() - started)
        return True

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None


def _filter(conds: Sequence[Condition]) -> Any:
    if not conds:
        return None
    return qe.Filter(
        must=[
            qe.FieldCondition(k, match=qe.MatchValue(v) if isinstance(v, str) else qe.MatchAny(list(v)))
            for k, v in conds
        ]
    )


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict) and DENSE_VECTOR in vector:
        dense = vector[DENSE_VECTOR]
        return dense if type(dense) is list else list(dense)  # the engine builds a new list each time
    return None
