"""Keep one source's documents in the index: incremental, resumable, and safe to re-run.

Per batch of documents, LlamaIndex's `IngestionPipeline` (docstore + UPSERTS) skips unchanged
documents and replaces changed ones. Deletions run once at the end over everything the
source listed, because UPSERTS_AND_DELETE would treat "not in this batch" as "deleted".

Pipelining: a read-ahead thread lists, reads (HTML cleaning, PDF text) and chunks documents
while the main thread embeds and upserts the batch before, so the embedding model, which
releases the GIL, is rarely left waiting. Embedding is the bottleneck; see BENCHMARKS.md for
indexing speed as a share of the model's raw speed.

Crash safety: before a batch touches the vector store its document ids go into a pending
journal; the next sync first clears those documents completely. With deterministic chunk
ids, re-running after a crash converges to exactly what a clean index would hold.

Each indexed document's abbreviations ("paid time off (PTO)") are kept per source in the
index's state, for query expansion (`knowledge/vocabulary.py`).

Access labels (`knowledge/access.py`): every chunk's payload carries its document's access list,
from the source's rules and the document's path. The list is not part of the document's hash
nor of the embedded or prompt text, so a changed rule never re-embeds: each sync compares every
listed document's access with what the index recorded (per source, in the index's state) and
rewrites only the payload of the documents whose access changed. An index built before labels
existed has no record, so its first sync labels every document the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from llama_index.core import Document
from llama_index.core.bridge.pydantic import ConfigDict
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.schema import BaseNode, TransformComponent

from config.settings import DirectorySource, GitSource, Settings, WebsiteSource
from knowledge.access import ACCESS_KEY, AccessPolicy
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import Embedder
from knowledge.sources import Skipped, SourceUnavailable, make_loader
from knowledge.store import IndexStore
from knowledge.vocabulary import mine

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("added", "changed", "deleted", "unchanged", "chunks_embedded", "skipped", "seconds")


@dataclass
class SyncProgress:
    source: str
    phase: str = "starting"  # listing, indexing, deleting, optimizing, done, failed
    total: int | None = None
    seen: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_embedded: int = 0
    relabelled: int = 0  # unchanged documents whose access list changed (payload rewritten only)
    skipped: list[dict[str, str]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    error: str | None = None
    transient: bool = False

    @property
    def percent(self) -> float:
        if self.phase == "done":
            return 100.0
        if not self.total:
            return 0.0
        return round(min(99.0, 100.0 * self.seen / self.total), 1)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["percent"] = self.percent
        data["skipped_count"] = len(self.skipped)
        return data

    def summary(self) -> dict[str, Any]:
        """The per-source summary `lore index` prints (exactly SUMMARY_KEYS)."""
        return {
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "chunks_embedded": self.chunks_embedded,
            "skipped": list(self.skipped),
            "seconds": round(time.time() - self.started_at, 3),
        }


ProgressCallback = Callable[[SyncProgress], None]


def sync_source(
    settings: Settings,
    store: IndexStore,
    embedder: Embedder,
    source: DirectorySource | GitSource | WebsiteSource,
    *,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
) -> SyncProgress:
    """Bring `source` into the index. Never raises for source problems: see `.error`."""
    progress = SyncProgress(source=source.name)
    notify = on_progress or (lambda _p: None)
    store.ensure_collection(embedder.identity)
    docstore = store.docstore(source.name)
    if full:
        _forget_source(store, source.name)
    _finish_interrupted(store, source.name)

    loader = make_loader(source, data_dir=settings.data_dir, max_bytes=int(settings.index.max_file_mb * 1e6))
    vocabulary = _VocabularyState(store, source.name)
    policy = AccessPolicy(settings)
    access = _AccessState(store, source.name, policy, website=source.type == "website")
    progress.phase = "listing"
    notify(progress)
    reader: _ReadAhead | None = None
    try:
        progress.total = loader.estimate()
        known = {doc_id: h for h, doc_id in docstore.get_all_document_hashes().items()}
        listed: set[str] = set()
        chunker = StructuredChunker(
            chunk_size=settings.chunking.size,
            chunk_overlap=settings.chunking.overlap,
            embed_headings=settings.chunking.embed_headings,
            max_chunks=settings.index.max_chunks_per_doc,
            tokenizer=embedder.tokenizer,
        )
        pipeline = IngestionPipeline(
            transformations=[chunker, _AccessLabels(policy=policy), embedder.document_model],
            vector_store=store.vector_store(),
            docstore=docstore,
            docstore_strategy=DocstoreStrategy.UPSERTS,
            disable_cache=True,
        )
        progress.phase = "indexing"
        notify(progress)
        reader = _ReadAhead(loader.load(), chunker, known, settings.index.batch_docs)
        for batch in reader:
            docs: list[Document] = []
            for item in batch:
                progress.seen += 1
                if isinstance(item, Skipped):
                    progress.skipped.append({"path": item.path, "reason": item.reason})
                    if item.doc_id:  # a passing failure: keep what the index has (relabelled)
                        listed.add(item.doc_id)
                        access.listed(item.path)
                        if item.doc_id in known:
                            access.check(item.doc_id, item.path)
                    continue
                listed.add(item.id_)
                access.listed(str(item.metadata.get("path", "")))
                old = known.get(item.id_)
                if old is None:
                    progress.added += 1
                elif old != item.hash:
                    progress.changed += 1
                else:
                    progress.unchanged += 1
                    access.check(item.id_, str(item.metadata.get("path", "")))
                    continue
                docs.append(item)
            if docs:
                vocabulary.update(docs)
                with embedder.indexing():
                    _index_batch(store, pipeline, source.name, docs, progress, vocabulary)
                access.indexed(docs)
                _report_truncated(chunker, docs, progress)
            progress.relabelled += access.apply()
            notify(progress)
    except SourceUnavailable as exc:
        progress.phase = "failed"
        progress.error = str(exc)
        progress.transient = exc.transient
        progress.skipped.append({"path": f"(source {source.name})", "reason": str(exc)})
        log.error("sync of %s failed, index left unchanged for it: %s", source.name, exc)
        access.save()
        _record(store, progress)
        notify(progress)
        return progress
    finally:
        if reader is not None:
            reader.close()

    progress.phase = "deleting"
    notify(progress)
    for doc_id in sorted(set(known) - listed):
        store.delete_document(doc_id)  # vectors first: a crash here leaves it to retry
        docstore.delete_document(doc_id, raise_error=False)
        vocabulary.forget(doc_id)
        access.forget(doc_id)
        progress.deleted += 1
    vocabulary.save()
    access.save()
    access.warn_unmatched()
    # A payload update moves points out of an HNSW-indexed segment (the engine copies them on
    # write), so relabelled documents count as changes too: many of them need a new build.
    if progress.chunks_embedded or progress.deleted or progress.relabelled:
        progress.phase = "optimizing"
        notify(progress)
        store.optimize()
    progress.phase = "done"
    _record(store, progress)
    notify(progress)
    log.info("synced %s: %s", source.name, {k: v for k, v in progress.summary().items() if k != "skipped"})
    return progress


class _ReadAhead:
    """Lists, reads and chunks documents on a thread, a few batches ahead of the embedder.

    Yields batches of `Document | Skipped`; a changed document comes with its chunks already
    computed (held by the chunker until the pipeline asks for them). Errors raised by the
    loader (e.g. `SourceUnavailable`) are re-raised in the consuming thread.
    """

    _DONE = object()

    def __init__(
        self,
        items: Iterator[Document | Skipped],
        chunker: StructuredChunker,
        known: dict[str, str],
        batch_size: int,
        depth: int = 2,
    ) -> None:
        self._items = items
        self._chunker = chunker
        self._known = known
        self._batch_size = batch_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lore-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batch: list[Document | Skipped] = []
        # A short first batch: the model starts on it while the rest of a full one is read.
        size = max(1, self._batch_size // 8)
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                if isinstance(item, Document) and self._known.get(item.id_) != item.hash:
                    self._chunker.prepare(item)
                batch.append(item)
                if len(batch) >= size:
                    self._put(batch)
                    batch, size = [], self._batch_size
            if batch:
                self._put(batch)
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[list[Document | Skipped]]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._chunker.forget_prepared()


class _AccessLabels(TransformComponent):
    """Puts each chunk's access list in its payload, and keeps it out of the embedded text, the
    BM25 text and the prompt."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    policy: Any

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        for node in nodes:
            meta = node.metadata
            meta[ACCESS_KEY] = self.policy.document_access(
                str(meta.get("source", "")), str(meta.get("path", ""))
            )
            for keys in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
                if ACCESS_KEY not in keys:
                    keys.append(ACCESS_KEY)
        return nodes


