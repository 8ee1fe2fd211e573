"""Keep one source's documents in the index: incremental, resumable, and safe to re-run.

Per batch of documents, LlamaIndex's `IngestionPipeline` (docstore + UPSERTS) skips unchanged
documents and replaces changed ones. Deletions run once at the end over everything the
source listed, because UPSERTS_AND_DELETE would treat "not in this batch" as "deleted".

Crash safety: before a batch touches the vector store its document ids go into a pending
journal; the next sync first clears those documents completely. With deterministic chunk
ids, re-running after a crash converges to exactly what a clean index would hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from llama_index.core import Document
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline

from config.settings import DirectorySource, GitSource, Settings, WebsiteSource
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import Embedder
from knowledge.sources import Skipped, SourceUnavailable, make_loader
from knowledge.store import IndexStore

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("added", "changed", "deleted", "unchanged", "chunks_embedded", "skipped", "seconds")


@dataclass
class SyncProgress:
    source: str
    phase: str = "starting"  # listing, indexing, deleting, done, failed
    total: int | None = None
    seen: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_embedded: int = 0
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
    progress.phase = "listing"
    notify(progress)
    try:
        progress.total = loader.estimate()
        known = {doc_id: h for h, doc_id in docstore.get_all_document_hashes().items()}
        listed: set[str] = set()
        pipeline = IngestionPipeline(
            transformations=[
                StructuredChunker(
                    chunk_size=settings.chunking.size,
                    chunk_overlap=settings.chunking.overlap,
                    embed_headings=settings.chunking.embed_headings,
                    tokenizer=embedder.tokenizer,
                ),
                embedder.model,
            ],
            vector_store=store.vector_store(),
            docstore=docstore,
            docstore_strategy=DocstoreStrategy.UPSERTS,
            disable_cache=True,
        )
        progress.phase = "indexing"
        notify(progress)
        for batch in _batched(loader.load(), settings.index.batch_docs):
            docs: list[Document] = []
            for item in batch:
                progress.seen += 1
                if isinstance(item, Skipped):
                    progress.skipped.append({"path": item.path, "reason": item.reason})
                    if item.doc_id:  # a passing failure: keep what the index has
                        listed.add(item.doc_id)
                    continue
                listed.add(item.id_)
                old = known.get(item.id_)
                if old is None:
                    progress.added += 1
                elif old != item.hash:
                    progress.changed += 1
                else:
                    progress.unchanged += 1
                    continue
                docs.append(item)
            if docs:
                with embedder.indexing():
                    _index_batch(store, pipeline, source.name, docs, progress)
            notify(progress)
    except SourceUnavailable as exc:
        progress.phase = "failed"
        progress.error = str(exc)
        progress.transient = exc.transient
        progress.skipped.append({"path": f"(source {source.name})", "reason": str(exc)})
        log.error("sync of %s failed, index left unchanged for it: %s", source.name, exc)
        _record(store, progress)
        notify(progress)
        return progress

    progress.phase = "deleting"
    notify(progress)
    for doc_id in sorted(set(known) - listed):
        store.vector_store().delete(doc_id)  # vectors first: a crash here leaves it to retry
        docstore.delete_document(doc_id, raise_error=False)
        progress.deleted += 1
    progress.phase = "done"
    _record(store, progress)
    notify(progress)
    log.info("synced %s: %s", source.name, {k: v for k, v in progress.summary().items() if k != "skipped"})
    return progress


def _index_batch(
    store: IndexStore, pipeline: IngestionPipeline, source: str, docs: list[Document], progress: SyncProgress
) -> None:
    store.put_state("pending", source, {"doc_ids": [d.id_ for d in docs]})
    store.persist()
    nodes = pipeline.run(documents=docs, store_doc_text=False)
    progress.chunks_embedded += len(nodes)
    store.delete_state("pending", source)
    store.persist()


def _finish_interrupted(store: IndexStore, source: str) -> None:
    pending = store.get_state("pending", source)
    if not pending:
        return
    docstore = store.docstore(source)
    vector_store = store.vector_store()
    ids = pending.get("doc_ids", [])
    log.warning("%s: clearing %d documents left half-indexed by an interrupted sync", source, len(ids))
    for doc_id in ids:
        vector_store.delete(doc_id)
        docstore.delete_document(doc_id, raise_error=False)
    store.delete_state("pending", source)
    store.persist()


def _forget_source(store: IndexStore, source: str) -> None:
    store.delete_source_points(source)
    docstore = store.docstore(source)
    for doc_id in list(docstore.get_all_document_hashes().values()):
        docstore.delete_document(doc_id, raise_error=False)
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


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
