"""What the chat side hands to the feedback log: one interaction per answer, and votes.

These travel as JSON through Celery (or the in-process executor), so they are plain
pydantic models with ids that make every write idempotent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from knowledge.answer import Answer, Turn

VoteValue = Literal["up", "down"]
VoteReason = Literal["wrong", "outdated", "incomplete", "irrelevant_sources", "other"]
VOTE_REASONS: dict[str, str] = {  # value -> label shown to users
    "wrong": "Wrong",
    "outdated": "Outdated",
    "incomplete": "Incomplete",
    "irrelevant_sources": "Irrelevant sources",
    "other": "Other",
}


def _now() -> datetime:
    return datetime.now(UTC)


class InteractionRecord(BaseModel):
    """One answer Lore gave. `answer.answer_id` is the idempotency key."""

    answer: Answer
    correlation_id: str
    platform: str  # "slack", "discord", "web", "cli"
    workspace: str | None = None  # Slack team / Discord guild
    channel: str | None = None
    thread: str | None = None
    user_hash: str  # pseudonymous: feedback.identity.pseudonymize(raw user id, key)
    context: list[Turn] = Field(default_factory=list)  # the thread turns the answer used
    created_at: datetime = Field(default_factory=_now)

    @property
    def answer_id(self) -> str:
        return self.answer.answer_id


class VoteRecord(BaseModel):
    """A thumbs-up/down. `vote_id` makes a redelivered vote a no-op; a later vote by the same
    user on the same answer replaces the current one (history is kept)."""

    vote_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    answer_id: str
    user_hash: str
    platform: str
    value: VoteValue
    reason: VoteReason | None = None
    correction: str | None = None
    created_at: datetime = Field(default_factory=_now)
