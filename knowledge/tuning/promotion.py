"""Putting a model into service, taking it back out, and dropping collections nobody serves.

`promote`: a `full` model's collection is built by a full sync of every configured source with
the new embedder (in this process, beside the serving collection, which keeps answering), and
marked `built`; only then does the pointer move (`registry.switch_pointer`). An adapter needs
no re-index: the pointer just moves (its parent's collection is rebuilt first if it was dropped).
`rollback`: the model the serving one replaced serves again; its collection is re-indexed only
if it was already dropped. The previous model is `retired`, and its collection is dropped
`tuning.grace` after that by `drop_expired`, which the beat calls and every promotion runs.

A crash at any point leaves the serving model serving: the pointer moves last. A collection left
half-built (not `built`, not serving) is dropped by the next `drop_expired` or rebuilt from
scratch by the next promotion of the same model. Everything here runs under the tuning lock
(`knowledge/tuning/lock.py`), re-entrant, so a run that holds it can call these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from config.settings import Settings, parse_duration
from knowledge.embeddings import Embedder
from knowledge.store import IndexStore, state_file
from knowledge.sync import SyncProgress, sync_source
from knowledge.tuning import registry
from knowledge.tuning.lock import LockBusy, run_lock
from knowledge.tuning.registry import BASE, ModelRecord

log = logging.getLogger(__name__)

Progress = Callable[[SyncProgress], None]


class PromotionError(RuntimeError):
    """The model cannot serve (refused by the gate, a source failed during its re-index, ...);
    the serving model is unchanged."""


def promote(
    settings: Settings,
    model_id: str,
    progress: Progress | None = None,
    *,
    embedder: Embedder | None = None,
    force: bool = False,
) -> ModelRecord:
    """Make `model_id` serve; returns its record once the pointer has moved. Only a candidate
    that passed the gate, unless `force` (an admin's explicit choice). `embedder`: an already
    loaded embedder of the configured model, reused for an adapter on the base model."""
    with run_lock(settings):
        record = registry.load(settings, model_id)
        current = registry.serving(settings)
        if record.id == current.id:
            return record
        if record.status == "refused" and not force:
            raise PromotionError(
                f"model {model_id} was refused: {'; '.join(record.gate.reasons) or 'by the gate'}"
            )
        if record.method != "base" and not record.gate.passed and not force:
            raise PromotionError(f"model {model_id} has not passed the gate")
        drop_expired(settings)
        _ensure_built(settings, record, progress, embedder)
        return _switch(settings, record, current)


def rollback(
    settings: Settings, progress: Progress | None = None, *, embedder: Embedder | None = None
) -> ModelRecord:
    """Serve the model the serving one replaced again; returns its record."""
    with run_lock(settings):
        current = registry.serving(settings)
        if not current.replaced:
            raise PromotionError(f"model {current.id} replaced nothing: there is nothing to roll back to")
        target = registry.load(settings, current.replaced)
        _ensure_built(settings, target, progress, embedder)
        return _switch(settings, target, current)


def _switch(settings: Settings, record: ModelRecord, current: ModelRecord) -> ModelRecord:
    record.replaced = current.id  # first: a crash right after the switch can still roll back
    registry.save(settings, record)
    registry.switch_pointer(settings, record)  # the switch; the statuses follow
    now = datetime.now(UTC)
    current.status, current.retired_at = "retired", now
    registry.save(settings, current)
    record.status, record.served_at, record.retired_at, record.replaced = "serving", now, None, current.id
    registry.save(settings, record)
    log.info("model %s serves now (collection %s); %s retired", record.id, record.collection, current.id)
    return record


def _ensure_built(
    settings: Settings, record: ModelRecord, progress: Progress | None, embedder: Embedder | None
) -> None:
    """Make sure `record`'s collection is complete: kept as it is if it is (a retired model's,
    within its grace: the next scheduled sync brings it up to date once it serves), else built
    from scratch with a full sync of every source."""
    sharing = [r for r in _records(settings) if r.collection == record.collection]
    if any(r.built for r in sharing):
        return
    _drop_collection(settings, record.collection)  # a half-built one from a crash
    view = registry.view_of(settings, record)
    model = registry.embedder_for(view, embedder)
    store = IndexStore(settings, collection=view.collection)
    try:
        store.ensure_collection(model.identity)  # no sources: an empty, complete collection
        for src in settings.sources:
            result = sync_source(settings, store, model, src, full=True, on_progress=progress)
            if result.error is not None:
                raise PromotionError(
                    f"source {src.name} failed while indexing for model {record.id}: {result.error}; "
                    f"model {registry.serving_id(settings)} keeps serving"
                )
            _calibrate(settings, view, store, model, src.name)
    finally:
        store.close()
    record.built = True
    registry.save(settings, record)
    for r in sharing:
        if r.id != record.id:
            r.built = True
            registry.save(settings, r)


def _calibrate(
    settings: Settings, view: registry.ServingView, store: IndexStore, model: Embedder, source: str
) -> None:
    """Abstention fitted to the new collection, as `Knowledge.sync` does after a full sync."""
    from knowledge.calibrate import calibrate
    from knowledge.engine import CitingQueryEngine
    from knowledge.extractive import ExtractiveGenerator

    engine = CitingQueryEngine.build(
        view.settings_for(settings), store, model, ExtractiveGenerator(model.model)
    )
    result = calibrate(engine, source)
    if result is not None:
        store.put_state("calibration", source, result.as_state())
        store.persist()


def _records(settings: Settings) -> list[ModelRecord]:
    return [registry.load(settings, BASE), *registry.runs(settings)]


def _drop_collection(settings: Settings, collection: str) -> None:
    store = IndexStore(settings, collection=collection)
    try:
        store.drop_collection()
        store.forget_sources()
    finally:
        store.close()
    if collection != settings.qdrant.collection and settings.qdrant.url is None:
        state_file(settings, collection).unlink(missing_ok=True)


def drop_expired(settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Drop the collections no model serves: a retired model's once `tuning.grace` has passed, a
    never-served candidate's at once. Returns the collections dropped. Skipped (returns []) while
    another tuning run holds the lock, since its collection may be the one being built."""
    try:
        with run_lock(settings, timeout=0):
            return _drop_expired(settings, now or datetime.now(UTC))
    except LockBusy:
        return []