class _AccessState:
    """The access list the index holds for each document of one source, and the documents whose
    list the rules now give differently (rewritten in the payload, batch by batch)."""

    BATCH = 512  # document ids per payload update

    def __init__(self, store: IndexStore, source: str, policy: AccessPolicy, *, website: bool) -> None:
        self._store = store
        self._source = source
        self._policy = policy
        self._website = website
        state = store.get_state("access", source) or {}
        self.docs: dict[str, list[str]] = {k: list(v) for k, v in state.get("docs", {}).items()}
        self._paths: list[str] = []
        self._todo: dict[tuple[str, ...], list[str]] = {}

    def _path(self, path: str) -> str:
        return (urlsplit(path).path or "/") if self._website and "://" in path else path

    def listed(self, path: str) -> None:
        """Every document the source listed, for the warning about rules that match none."""
        self._paths.append(self._path(path))

    def check(self, doc_id: str, path: str) -> None:
        """An unchanged document: relabel it if its access differs from the recorded one (or
        none is recorded: an index from before access labels)."""
        access = self._policy.document_access(self._source, self._path(path))
        if self.docs.get(doc_id) != access:
            self._todo.setdefault(tuple(access), []).append(doc_id)

    def indexed(self, docs: Sequence[Document]) -> None:
        """Documents just embedded, with their access in the payload (`_AccessLabels`)."""
        for doc in docs:
            self.docs[doc.id_] = self._policy.document_access(self._source, str(doc.metadata.get("path", "")))
        self.save()

    def apply(self) -> int:
        """Rewrite the access of the documents `check` found changed; returns how many."""
        done = 0
        for access, ids in self._todo.items():
            for start in range(0, len(ids), self.BATCH):
                batch = ids[start : start + self.BATCH]
                self._store.backend.set_payload({"doc_id": batch}, {ACCESS_KEY: list(access)})
                for doc_id in batch:
                    self.docs[doc_id] = list(access)
                done += len(batch)
        self._todo = {}
        if done:
            log.info(
                "%s: access changed for %d documents (payload only, nothing re-embedded)", self._source, done
            )
            self.save()
        return done

    def forget(self, doc_id: str) -> None:
        self.docs.pop(doc_id, None)

    def save(self) -> None:
        self._store.put_state("access", self._source, {"docs": self.docs})

    def warn_unmatched(self) -> None:
        for glob in self._policy.unmatched_rules(self._source, self._paths):
            log.warning(
                "%s: the access rule %r matches no document of the source (a typo?)", self._source, glob
            )


