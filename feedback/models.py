"""The feedback log's tables (SQLAlchemy 2.0). Changes need an Alembic revision in migrations/.

- `interactions`: one row per answer (`answer_id` unique).
- `votes`: the current vote of each (answer, user); a later vote replaces it.
- `vote_events`: every vote ever received, keyed by `vote_id`, so redelivery is a no-op.

There is no foreign key from votes to interactions: the two travel on different paths and a
vote may arrive first.

Curation (the web console's review queue; revision 0002):

- `reviews`: a reviewer's verdict on one answer (`answer_id` unique): status, the ideal answer,
  tags, and a `version` that every write checks and bumps (optimistic concurrency).
- `review_events`: every attempted write, kept: the ones that won and the ones that lost a race
  (`outcome = "conflict"`), so no reviewer's text is ever lost.
- `console_users`: who may sign in to the console, with an argon2 hash and a role.

Console sessions (revision 0003):

- `console_users.id` is never reused (AUTOINCREMENT on SQLite; a sequence on PostgreSQL), so
  nothing that names a removed user can ever name a later one.
- `console_sessions`: one row per sign-in, keyed by the SHA-256 of the random token in the
  session cookie (the token itself is never stored). Signing out revokes the row; a password
  reset, a role change or removing the user ends all of that user's rows.

Content gaps (revision 0004):

- `gap_reports`: one row per clustering run (`feedback/gaps.py`): its kind ("gaps": questions
  Lore could not answer well; "top": every question), when it ran, and its clusters as JSON, each
  with its member questions, so the console filters a stored run instead of clustering again.
Experts (revision 0005, bot/core/escalation.py):

- `escalations`: one row per answer someone asked an expert about: who was asked, why, and
  whether the answer itself was shown to them.
- `expert_answers`: replies in escalated threads written by an expert or accepted with ✅, keyed
  by `reply_id`. A reviewer's approval (`approved_by`) makes one the answer's curated answer.

Relevance judgments (revision 0006, feedback/judgments.py):

- `relevance_judgments`: a reviewer's verdict on one passage for one answer's question, keyed by
  (answer, chunk): relevant or not, for a retrieved chunk, or an "attached" passage the reviewer
  found by searching (one that should have been found). The passage is kept as judged (text,
  document version, access list), so retriever training survives re-indexing.

Answer models (revision 0007, feedback/generators.py):

- `models`: one row per fine-tuning run of the answer model (`kind = "generator"`): provider,
  base, the candidate's model id or GGUF path, data counts, figures before and after, the gate's
  verdict, and its status; the row whose status is `serving` is what every process answers with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every database (so SQLite compares it as text correctly);
    read back as an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: feedback timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


JsonColumn = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JsonColumn,
        list[Any]: JsonColumn,
    }


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (UniqueConstraint("answer_id", name="uq_interactions_answer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64))
    correlation_id: Mapped[str] = mapped_column(String(128))
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(128))
    thread: Mapped[str | None] = mapped_column(String(128))
    user_hash: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    context: Mapped[list[Any]]  # the thread turns the answer used
    answer_text: Mapped[str] = mapped_column(Text)
    abstained: Mapped[bool]
    citations: Mapped[list[Any]]
    chunks: Mapped[list[Any]]  # retrieved chunks, each with doc_id and doc_hash (its version)
    notice: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    prompt_version: Mapped[str] = mapped_column(String(64))
    retrieve_ms: Mapped[float]
    generate_ms: Mapped[float]
    total_ms: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(index=True)
    recorded_at: Mapped[datetime]


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("answer_id", "user_hash", name="uq_votes_answer_user"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64), index=True)
    user_hash: Mapped[str] = mapped_column(String(64))
    vote_id: Mapped[str] = mapped_column(String(64))  # the event this row currently reflects
    platform: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(32))
    correction: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class VoteEvent(Base):
    __tablename__ = "vote_events"
    __table_args__ = (
        UniqueConstraint("vote_id", name="uq_vote_events_vote_id"),
        Index("ix_vote_events_answer_user", "answer_id", "user_hash"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vote_id: Mapped[str] = mapped_column(String(64))
    answer_id: Mapped[str] = mapped_column(String(64))
    user_hash: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(32))
    correction: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


REVIEW_STATUSES = ("new", "approved", "edited", "rejected")


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("answer_id", name="uq_reviews_answer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # one of REVIEW_STATUSES
    ideal_answer: Mapped[str | None] = mapped_column(Text)  # the reviewer's answer (status "edited")
    tags: Mapped[list[Any]]
    reviewer: Mapped[str | None] = mapped_column(String(64))  # console username of the last write
    version: Mapped[int] = mapped_column(Integer)  # bumped by every write; writers say which they saw
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)


class ReviewEvent(Base):
    __tablename__ = "review_events"
    __table_args__ = (Index("ix_review_events_answer_id", "answer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # approve, edit, reject, tag, reopen
    outcome: Mapped[str] = mapped_column(String(16))  # "saved", or "conflict" (lost a race; kept anyway)
    status: Mapped[str] = mapped_column(String(16))  # the status this write asked for
    ideal_answer: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]]
    reviewer: Mapped[str] = mapped_column(String(64))
    base_version: Mapped[int] = mapped_column(Integer)  # the version the reviewer started from
    version: Mapped[int | None] = mapped_column(Integer)  # the version it produced (None: conflict)
    created_at: Mapped[datetime]


class ConsoleUser(Base):
    __tablename__ = "console_users"
    __table_args__ = (
        UniqueConstraint("username", name="uq_console_users_username"),
        {"sqlite_autoincrement": True},  # SQLite would otherwise hand a freed id to the next user
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string format
    role: Mapped[str] = mapped_column(String(16))  # "reviewer" or "admin"
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("console_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))  # "signed out", "password reset", …


GAP_REPORT_KINDS = ("gaps", "top")


class GapReport(Base):
    __tablename__ = "gap_reports"
    __table_args__ = (Index("ix_gap_reports_kind_finished_at", "kind", "finished_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # one of GAP_REPORT_KINDS
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    requested_by: Mapped[str | None] = mapped_column(String(64))  # "schedule", "cli", a console user
    questions: Mapped[int] = mapped_column(Integer)  # how many were clustered
    params: Mapped[dict[str, Any]]  # window, distance, min_size, embedding model
    clusters: Mapped[list[Any]]  # see feedback.gaps.cluster_report


class Escalation(Base):
    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("answer_id", name="uq_escalations_answer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(128))
    thread: Mapped[str | None] = mapped_column(String(128))
    user_hash: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    routed_by: Mapped[str] = mapped_column(String(128))
    answer_shown: Mapped[bool]
    posted_channel: Mapped[str | None] = mapped_column(String(128))
    posted_message: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(index=True)
    recorded_at: Mapped[datetime]


class ExpertAnswer(Base):
    __tablename__ = "expert_answers"
    __table_args__ = (UniqueConstraint("reply_id", name="uq_expert_answers_reply_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reply_id: Mapped[str] = mapped_column(String(255))
    answer_id: Mapped[str] = mapped_column(String(64), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(128))
    thread: Mapped[str | None] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(128))
    author_hash: Mapped[str] = mapped_column(String(64))
    from_expert: Mapped[bool]
    text: Mapped[str] = mapped_column(Text)
    accepted: Mapped[bool]
    accepted_by: Mapped[str | None] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))  # the console user who curated it
    approved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]


JUDGMENT_ORIGINS = ("retrieved", "attached")


class RelevanceJudgment(Base):
    __tablename__ = "relevance_judgments"
    __table_args__ = (UniqueConstraint("answer_id", "chunk_id", name="uq_relevance_judgments_answer_chunk"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64))
    chunk_id: Mapped[str] = mapped_column(String(255))  # the index's node id
    doc_id: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    doc_hash: Mapped[str] = mapped_column(String(128))  # the document version it was judged on
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)  # the passage as judged
    access: Mapped[list[Any]]  # who may read it, as the index said (exports leave restricted out)
    relevant: Mapped[bool]
    origin: Mapped[str] = mapped_column(String(16))  # one of JUDGMENT_ORIGINS
    reviewer: Mapped[str] = mapped_column(String(64))  # console username of the last verdict
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)


MODEL_STATUSES = ("training", "candidate", "serving", "retired", "refused", "failed", "cancelled")


class ModelVersion(Base):
    __tablename__ = "models"
    __table_args__ = (Index("ix_models_kind_status", "kind", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the run id
    kind: Mapped[str] = mapped_column(String(16))  # "generator"
    provider: Mapped[str] = mapped_column(String(16))  # "openai" or "local"
    method: Mapped[str] = mapped_column(String(16))  # the data format: "sft" or "dpo"
    base: Mapped[str] = mapped_column(Text)  # the model it was trained from (id or GGUF path)
    model: Mapped[str | None] = mapped_column(Text)  # the candidate's model id or GGUF path
    job_id: Mapped[str | None] = mapped_column(String(128))  # a hosted fine-tuning job
    examples: Mapped[dict[str, Any]]  # {"train", "held_out"}
    figures: Mapped[dict[str, Any]]  # {"before": {set: ...}, "after": {set: ...}}
    gate: Mapped[dict[str, Any]]  # {"passed", "reasons"}
    status: Mapped[str] = mapped_column(String(16))  # one of MODEL_STATUSES
    replaced: Mapped[str | None] = mapped_column(String(64))  # what it replaced when it last served
    cancel_requested: Mapped[bool]
    requested_by: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    served_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
