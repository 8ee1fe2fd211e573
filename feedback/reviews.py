"""The review queue: reviewers turn voted answers into training data.

Every answer in the log is an item. Its review (if any) says what a reviewer decided:

- `new`: nobody has decided yet (no review row, or one that was reopened or only tagged);
- `approved`: the answer as given is good;
- `edited`: a reviewer wrote the ideal answer (approved for training in place of the original);
- `rejected`: not fit for training.

**Optimistic concurrency.** Each review row has a `version`. A reviewer's page carries the version
it was rendered from; a write is `UPDATE … SET version = version + 1 WHERE answer_id = :id AND
version = :expected` (or an insert that must not collide, for version 0). If another reviewer
wrote first, nothing is overwritten: the write raises `Conflict` with the other reviewer's state,
and the losing text is kept in `review_events` (outcome "conflict") as well as handed back to
the form, so the reviewer can merge and save again. No edit is ever lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Select, Table, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from feedback.models import (
    REVIEW_STATUSES,
    ExpertAnswer,
    Interaction,
    Review,
    ReviewEvent,
    Vote,
    VoteEvent,
)
from feedback.schema import VOTE_REASONS
from feedback.store import SessionFactory, _insert, _wrote, posted

Status = Literal["new", "approved", "edited", "rejected"]
Action = Literal["approve", "edit", "reject", "tag", "reopen"]
VoteFilter = Literal["any", "down", "up", "none", "all"]
ACTIONS: tuple[Action, ...] = ("approve", "edit", "reject", "tag", "reopen")
VOTE_FILTERS: tuple[VoteFilter, ...] = ("any", "down", "up", "none", "all")
# Expert answers (feedback/experts.py): "any" captured for the answer, or an "accepted" (✅) one.
ExpertFilter = Literal["any", "accepted"]
EXPERT_FILTERS: tuple[ExpertFilter, ...] = ("any", "accepted")
MAX_TAGS = 20
MAX_IDEAL = 20_000
_SCAN_BATCH = 200


class ReviewError(ValueError):
    """A review action that makes no sense (unknown item, empty ideal answer, bad tag)."""


@dataclass(frozen=True)
class ReviewState:
    answer_id: str
    status: Status = "new"
    ideal_answer: str | None = None
    tags: tuple[str, ...] = ()
    reviewer: str | None = None
    version: int = 0  # 0: never written
    updated_at: datetime | None = None


class Conflict(Exception):
    """Someone else saved this item since the page was loaded. `current` is what they saved;
    `attempted` is the losing write (also kept in review_events)."""

    def __init__(self, current: ReviewState, attempted: dict[str, Any]) -> None:
        who = current.reviewer or "another reviewer"
        super().__init__(
            f"{who} saved this item (now version {current.version}) after you opened it; "
            "nothing was overwritten. Their version is shown; your text is kept in the form to merge."
        )
        self.current = current
        self.attempted = attempted


# ---- the queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    vote: VoteFilter = "any"  # any: has a vote; none: has none; all: every answer
    reason: str | None = None  # a vote reason (VOTE_REASONS)
    platform: str | None = None
    source: str | None = None  # a source among the answer's retrieved chunks
    date_from: date | None = None  # answers on or after this day (UTC)
    date_to: date | None = None  # ... on or before this day
    status: Status | None = None  # None: every status
    tag: str | None = None
    expert: ExpertFilter | None = None  # answers with an expert answer (any, or an accepted one)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> QueueFilters:
        """From query parameters; unknown or empty values are ignored, not errors."""

        def pick(name: str, allowed: Sequence[str]) -> str | None:
            value = (params.get(name) or "").strip()
            return value if value in allowed else None

        def day(name: str) -> date | None:
            try:
                return date.fromisoformat((params.get(name) or "").strip())
            except ValueError:
                return None

        def text(name: str) -> str | None:
            return (params.get(name) or "").strip()[:128] or None

        expert = pick("expert", EXPERT_FILTERS)
        # Expert answers come from escalations, not votes: unless asked, don't require a vote.
        vote = pick("vote", VOTE_FILTERS) or ("all" if expert else "any")
        return cls(
            vote=vote,  # type: ignore[arg-type]
            reason=pick("reason", list(VOTE_REASONS)),
            platform=text("platform"),
            source=text("source"),
            date_from=day("from"),
            date_to=day("to"),
            status=pick("status", REVIEW_STATUSES),  # type: ignore[arg-type]
            tag=text("tag"),
            expert=expert,  # type: ignore[arg-type]
        )

    def params(self) -> dict[str, str]:
        """Back to query parameters (only what is set), for links that keep the filters."""
        out = {
            "vote": self.vote,
            "reason": self.reason,
            "platform": self.platform,
            "source": self.source,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "status": self.status,
            "tag": self.tag,
            "expert": self.expert,
        }
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class QueueRow:
    answer_id: str
    question: str
    answer_text: str
    platform: str
    created_at: datetime
    abstained: bool
    up: int
    down: int
    reasons: tuple[str, ...]
    has_correction: bool
    status: Status
    tags: tuple[str, ...]
    reviewer: str | None
    sources: tuple[str, ...]
    experts: int = 0  # expert answers captured for it


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    offset: int
    limit: int
    has_more: bool


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, tzinfo=UTC)


def _queue_query(filters: QueueFilters) -> Select[Interaction, Review]:
    stmt = select(Interaction, Review).outerjoin(Review, Review.answer_id == Interaction.answer_id)
    stmt = stmt.where(posted())  # a silent auto-answer was never an answer: nothing to review
    voted = exists().where(Vote.answer_id == Interaction.answer_id)
    if filters.vote == "any":
        stmt = stmt.where(voted)
    elif filters.vote == "none":
        stmt = stmt.where(~voted)
    elif filters.vote in ("up", "down"):
        stmt = stmt.where(exists().where(Vote.answer_id == Interaction.answer_id, Vote.value == filters.vote))
    if filters.reason:
        stmt = stmt.where(
            exists().where(Vote.answer_id == Interaction.answer_id, Vote.reason == filters.reason)
        )
    if filters.platform:
        stmt = stmt.where(Interaction.platform == filters.platform)
    if filters.date_from:
        stmt = stmt.where(Interaction.created_at >= _day_start(filters.date_from))
    if filters.date_to:
        stmt = stmt.where(Interaction.created_at < _day_start(filters.date_to + timedelta(days=1)))
    if filters.expert:
        has_expert = exists().where(ExpertAnswer.answer_id == Interaction.answer_id)
        if filters.expert == "accepted":
            has_expert = has_expert.where(ExpertAnswer.accepted.is_(True))
        stmt = stmt.where(has_expert)
    if filters.status == "new":
        stmt = stmt.where(or_(Review.id.is_(None), Review.status == "new"))
    elif filters.status:
        stmt = stmt.where(Review.status == filters.status)
    return stmt.order_by(Interaction.created_at.desc(), Interaction.id.desc())


def _python_match(filters: QueueFilters, interaction: Interaction, review: Review | None) -> bool:
    # JSON columns differ between SQLite and PostgreSQL; these two are filtered here instead.
    if filters.source and filters.source not in _sources(interaction):
        return False
    return not (filters.tag and filters.tag not in (review.tags if review else []))


def _sources(interaction: Interaction) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(c.get("source", "")) for c in interaction.chunks if c.get("source")))


def _matches(session: Session, filters: QueueFilters) -> Iterator[tuple[Interaction, Review | None]]:
    stmt = _queue_query(filters)
    offset = 0
    while True:
        batch = session.execute(stmt.limit(_SCAN_BATCH).offset(offset)).all()
        for interaction, review in batch:
            if _python_match(filters, interaction, review):
                yield interaction, review
        if len(batch) < _SCAN_BATCH:
            return
        offset += _SCAN_BATCH


def review_queue(
    sessions: SessionFactory, filters: QueueFilters, *, offset: int = 0, limit: int = 50
) -> QueuePage:
    with sessions() as session:
        found: list[tuple[Interaction, Review | None]] = []
        for i, pair in enumerate(_matches(session, filters)):
            if i < offset:
                continue
            found.append(pair)
            if len(found) > limit:
                break
        page = found[:limit]
        tallies = _vote_tallies(session, [i.answer_id for i, _ in page])
        experts = dict(
            session.execute(
                select(ExpertAnswer.answer_id, func.count())
                .where(ExpertAnswer.answer_id.in_([i.answer_id for i, _ in page]))
                .group_by(ExpertAnswer.answer_id)
            ).all()
        )
    rows = []
    for interaction, review in page:
        up, down, reasons, corrected = tallies.get(interaction.answer_id, (0, 0, (), False))
        state = _state(interaction.answer_id, review)
        rows.append(
            QueueRow(
                answer_id=interaction.answer_id,
                question=interaction.question,
                answer_text=interaction.answer_text,
                platform=interaction.platform,
                created_at=interaction.created_at,
                abstained=interaction.abstained,
                up=up,
                down=down,
                reasons=reasons,
                has_correction=corrected,
                status=state.status,
                tags=state.tags,
                reviewer=state.reviewer,
                sources=_sources(interaction),
                experts=int(experts.get(interaction.answer_id, 0)),
            )
        )
    return QueuePage(rows, offset, limit, has_more=len(found) > limit)


def queue_neighbours(
    sessions: SessionFactory, filters: QueueFilters, answer_id: str
) -> tuple[str | None, str | None]:
    """The items before and after `answer_id` in the filtered queue (for next/previous keys)."""
    previous: str | None = None
    with sessions() as session:
        it = _matches(session, filters)
        for interaction, _review in it:
            if interaction.answer_id == answer_id:
                following = next(it, None)
                return previous, following[0].answer_id if following else None
            previous = interaction.answer_id
    return None, None


def _vote_tallies(
    session: Session, answer_ids: list[str]
) -> dict[str, tuple[int, int, tuple[str, ...], bool]]:
    if not answer_ids:
        return {}
    out: dict[str, tuple[int, int, tuple[str, ...], bool]] = {}
    rows = session.execute(
        select(Vote.answer_id, Vote.value, Vote.reason, Vote.correction).where(Vote.answer_id.in_(answer_ids))
    ).all()
    for answer_id in answer_ids:
        mine = [r for r in rows if r.answer_id == answer_id]
        up = sum(1 for r in mine if r.value == "up")
        reasons = tuple(sorted({r.reason for r in mine if r.reason}))
        out[answer_id] = (up, len(mine) - up, reasons, any(r.correction for r in mine))
    return out


def facets(sessions: SessionFactory) -> dict[str, list[str]]:
    """Values the queue's filter menus offer: platforms, sources and tags seen so far."""
    with sessions() as session:
        platforms = sorted(session.scalars(select(Interaction.platform).distinct()))
        tags: set[str] = set()
        for row_tags in session.scalars(select(Review.tags)):
            tags.update(str(t) for t in row_tags or [])
        sources: set[str] = set()
        recent = select(Interaction.chunks).order_by(Interaction.created_at.desc()).limit(2000)
        for chunks in session.scalars(recent):
            sources.update(str(c.get("source")) for c in chunks or [] if c.get("source"))
    return {"platforms": platforms, "sources": sorted(sources), "tags": sorted(tags)}


