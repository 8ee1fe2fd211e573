"""Relevance judgments: a reviewer says whether a passage answers an item's question.

These are the labels retriever tuning trusts most (`feedback/tuning.py`): "relevant" or "not
relevant" on a chunk the answer retrieved, or an *attached* passage, one the reviewer found by
searching the index that retrieval should have found (always relevant).

One judgment per (answer, chunk): a later verdict replaces the earlier one, and clearing removes
it. A judgment is a label, not prose, so nothing is lost by replacing it (unlike reviews, whose
losing text `review_events` keeps): the current verdict is the only one training should read.
The passage is stored as judged (text, document version, access list), so the label still means
the same after the document changes or the index is rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, exists, func, select

from feedback.models import Interaction, RelevanceJudgment
from feedback.reviews import ReviewError
from feedback.store import SessionFactory, _insert
from knowledge.attachments import SOURCE as ATTACHMENT_SOURCE

Origin = Literal["retrieved", "attached"]
PUBLIC = "public"


@dataclass(frozen=True)
class Passage:
    """What is judged: one chunk of the index, as it was when the reviewer saw it."""

    chunk_id: str
    doc_id: str
    path: str
    doc_hash: str
    text: str
    title: str = ""
    access: tuple[str, ...] = (PUBLIC,)

    @classmethod
    def of(cls, chunk: Mapping[str, Any]) -> Passage:
        """From a stored retrieved chunk or a search result (`RetrievedChunk.model_dump()`)."""
        return cls(
            chunk_id=str(chunk["chunk_id"]),
            doc_id=str(chunk.get("doc_id") or ""),
            path=str(chunk.get("path") or ""),
            doc_hash=str(chunk.get("doc_hash") or ""),
            text=str(chunk.get("text") or ""),
            title=str(chunk.get("title") or ""),
            access=tuple(str(a) for a in chunk.get("access") or [PUBLIC]),
        )

    @property
    def restricted(self) -> bool:
        """Readable by fewer than everyone (what `lore dataset export` leaves out by default)."""
        return list(self.access) != [PUBLIC]

    @property
    def from_attachment(self) -> bool:
        """A passage of a file attached to a question (`knowledge/attachments.py`), not of the index."""
        return self.doc_id.startswith(f"{ATTACHMENT_SOURCE}:")


@dataclass(frozen=True)
class Judgment:
    answer_id: str
    passage: Passage
    relevant: bool
    origin: Origin
    reviewer: str
    updated_at: datetime


@dataclass(frozen=True)
class JudgmentCounts:
    relevant: int = 0
    not_relevant: int = 0
    attached: int = 0  # among the relevant ones
    answers: int = 0  # answers with at least one judgment


def record_judgment(
    sessions: SessionFactory,
    answer_id: str,
    passage: Passage,
    *,
    relevant: bool,
    origin: Origin,
    reviewer: str,
) -> Judgment:
    """Store (or replace) the verdict on `passage` for `answer_id`. Attached passages are relevant
    by definition: a reviewer attaches what should have been found."""
    if origin not in ("retrieved", "attached"):
        raise ReviewError(f"unknown origin {origin!r}")
    if origin == "attached" and not relevant:
        raise ReviewError("an attached passage is one that should have been found: it is relevant")
    if not passage.chunk_id or not passage.text.strip():
        raise ReviewError("a judgment needs the passage's id and text")
    now = datetime.now(UTC)
    values = {
        "doc_id": passage.doc_id,
        "path": passage.path,
        "doc_hash": passage.doc_hash,
        "title": passage.title,
        "text": passage.text,
        "access": list(passage.access),
        "relevant": relevant,
        "origin": origin,
        "reviewer": reviewer,
        "updated_at": now,
    }
    with sessions() as session, session.begin():
        if not session.scalar(select(exists().where(Interaction.answer_id == answer_id))):
            raise ReviewError(f"no answer {answer_id!r} in the log")
        stmt = _insert(session, RelevanceJudgment).values(
            answer_id=answer_id, chunk_id=passage.chunk_id, created_at=now, **values
        )
        session.execute(stmt.on_conflict_do_update(index_elements=["answer_id", "chunk_id"], set_=values))
    return Judgment(answer_id, passage, relevant, origin, reviewer, now)


def clear_judgment(sessions: SessionFactory, answer_id: str, chunk_id: str) -> bool:
    """Forget the verdict on one passage; False if there was none."""
    with sessions() as session, session.begin():
        gone = session.execute(
            delete(RelevanceJudgment)
            .where(RelevanceJudgment.answer_id == answer_id, RelevanceJudgment.chunk_id == chunk_id)
            .returning(RelevanceJudgment.id)
        ).first()
    return gone is not None


def judgments_for(sessions: SessionFactory, answer_id: str) -> list[Judgment]:
    """One answer's judgments, in the order they were first made."""
    with sessions() as session:
        rows = session.scalars(
            select(RelevanceJudgment)
            .where(RelevanceJudgment.answer_id == answer_id)
            .order_by(RelevanceJudgment.created_at, RelevanceJudgment.id)
        ).all()
    return [_judgment(r) for r in rows]


def all_judgments(sessions: SessionFactory) -> list[tuple[str, Judgment]]:
    """(the answer's question, judgment) for every judgment of an answer still in the log."""
    with sessions() as session:
        rows = session.execute(
            select(Interaction.question, RelevanceJudgment)
            .join(Interaction, Interaction.answer_id == RelevanceJudgment.answer_id)
            .order_by(RelevanceJudgment.created_at, RelevanceJudgment.id)
        ).all()
    return [(question, _judgment(r)) for question, r in rows]


def count_judgments(sessions: SessionFactory) -> JudgmentCounts:
    j = RelevanceJudgment
    with sessions() as session:
        rows = session.execute(
            select(j.relevant, j.origin, func.count()).group_by(j.relevant, j.origin)
        ).all()
        answers = session.scalar(select(func.count(func.distinct(j.answer_id)))) or 0
    relevant = sum(n for r, _o, n in rows if r)
    attached = sum(n for r, o, n in rows if r and o == "attached")
    return JudgmentCounts(relevant, sum(n for r, _o, n in rows if not r), attached, int(answers))


def _judgment(row: RelevanceJudgment) -> Judgment:
    passage = Passage(
        chunk_id=row.chunk_id,
        doc_id=row.doc_id,
        path=row.path,
        doc_hash=row.doc_hash,
        text=row.text,
        title=row.title,
        access=tuple(str(a) for a in row.access or [PUBLIC]),
    )
    origin: Origin = "attached" if row.origin == "attached" else "retrieved"
    return Judgment(row.answer_id, passage, row.relevant, origin, row.reviewer, row.updated_at)
