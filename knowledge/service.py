"""`Knowledge`: the index, the embedder and the answer engine of one process, built lazily."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from config.settings import Settings
from knowledge.abstain import thresholds_for
from knowledge.access import AccessPolicy, Audience
from knowledge.answer import Answer, RetrievedChunk, Turn
from knowledge.embeddings import Embedder, build_embedder
from knowledge.engine import CitingQueryEngine
from knowledge.generate import Generator
from knowledge.store import IndexStore
from knowledge.summarize import ThreadSummary
from knowledge.sync import ProgressCallback, SyncProgress, sync_source

log = logging.getLogger(__name__)


class Knowledge:
    def __init__(
        self, settings: Settings, *, generator: Generator | None = None, embedder: Embedder | None = None
    ) -> None:
        self.settings = settings
        self._generator = generator
        self._lock = threading.RLock()
        self._store: IndexStore | None = None
        self._embedder = embedder  # share one loaded model between instances (tests, benchmarks)
        self._engine: CitingQueryEngine | None = None
        self.policy = AccessPolicy(settings)

    @property
    def store(self) -> IndexStore:
        with self._lock:
            if self._store is None:
                self._store = IndexStore(self.settings)
            return self._store

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = build_embedder(self.settings.embedding)
            return self._embedder

    @property
    def engine(self) -> CitingQueryEngine:
        with self._lock:
            if self._engine is None:
                self._engine = CitingQueryEngine.build(
                    self.settings, self.store, self.embedder, self._generator
                )
            return self._engine

    def sync(
        self, name: str, *, full: bool = False, on_progress: ProgressCallback | None = None
    ) -> SyncProgress:
        source = self.settings.source(name)
        try:
            progress = sync_source(
                self.settings, self.store, self.embedder, source, full=full, on_progress=on_progress
            )
        finally:
            with self._lock:
                if self._engine is not None:
                    self._engine.refresh()
        if progress.error is None and self._needs_calibration(name, progress, full):
            self.calibrate(name)
        return progress

    def _needs_calibration(self, name: str, progress: SyncProgress, full: bool) -> bool:
        """After a full sync, a first one, or one that changed a fifth of the documents."""
        if full:
            return True
        touched = progress.added + progress.changed + progress.deleted
        if not touched:
            return False
        if self.store.get_state("calibration", name) is None:
            return True
        return touched >= 0.2 * (touched + progress.unchanged)

    def calibrate(self, name: str) -> dict[str, Any] | None:
        """Fit abstention to source `name`'s own documents (`knowledge/calibrate.py`) and keep
        the result in the index's state; a corpus too small to calibrate keeps the defaults."""
        from knowledge.calibrate import calibrate

        store = self.store
        result = calibrate(self.engine, name)
        if result is None:
            store.delete_state("calibration", name)
        else:
            store.put_state("calibration", name, result.as_state())
        store.persist()
        self.engine.refresh()
        return result.as_state() if result else None

    def rebuild(self) -> None:
        """Drop the whole index (every source) so it can be rebuilt, e.g. with a new model."""
        store = self.store
        store.drop_collection()
        for src in self.settings.sources:
            docstore = store.docstore(src.name)
            for doc_id in list(docstore.get_all_document_hashes().values()):
                docstore.delete_document(doc_id, raise_error=False)
            store.delete_state("pending", src.name)
            store.delete_state("sync", src.name)
            store.delete_state("vocabulary", src.name)
            store.delete_state("access", src.name)
            store.delete_state("calibration", src.name)
        store.ensure_collection(self.embedder.identity)
        store.persist()

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        audience: Audience | None = None,
        wider: Audience | None = None,
        sources: Sequence[str] | None = None,
        **options: Any,
    ) -> Answer:
        """The answer for `audience` (None: unfiltered, for reviewers, evals and admin tools) from
        `sources` (None: all); `wider` is the asker's own audience when answering a channel
        (`knowledge/access.py`, `CitingQueryEngine.answer`)."""
        return self.engine.answer(
            question, history, audience=audience, wider=wider, sources=sources, **options
        )

    def summarize(self, texts: Sequence[str], *, key_count: int = 3) -> ThreadSummary:
        """A chat thread's summary (`knowledge/summarize.py`): the language model writes it when
        one is configured (falling back like answers do), else the key messages by centrality."""
        from knowledge.generate import LLMUnavailable
        from knowledge.summarize import summarize

        engine = self.engine
        model = engine.generator if hasattr(engine.generator, "chat") else None
        embed = self.embedder.query_model
        try:
            return summarize(texts, embed, model=model, key_count=key_count)
        except LLMUnavailable as exc:
            if model is None or not self.settings.llm.fallback_to_extractive:
                raise
            log.warning("LLM failed (%s); summarizing extractively", exc)
            return summarize(texts, embed, key_count=key_count)

    def search(self, query: str, *, top_k: int = 8, audience: Audience | None = None) -> list[RetrievedChunk]:
        """The chunks nearest `query`, best first, without answering (e.g. the documents nearest a
        cluster of questions on the console's Gaps page). `audience` None: unfiltered."""
        return self.engine.search(query, top_k=top_k, audience=audience)

    def visible_documents(self, audience: Audience) -> dict[str, list[str]]:
        """Each source's documents (paths) that `audience` may read, as the engine filters them."""
        seen: dict[str, set[str]] = {src.name: set() for src in self.settings.sources}
        for _id, payload, _dense in self.store.backend.scroll(
            None, ["source", "path"], access=sorted(audience.grants)
        ):
            seen.setdefault(str(payload.get("source", "")), set()).add(str(payload.get("path", "")))
        return {name: sorted(paths) for name, paths in seen.items()}

    def is_empty(self) -> bool:
        return self.store.count_chunks() == 0

    def sources_status(self) -> list[dict[str, Any]]:
        store, retrieval = self.store, self.settings.retrieval
        rows = []
        for src in self.settings.sources:
            last = store.get_state("sync", src.name) or {}
            calibration = store.get_state("calibration", src.name)
            chunks = store.count_chunks(src.name)
            rows.append(
                {
                    "name": src.name,
                    "type": src.type,
                    "documents": len(store.docstore(src.name).get_all_document_hashes()),
                    "chunks": chunks,
                    "last_sync": last.get("finished_at"),
                    "last_error": last.get("error"),
                    "last_result": {k: v for k, v in last.items() if k not in ("finished_at", "error")}
                    or None,
                    "abstention": thresholds_for(
                        retrieval.abstain_below,
                        retrieval.abstain_if_missing_below,
                        calibration,
                        retrieval.abstain_calibrated,
                    ).as_dict(),
                    "calibration": calibration,
                    "access": self.policy.summary(src.name),
                    # Indexed before permissions: no chunk has an access list until the next sync,
                    # so every filtered search (every chat answer) leaves the source out.
                    "unlabelled": bool(chunks) and store.get_state("access", src.name) is None,
                }
            )
        return rows

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def current_versions(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        """Each document's current content hash in the index (None if it is gone), so a reviewer
        can see whether a document has changed since an answer cited it."""
        versions: dict[str, str | None] = {}
        for doc_id in dict.fromkeys(doc_ids):
            versions[doc_id] = None
            for _point, payload, _dense in self.store.backend.scroll({"doc_id": doc_id}, ["content_hash"]):
                if payload.get("content_hash"):
                    versions[doc_id] = str(payload["content_hash"])
                    break
        return versions
