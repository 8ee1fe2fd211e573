""" "Ask an expert" in the feedback log: escalations, expert answers, and curating them.

Writes are idempotent like the rest of the log (`feedback.store`): an escalation is keyed by its
answer, an expert answer by its reply. Records arrive through the workers' spool in any order,
so an expert answer's row only ever gains: a later record may accept it or flag it as an
expert's, never undo either.

A reviewer approving an expert answer (`approve_expert_answer`) makes it the answer's curated
answer: the review becomes "edited" with the expert's text as the ideal answer, which is the SFT
completion and the DPO "chosen" (`feedback.datasets.build`), and `relevance_signals` hands the
question, the documents the answer cited and the expert's text to retriever tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from feedback.models import Escalation, ExpertAnswer, Interaction
from feedback.reviews import ReviewError, ReviewState, get_state, save_review
from feedback.schema import EscalationRecord, ExpertReplyRecord
from feedback.store import SessionFactory, _insert, _wrote

EXPERT_TAG = "expert"


def record_escalation(sessions: SessionFactory, record: EscalationRecord) -> bool:
    """Store one escalation. False if this answer's escalation was already stored."""
    row = record.model_dump() | {"recorded_at": datetime.now(UTC)}
    with sessions() as session, session.begin():
        stmt = _insert(session, Escalation).values(row).on_conflict_do_nothing(index_elements=["answer_id"])
        return _wrote(session.connection().execute(stmt.returning(Escalation.__table__.c.id)))


def record_expert_reply(sessions: SessionFactory, record: ExpertReplyRecord) -> bool:
    """Store an expert's reply or an accepted one. A reply already stored keeps its text and
    gains the acceptance or the expert flag this record brings. True if anything was written."""
    now = datetime.now(UTC)
    row = record.model_dump() | {"updated_at": now}
    with sessions() as session, session.begin():
        stmt = _insert(session, ExpertAnswer).values(row)
        new = stmt.excluded
        table = ExpertAnswer.__table__.c
        stmt = stmt.on_conflict_do_update(
            index_elements=["reply_id"],
            set_={
                "accepted": table.accepted | new.accepted,
                "accepted_by": func.coalesce(table.accepted_by, new.accepted_by),
                "from_expert": table.from_expert | new.from_expert,
                "updated_at": now,
            },
            where=(~table.accepted & new.accepted) | (~table.from_expert & new.from_expert),
        )
        return _wrote(session.connection().execute(stmt.returning(table.id)))


@dataclass(frozen=True)
class ExpertAnswerView:
    reply_id: str
    text: str
    from_expert: bool
    accepted: bool
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class EscalationView:
    target: str
    routed_by: str
    answer_shown: bool
    created_at: datetime


def expert_answers(sessions: SessionFactory, answer_id: str) -> list[ExpertAnswerView]:
    """The expert answers captured for one answer, oldest first."""
    with sessions() as session:
        rows = session.scalars(
            select(ExpertAnswer)
            .where(ExpertAnswer.answer_id == answer_id)
            .order_by(ExpertAnswer.created_at, ExpertAnswer.id)
        ).all()
    return [
        ExpertAnswerView(
            r.reply_id, r.text, r.from_expert, r.accepted, r.approved_by, r.approved_at, r.created_at
        )
        for r in rows
    ]


def escalation_of(sessions: SessionFactory, answer_id: str) -> EscalationView | None:
    with sessions() as session:
        row = session.scalars(select(Escalation).where(Escalation.answer_id == answer_id)).one_or_none()
    if row is None:
        return None
    return EscalationView(row.target, row.routed_by, row.answer_shown, row.created_at)


def approve_expert_answer(
    sessions: SessionFactory,
    answer_id: str,
    reply_id: str,
    *,
    reviewer: str,
    expected_version: int,
    tags: Sequence[str] = (),
) -> ReviewState:
    """Make an expert answer the curated answer of `answer_id`: the review is saved as "edited"
    with the expert's text (with the usual version check; `Conflict` if someone else saved
    first), tagged "expert", and the expert answer is marked approved."""
    with sessions() as session:
        reply = session.scalars(
            select(ExpertAnswer).where(ExpertAnswer.reply_id == reply_id, ExpertAnswer.answer_id == answer_id)
        ).one_or_none()
    if reply is None:
        raise ReviewError(f"no expert answer {reply_id!r} for {answer_id!r}")
    state = save_review(
        sessions,
        answer_id,
        action="edit",
        reviewer=reviewer,
        expected_version=expected_version,
        ideal_answer=reply.text,
        tags=[*get_state(sessions, answer_id).tags, *tags, EXPERT_TAG],
    )
    with sessions() as session, session.begin():
        row = session.scalars(select(ExpertAnswer).where(ExpertAnswer.reply_id == reply_id)).one()
        row.approved_by, row.approved_at = reviewer, datetime.now(UTC)
    return state


@dataclass(frozen=True)
class RelevanceSignal:
    """For retriever tuning: an expert-approved answer to `question`, and the documents Lore's
    answer cited (retrieved for it; the expert's answer says whether they were the right ones)."""

    answer_id: str
    question: str
    doc_ids: tuple[str, ...]
    expert_answer: str


def relevance_signals(sessions: SessionFactory) -> list[RelevanceSignal]:
    """Every approved expert answer as (question, cited doc ids, expert answer), oldest first."""
    with sessions() as session:
        rows = session.execute(
            select(Interaction, ExpertAnswer)
            .join(ExpertAnswer, ExpertAnswer.answer_id == Interaction.answer_id)
            .where(ExpertAnswer.approved_at.is_not(None))
            .order_by(ExpertAnswer.approved_at, ExpertAnswer.id)
        ).all()
    signals = []
    for interaction, reply in rows:
        cited = dict.fromkeys(str(c["doc_id"]) for c in interaction.citations or [] if c.get("doc_id"))
        signals.append(RelevanceSignal(interaction.answer_id, interaction.question, tuple(cited), reply.text))
    return signals