# ---- one item -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoteView:
    value: str
    reason: str | None
    correction: str | None
    platform: str
    created_at: datetime
    current: bool  # the user's current vote (else an earlier one they replaced)


@dataclass(frozen=True)
class ReviewItem:
    answer_id: str
    question: str
    context: list[dict[str, Any]]  # the thread turns the answer used, oldest first
    answer_text: str
    abstained: bool
    citations: list[dict[str, Any]]
    chunks: list[dict[str, Any]]  # retrieved, each with doc_id and doc_hash (the version it came from)
    platform: str
    model: str
    notice: str | None
    total_ms: float
    created_at: datetime
    votes: list[VoteView]  # every vote received, newest first
    review: ReviewState
    history: list[dict[str, Any]] = field(default_factory=list)  # review events, newest first

    @property
    def correction(self) -> str | None:
        """The newest correction a user wrote with a 👎, if any."""
        for v in self.votes:
            if v.correction and v.value == "down":
                return v.correction
        return None

    @property
    def draft(self) -> str:
        """What the ideal-answer editor starts from: the saved ideal answer, else the user's
        correction, else the original answer."""
        return self.review.ideal_answer or self.correction or self.answer_text

    def doc_ids(self) -> list[str]:
        return list(
            dict.fromkeys(str(c["doc_id"]) for c in [*self.citations, *self.chunks] if c.get("doc_id"))
        )


