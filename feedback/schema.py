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


# An auto-answer Lore kept to itself because it was unsure (bot/core/autoanswer.py): recorded so
# the question reaches the Gaps page, but nobody saw an answer. Stored as an abstention with no
# text and this notice, which is how the feedback log tells it from an answer that was posted
# (`feedback.store.posted`): the review queue, datasets, stats and the Overview leave it out.
SILENT_NOTICE = "auto-answer: not posted (Lore was unsure)"


def silent(answer: Answer) -> Answer:
    """`answer` as a silent auto-answer's record: the question and what was searched, no answer."""
    return answer.model_copy(update={"text": "", "citations": [], "abstained": True, "notice": SILENT_NOTICE})


class InteractionRecord(BaseModel):
    """One answer Lore gave. `answer.answer_id` is the idempotency key."""

    answer: Answer
    correlation_id: str
    platform: str  # "slack", "discord", "web", "cli"
    workspace: str | None = None  # Slack team / Discord guild
    channel: str | None = None
    thread: str | None = None  # the thread a channel answer was posted in; None when private
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


class EscalationRecord(BaseModel):
    """Someone clicked "Ask an expert" under an answer and Lore asked `target`. One per answer
    (`answer_id` is the idempotency key: the first click asks, later ones are told so)."""

    answer_id: str
    platform: str
    workspace: str | None = None
    channel: str | None = None
    thread: str | None = None
    user_hash: str  # who clicked (pseudonymous)
    target: str  # the configured expert target, e.g. "slack:group:S0HR", "discord:channel:1"
    routed_by: str  # "source:<name>", "channel" or "default"
    answer_shown: bool  # False: the answer was withheld from the target's audience (question and link only)
    posted_channel: str | None = None
    posted_message: str | None = None
    created_at: datetime = Field(default_factory=_now)


class ExpertReplyRecord(BaseModel):
    """A reply in an escalated thread worth keeping: written by a member of the expert target,
    or marked ✅ by the asker or an expert. `reply_id` (platform, channel, message) is the key; a
    later record for the same reply can only add (an acceptance, the expert flag), never remove."""

    reply_id: str
    answer_id: str
    platform: str
    channel: str
    thread: str | None = None
    message_id: str
    author_hash: str
    from_expert: bool
    text: str
    accepted: bool = False
    accepted_by: str | None = None  # pseudonymous id of whoever added the ✅
    created_at: datetime = Field(default_factory=_now)