class _VocabularyState:
    """The abbreviations each document of one source defines, saved with each batch."""

    def __init__(self, store: IndexStore, source: str) -> None:
        self._store = store
        self._source = source
        state = store.get_state("vocabulary", source) or {}
        self.docs: dict[str, dict[str, str]] = dict(state.get("docs", {}))

    def update(self, docs: list[Document]) -> None:
        for doc in docs:
            pairs = mine(doc.text)
            if pairs:
                self.docs[doc.id_] = pairs
            else:
                self.docs.pop(doc.id_, None)

    def forget(self, doc_id: str) -> None:
        self.docs.pop(doc_id, None)

    def save(self) -> None:
        self._store.put_state("vocabulary", self._source, {"docs": self.docs})


def _index_batch(
    store: IndexStore,
    pipeline: IngestionPipeline,
    source: str,
    docs: list[Document],
    progress: SyncProgress,
    vocabulary: _VocabularyState,
) -> None:
    store.put_state("pending", source, {"doc_ids": [d.id_ for d in docs]})
    store.persist()
    nodes = pipeline.run(documents=docs, store_doc_text=False)
    progress.chunks_embedded += len(nodes)
    store.delete_state("pending", source)
    vocabulary.save()
    store.persist()


def _report_truncated(chunker: StructuredChunker, docs: list[Document], progress: SyncProgress) -> None:
    """A document cut to `index.max_chunks_per_doc` is indexed, and its lost end is a skip."""
    for doc in docs:
        kept = chunker.truncated(doc.id_)
        if kept is None:
            continue
        path = doc.id_ if doc.metadata.get("source_type") == "website" else str(doc.metadata.get("path"))
        reason = (
            f"too long: only its first {kept} chunks are indexed (index.max_chunks_per_doc); "
            "the rest of the document is not"
        )
        progress.skipped.append({"path": path, "reason": reason})
        log.warning("truncated %s:%s: %s", progress.source, path, reason)


def _finish_interrupted(store: IndexStore, source: str) -> None:
    pending = store.get_state("pending", source)
    if not pending:
        return
    docstore = store.docstore(source)
    ids = pending.get("doc_ids", [])
    log.warning("%s: clearing %d documents left half-indexed by an interrupted sync", source, len(ids))
    for doc_id in ids:
        store.delete_document(doc_id)
        docstore.delete_document(doc_id, raise_error=False)
    store.delete_state("pending", source)
    store.persist()


def _forget_source(store: IndexStore, source: str) -> None:
    store.delete_source_points(source)
    docstore = store.docstore(source)
    for doc_id in list(docstore.get_all_document_hashes().values()):
        docstore.delete_document(doc_id, raise_error=False)
    store.delete_state("vocabulary", source)
    store.delete_state("access", source)
    store.persist()


def _record(store: IndexStore, progress: SyncProgress) -> None:
    last = progress.summary()
    last.update(
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        error=progress.error,
        documents=len(store.docstore(progress.source).get_all_document_hashes()),
    )
    store.put_state("sync", progress.source, last)
    store.persist()