def get_item(sessions: SessionFactory, answer_id: str) -> ReviewItem | None:
    with sessions() as session:
        interaction = session.scalars(
            select(Interaction).where(Interaction.answer_id == answer_id)
        ).one_or_none()
        if interaction is None:
            return None
        review = session.scalars(select(Review).where(Review.answer_id == answer_id)).one_or_none()
        current = {v.vote_id for v in session.scalars(select(Vote).where(Vote.answer_id == answer_id))}
        events = session.scalars(
            select(VoteEvent).where(VoteEvent.answer_id == answer_id).order_by(VoteEvent.created_at.desc())
        ).all()
        history = session.scalars(
            select(ReviewEvent).where(ReviewEvent.answer_id == answer_id).order_by(ReviewEvent.id.desc())
        ).all()
    votes = [
        VoteView(e.value, e.reason, e.correction, e.platform, e.created_at, e.vote_id in current)
        for e in events
    ]
    return ReviewItem(
        answer_id=interaction.answer_id,
        question=interaction.question,
        context=list(interaction.context or []),
        answer_text=interaction.answer_text,
        abstained=interaction.abstained,
        citations=list(interaction.citations or []),
        chunks=list(interaction.chunks or []),
        platform=interaction.platform,
        model=interaction.model,
        notice=interaction.notice,
        total_ms=interaction.total_ms,
        created_at=interaction.created_at,
        votes=votes,
        review=_state(answer_id, review),
        history=[_event(e) for e in history],
    )


