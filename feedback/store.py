"""Write interactions and votes idempotently. Plain functions: Celery tasks and the in-process
executor both call these.

Every write is an `INSERT … ON CONFLICT` keyed by an id the sender chose (answer_id,
vote_id), so a task delivered twice, or by two workers at once, stores one row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedback.models import Interaction, Vote, VoteEvent
from feedback.schema import SILENT_NOTICE, InteractionRecord, VoteRecord

SessionFactory = Callable[[], Session]
votes = Vote.__table__


def _insert(session: Session, model: Any) -> Any:
    # Core inserts on the table, not ORM bulk inserts; both dialects have on_conflict_do_*.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model.__table__)
    if dialect == "sqlite":
        return sqlite.insert(model.__table__)
    raise NotImplementedError(f"feedback storage supports SQLite and PostgreSQL, not {dialect}")


def _wrote(result: Any) -> bool:
    # RETURNING says whether ON CONFLICT DO NOTHING inserted (rowcount is not reliable for
    # that across drivers: with psycopg it counts the statement, not the rows written).
    return result.first() is not None


def posted() -> ColumnElement[bool]:
    """Interactions whose answer was posted: all but the silent auto-answers (`schema.silent`)."""
    return or_(Interaction.notice.is_(None), Interaction.notice != SILENT_NOTICE)


def silent_only() -> ColumnElement[bool]:
    """The silent auto-answers: questions Lore saw in an auto-answer channel and kept quiet on."""
    return Interaction.notice == SILENT_NOTICE


def record_interaction(session_factory: SessionFactory, record: InteractionRecord) -> bool:
    """Store one answer. False if it was already stored (a redelivery)."""
    answer = record.answer
    row = {
        "answer_id": answer.answer_id,
        "correlation_id": record.correlation_id,
        "platform": record.platform,
        "workspace": record.workspace,
        "channel": record.channel,
        "thread": record.thread,
        "user_hash": record.user_hash,
        "question": answer.question,
        "context": [t.model_dump(mode="json") for t in record.context],
        "answer_text": answer.text,
        "abstained": answer.abstained,
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        "chunks": [c.model_dump(mode="json") for c in answer.chunks],
        "notice": answer.notice,
        "model": answer.model,
        "prompt_version": answer.prompt_version,
        "retrieve_ms": answer.timings.retrieve_ms,
        "generate_ms": answer.timings.generate_ms,
        "total_ms": answer.timings.total_ms,
        "created_at": record.created_at,
        "recorded_at": datetime.now(UTC),
    }
    with session_factory() as session, session.begin():
        stmt = _insert(session, Interaction).values(row).on_conflict_do_nothing(index_elements=["answer_id"])
        return _wrote(session.connection().execute(stmt.returning(Interaction.__table__.c.id)))


def record_vote(session_factory: SessionFactory, record: VoteRecord) -> bool:
    """Store a vote event and make it the current vote unless a newer one is already current.

    False if this `vote_id` was already stored (a redelivery): nothing changes. Votes may
    arrive out of order or before their interaction; both are fine.
    """
    now = datetime.now(UTC)
    fields = {
        "answer_id": record.answer_id,
        "user_hash": record.user_hash,
        "vote_id": record.vote_id,
        "platform": record.platform,
        "value": record.value,
        "reason": record.reason,
        "correction": record.correction,
        "created_at": record.created_at,
    }
    with session_factory() as session, session.begin():
        event = _insert(session, VoteEvent).values(**fields, recorded_at=now)
        conn = session.connection()
        event = event.on_conflict_do_nothing(index_elements=["vote_id"]).returning(VoteEvent.__table__.c.id)
        if not _wrote(conn.execute(event)):
            return False
        current = _insert(session, Vote).values(**fields, updated_at=now)
        newer = current.excluded
        # Replace only with a later vote (ties broken by vote_id, so every worker agrees).
        current = current.on_conflict_do_update(
            index_elements=["answer_id", "user_hash"],
            set_={k: newer[k] for k in ("vote_id", "platform", "value", "reason", "correction", "created_at")}
            | {"updated_at": now},
            where=or_(
                votes.c.created_at < newer.created_at,
                and_(votes.c.created_at == newer.created_at, votes.c.vote_id < newer.vote_id),
            ),
        )
        conn.execute(current)
        return True


def current_vote(session_factory: SessionFactory, answer_id: str, user_hash: str) -> Vote | None:
    with session_factory() as session:
        return session.scalars(
            select(Vote).where(Vote.answer_id == answer_id, Vote.user_hash == user_hash)
        ).one_or_none()