def _drop_expired(settings: Settings, now: datetime) -> list[str]:
    grace = parse_duration(settings.tuning.grace)
    serving = registry.serving(settings).collection
    users: dict[str, list[ModelRecord]] = {}
    for record in _records(settings):
        users.setdefault(record.collection, []).append(record)
    dropped = []
    for collection, records in users.items():
        if collection == serving:
            continue
        if not any(r.built for r in records) and not _has_collection(settings, collection):
            continue  # nothing there
        retired = [r.retired_at for r in records if r.retired_at is not None]
        if retired and max(retired) + grace > now:
            continue
        try:
            _drop_collection(settings, collection)
        except Exception as exc:  # e.g. still open in this process: next time
            log.warning("could not drop collection %s yet: %s", collection, exc)
            continue
        for r in records:
            if r.built:
                r.built = False
                registry.save(settings, r)
        dropped.append(collection)
        log.info("dropped collection %s (models %s)", collection, ", ".join(r.id for r in records))
    return dropped


def _has_collection(settings: Settings, collection: str) -> bool:
    if settings.qdrant.url is None:
        engine = settings.index.engine
        root = settings.data_dir / ("edge" if engine == "edge" else "qdrant")
        if engine == "edge":
            return (root / f"{collection}.json").exists() or (root / collection).exists()
        return (root / "collection" / collection).is_dir()
    store = IndexStore(settings, collection=collection)
    try:
        return store.exists()
    finally:
        store.close()