def get_state(sessions: SessionFactory, answer_id: str) -> ReviewState:
    with sessions() as session:
        review = session.scalars(select(Review).where(Review.answer_id == answer_id)).one_or_none()
        return _state(answer_id, review)


def document_changes(
    chunks: Sequence[Mapping[str, Any]], current: Mapping[str, str | None]
) -> dict[str, str]:
    """Per cited or retrieved document: "unchanged", "changed" (its content hash differs from the
    version the answer used) or "deleted"; "unknown" when the index was not asked about it."""
    out: dict[str, str] = {}
    for chunk in chunks:
        doc_id = str(chunk.get("doc_id") or "")
        if not doc_id or doc_id in out:
            continue
        if doc_id not in current:
            out[doc_id] = "unknown"
        elif current[doc_id] is None:
            out[doc_id] = "deleted"
        else:
            out[doc_id] = "unchanged" if current[doc_id] == chunk.get("doc_hash") else "changed"
    return out


def _state(answer_id: str, review: Review | None) -> ReviewState:
    if review is None:
        return ReviewState(answer_id)
    status: Status = review.status if review.status in REVIEW_STATUSES else "new"  # type: ignore[assignment]
    return ReviewState(
        answer_id,
        status,
        review.ideal_answer,
        tuple(str(t) for t in review.tags or []),
        review.reviewer,
        review.version,
        review.updated_at,
    )


def _event(e: ReviewEvent) -> dict[str, Any]:
    return {
        "action": e.action,
        "outcome": e.outcome,
        "status": e.status,
        "ideal_answer": e.ideal_answer,
        "tags": list(e.tags or []),
        "reviewer": e.reviewer,
        "base_version": e.base_version,
        "version": e.version,
        "created_at": e.created_at,
    }


# ---- writing ------------------------------------------------------------------------------------


def clean_tags(raw: str | Sequence[str]) -> tuple[str, ...]:
    """'a, b  c' or ['a', 'b'] -> ('a', 'b', 'c'): lower-case words, de-duplicated, order kept."""
    parts = raw.replace(",", " ").split() if isinstance(raw, str) else [str(t) for t in raw]
    tags = tuple(dict.fromkeys(t.strip().lower()[:32] for t in parts if t.strip()))
    if len(tags) > MAX_TAGS:
        raise ReviewError(f"at most {MAX_TAGS} tags")
    return tags


