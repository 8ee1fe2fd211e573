"""`Knowledge`: the index, the embedder and the answer engine of one process, built lazily."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from config.settings import Settings
from knowledge.abstain import thresholds_for
from knowledge.access import AccessPolicy, Audience
from knowledge.answer import Answer, RetrievedChunk, Turn
from knowledge.embeddings import Embedder
from knowledge.engine import CitingQueryEngine, make_generator
from knowledge.generate import FollowingGenerator, Generator, ServedLookup, effective_provider
from knowledge.store import IndexStore
from knowledge.summarize import ThreadSummary
from knowledge.sync import ProgressCallback, SyncProgress, sync_source
from knowledge.tuning.registry import POLL_SECONDS, ServingView, embedder_for, pointer_stamp, serving_view

log = logging.getLogger(__name__)


class Knowledge:
    """One process's view of the index. It serves the model the registry's pointer names
    (`knowledge/tuning/registry.py`), looking at the pointer at most every `POLL_SECONDS` while
    answering: on a switch it builds the new model's store, embedder and engine beside the old
    ones, then swaps them in, so a question is answered by the old model or the new one, never
    fails. The old store is closed a while later (`RETIRED_CLOSE_AFTER`), once answers that
    started on it are done. `view` pins one model (a promotion building its collection).

    `served`: which fine-tuned answer model serves (`knowledge.generate.FollowingGenerator`);
    without it, the configured `llm` answers."""

    RETIRED_CLOSE_AFTER = 120.0

    def __init__(
        self,
        settings: Settings,
        *,
        generator: Generator | None = None,
        embedder: Embedder | None = None,
        view: ServingView | None = None,
        served: ServedLookup | None = None,
    ) -> None:
        self.settings = settings
        self._generator = generator
        if generator is None and served is not None and effective_provider(settings.llm) != "extractive":
            self._generator = FollowingGenerator(
                settings.llm, lambda: make_generator(settings, self.embedder), served
            )
        self._lock = threading.RLock()
        self._switching = threading.Lock()
        self._store: IndexStore | None = None
        self._base_embedder = embedder  # share one loaded model between instances (tests, benchmarks)
        self._embedder: Embedder | None = None
        self._engine: CitingQueryEngine | None = None
        self._pinned = view is not None
        self._view: ServingView | None = view
        self._stamp: Any = None
        self._checked_at = 0.0
        self._retired: list[tuple[float, IndexStore]] = []
        self.policy = AccessPolicy(settings)

    # -- the serving model ---------------------------------------------------------

    @property
    def view(self) -> ServingView:
        """The model this instance serves now."""
        with self._lock:
            if self._view is None:
                self._stamp = pointer_stamp(self.settings)
                self._checked_at = time.monotonic()
                self._view = serving_view(self.settings)
            return self._view

    @property
    def model_settings(self) -> Settings:
        """The settings answers use: the serving model's abstention floor, unless configured."""
        return self.view.settings_for(self.settings)

    def follow(self, *, force: bool = False) -> bool:
        """Switch to the model the pointer names if it moved (checked at most every POLL_SECONDS
        unless `force`); True if this switched. A failure keeps the current model serving."""
        if self._pinned or self._view is None:
            return False
        now = time.monotonic()
        self._close_retired(now)
        if not force and now - self._checked_at < POLL_SECONDS:
            return False
        if not self._switching.acquire(blocking=force):
            return False  # another thread is switching; keep answering with the current model
        try:
            self._checked_at = now
            try:
                stamp = pointer_stamp(self.settings)
                if stamp == self._stamp:
                    return False
                view = serving_view(self.settings)
            except Exception:
                log.exception("could not read the serving model; keeping %s", self._view.model)
                return False
            if view == self._view:
                self._stamp = stamp
                return False
            try:
                store, embedder, engine = self._build(view)
            except Exception:
                log.exception("could not switch to model %s; keeping %s", view.model, self._view.model)
                return False
            with self._lock:
                old = self._store
                self._view, self._stamp = view, stamp
                self._store, self._embedder, self._engine = store, embedder, engine
                if old is not None and old is not store:
                    self._retired.append((time.monotonic(), old))
            log.info("now serving model %s (collection %s)", view.model, view.collection)
            return True
        finally:
            self._switching.release()

    def _build(self, view: ServingView) -> tuple[IndexStore, Embedder, CitingQueryEngine]:
        store = None
        with self._lock:
            if self._store is not None and self._store.collection == view.collection:
                store = self._store  # an adapter: same documents, another query map
            for n, (_when, retired) in enumerate(self._retired if store is None else ()):
                if retired.collection == view.collection:  # switching back within the grace
                    store = self._retired.pop(n)[1]
                    break
        if store is None:
            store = IndexStore(self.settings, collection=view.collection)
        try:
            embedder = embedder_for(view, self._base_embedder)
            engine = CitingQueryEngine.build(
                view.settings_for(self.settings), store, embedder, self._generator
            )
            store.ready_for(embedder.identity)  # refuse a mismatch here, not in a question
        except BaseException:
            if store is not self._store:
                store.close()
            raise
        return store, embedder, engine

    def _close_retired(self, now: float) -> None:
        with self._lock:
            due = [s for when, s in self._retired if now - when >= self.RETIRED_CLOSE_AFTER]
            self._retired = [(w, s) for w, s in self._retired if now - w < self.RETIRED_CLOSE_AFTER]
        for store in due:
            store.close()

    @property
    def store(self) -> IndexStore:
        self.follow()
        with self._lock:
            if self._store is None:
                self._store = IndexStore(self.settings, collection=self.view.collection)
            return self._store

    @property
    def embedder(self) -> Embedder:
        self.follow()
        with self._lock:
            if self._embedder is None:
                self._embedder = embedder_for(self.view, self._base_embedder)
            return self._embedder

    @property
    def configured_embedder(self) -> Embedder:
        """The configured model's embedder, whatever model serves: what a promotion builds other
        models' embedders from (`promotion.promote(embedder=...)`), loaded once per process."""
        with self._lock:
            if self._base_embedder is None:
                view = self.view
                if self._embedder is not None and not view.tuned_embedder and not view.adapters:
                    self._base_embedder = self._embedder
                else:
                    from knowledge.embeddings import build_embedder

                    self._base_embedder = build_embedder(self.settings.embedding)
            return self._base_embedder

    @property
    def engine(self) -> CitingQueryEngine:
        self.follow()
        with self._lock:
            if self._engine is None:
                self._engine = CitingQueryEngine.build(
                    self.model_settings, self.store, self.embedder, self._generator
                )
            return self._engine

    def sync(
        self, name: str, *, full: bool = False, on_progress: ProgressCallback | None = None
    ) -> SyncProgress:
        source = self.settings.source(name)
        with self._lock:  # one model's store and embedder, even if the pointer moves meanwhile
            store, embedder = self.store, self.embedder
        try:
            progress = sync_source(self.settings, store, embedder, source, full=full, on_progress=on_progress)
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
        store, retrieval = self.store, self.model_settings.retrieval
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
            retired, self._retired = self._retired, []
            for _when, store in retired:
                store.close()
            if self._store is not None:
                self._store.close()
                self._store = None
            self._engine = None

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