def save_review(
    sessions: SessionFactory,
    answer_id: str,
    *,
    action: Action,
    reviewer: str,
    expected_version: int,
    ideal_answer: str | None = None,
    tags: Sequence[str] | None = None,
) -> ReviewState:
    """Apply one reviewer action if nobody else wrote since `expected_version`; else `Conflict`.

    - approve: the answer as given is good (clears any ideal answer; it stays in the history);
    - edit: `ideal_answer` replaces the original for training (status "edited");
    - reject: not fit for training;
    - tag: only the tags change;
    - reopen: back to "new".
    `tags`, when given, replace the item's tags with any action.
    """
    if action not in ACTIONS:
        raise ReviewError(f"unknown action {action!r}")
    text = (ideal_answer or "").replace("\r\n", "\n").strip()
    if action == "edit" and not text:
        raise ReviewError("write the ideal answer before saving it")
    if len(text) > MAX_IDEAL:
        raise ReviewError(f"the ideal answer is longer than {MAX_IDEAL} characters")
    new_tags = clean_tags(tags) if tags is not None else None
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        if not session.scalar(select(exists().where(Interaction.answer_id == answer_id))):
            raise ReviewError(f"no answer {answer_id!r} in the log")
        review = session.scalars(select(Review).where(Review.answer_id == answer_id)).one_or_none()
        before = _state(answer_id, review)
        status, ideal = _apply(action, before, text)
        final_tags = list(new_tags if new_tags is not None else before.tags)
        values = {
            "status": status,
            "ideal_answer": ideal,
            "tags": final_tags,
            "reviewer": reviewer,
            "updated_at": now,
        }
        conn = session.connection()
        if expected_version == 0:
            stmt = (
                _insert(session, Review)
                .values(answer_id=answer_id, version=1, created_at=now, **values)
                .on_conflict_do_nothing(index_elements=["answer_id"])
                .returning(Review.__table__.c.version)
            )
            won = _wrote(conn.execute(stmt))
        else:
            table = Review.__table__
            assert isinstance(table, Table)
            stmt = (
                table.update()
                .where(and_(table.c.answer_id == answer_id, table.c.version == expected_version))
                .values(version=table.c.version + 1, **values)
                .returning(table.c.version)
            )
            won = _wrote(conn.execute(stmt))
        attempted = {
            "action": action,
            "status": status,
            "ideal_answer": ideal if action == "edit" else (text or None),
            "tags": final_tags,
            "expected_version": expected_version,
        }
        session.add(
            ReviewEvent(
                answer_id=answer_id,
                action=action,
                outcome="saved" if won else "conflict",
                status=status,
                ideal_answer=attempted["ideal_answer"],
                tags=final_tags,
                reviewer=reviewer,
                base_version=expected_version,
                version=expected_version + 1 if won else None,
                created_at=now,
            )
        )
    if not won:
        raise Conflict(get_state(sessions, answer_id), attempted)
    return get_state(sessions, answer_id)


def _apply(action: Action, before: ReviewState, text: str) -> tuple[str, str | None]:
    if action == "approve":
        return "approved", None
    if action == "edit":
        return "edited", text
    if action == "reject":
        return "rejected", before.ideal_answer
    if action == "reopen":
        return "new", before.ideal_answer
    return before.status, before.ideal_answer  # tag


# ---- what exports read --------------------------------------------------------------------------


@dataclass(frozen=True)
class CuratedItem:
    """One answer with everything a dataset builder needs."""

    answer_id: str
    question: str
    context: list[dict[str, Any]]
    answer_text: str
    abstained: bool
    chunks: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    platform: str
    created_at: datetime
    status: Status
    ideal_answer: str | None
    tags: tuple[str, ...]
    up: int
    down: int


def curated_items(sessions: SessionFactory, *, since: datetime | None = None) -> list[CuratedItem]:
    """Every posted answer (oldest first) with its review state and current vote counts."""
    with sessions() as session:
        tallies: dict[str, tuple[int, int]] = {}
        for answer_id, value, n in session.execute(
            select(Vote.answer_id, Vote.value, func.count()).group_by(Vote.answer_id, Vote.value)
        ):
            u, d = tallies.get(answer_id, (0, 0))
            tallies[answer_id] = (u + n, d) if value == "up" else (u, d + n)
        stmt = select(Interaction, Review).outerjoin(Review, Review.answer_id == Interaction.answer_id)
        stmt = stmt.where(posted())  # silent auto-answers are no training data
        if since is not None:
            stmt = stmt.where(Interaction.created_at >= since)
        rows = session.execute(stmt.order_by(Interaction.created_at, Interaction.id)).all()
    items = []
    for interaction, review in rows:
        state = _state(interaction.answer_id, review)
        u, d = tallies.get(interaction.answer_id, (0, 0))
        items.append(
            CuratedItem(
                answer_id=interaction.answer_id,
                question=interaction.question,
                context=list(interaction.context or []),
                answer_text=interaction.answer_text,
                abstained=interaction.abstained,
                chunks=list(interaction.chunks or []),
                citations=list(interaction.citations or []),
                platform=interaction.platform,
                created_at=interaction.created_at,
                status=state.status,
                ideal_answer=state.ideal_answer,
                tags=state.tags,
                up=u,
                down=d,
            )
        )
    return items
