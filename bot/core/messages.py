"""What flows through the conversation core: one neutral incoming message, and the replies.

Adapters translate their platform's payloads into `IncomingMessage` (pure functions, tested on
recorded payloads) and render `Reply` values back; the core never sees a platform payload except
through `raw`, which it only logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from knowledge.answer import Answer


@dataclass(frozen=True)
class Attachment:
    """A file that came with a message, as its payload describes it (not downloaded: the
    adapter's `FileFetcher` gets it from `url`, with the platform's credentials)."""

    name: str
    size: int  # bytes, as the platform says
    url: str
    mimetype: str = ""


@dataclass(frozen=True)
class IncomingMessage:
    platform: str  # "slack", "discord", "web"
    channel: str
    message_id: str  # unique within the channel (Slack ts, Discord snowflake)
    author: str  # the platform's raw user id; pseudonymised before anything is recorded
    text: str  # with the bot's own mention removed
    workspace: str | None = None  # Slack team, Discord guild
    thread: str | None = None  # the thread the message was posted in; None at the top level
    reply_thread: str | None = None  # where an answer goes (Slack: the thread, or a new one under it)
    reply_to: str | None = None  # answer as an inline reply to this message (Discord's reply mode)
    author_is_bot: bool = False  # any bot, Lore included
    is_direct: bool = False  # a DM with Lore
    mentions_bot: bool = False
    is_edit: bool = False
    delivery_id: str | None = None  # the platform's id for this delivery (Slack event_id), for de-duplication
    # Who the author is, as far as the payload tells (knowledge/access.py): "slack:U…",
    # "discord:<id>", "discord:role:<id>", "web:alice". A `Directory` may add more.
    principals: frozenset[str] = frozenset()
    # An admin's "view as" in the web console: answer as this principal would be answered.
    view_as: str | None = None
    # Whether the payload says the channel is shared with another organisation (Slack's
    # `is_ext_shared_channel`); None when it does not say. The `Directory` is asked as well.
    shared_channel: bool | None = None
    files: tuple[Attachment, ...] = ()  # attachments and images (bot.core.files reads them)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Ignored:
    """A payload an adapter translated to nothing, and why (logged at debug level)."""

    reason: str


@dataclass(frozen=True)
class Target:
    """Where a reply goes.

    `user` is who it is for: with `ephemeral` only they see it; without, it is the fallback
    recipient (their DM) when the channel refuses the bot. `interaction` is an opaque handle for
    answering a command in place (Slack's response_url, Discord's interaction token). `reply_to`
    is the message being answered, for platforms that show inline replies (others ignore it).
    """

    channel: str
    thread: str | None = None
    user: str | None = None
    ephemeral: bool = False
    interaction: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class MessageRef:
    """A sent message, as `Outbox.update` needs it (the channel may differ from the target's)."""

    target: Target
    channel: str
    id: str  # Slack ts, Discord message id; "" when the platform gives none (Slack response_url)


# ---- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    text: str = "Searching the docs…"


@dataclass(frozen=True)
class AnswerReply:
    """One message's worth of an answer. Long answers are split by the core into `parts`; the
    last part carries the sources and the feedback buttons."""

    answer: Answer
    text: str  # this part's Markdown
    part: int = 1
    parts: int = 1
    shareable: bool = False  # offer "Share in channel" (an ephemeral /ask answer)
    shared_by: str | None = None  # a platform user id, when someone shared it to the channel
    # offer "Answer privately": a channel answer that left out matches the asker could read
    answer_privately: bool = False
    ask_expert: bool = False  # offer "Ask an expert" (escalation is configured for this platform)

    @property
    def is_last(self) -> bool:
        return self.part == self.parts


@dataclass(frozen=True)
class ErrorReply:
    correlation_id: str
    text: str = "Sorry, something went wrong while answering."


@dataclass(frozen=True)
class Notice:
    """Short plain text: a refusal, a thank-you, a rate-limit message, /reindex progress."""

    text: str


@dataclass(frozen=True)
class ExpertRequest:
    """Lore asking experts about a question (bot/core/escalation.py), posted where they are.

    `target` is the configured expert target (`slack:group:S…`, `discord:role:<id>`, a channel):
    adapters render it as the platform's own mention, never from text. `answer` is None when
    the audience where this is posted may not read every passage of Lore's answer: then only
    the question and the link go. `asker` is a platform user id."""

    target: str
    question: str
    asker: str
    answer: Answer | None = None
    withheld: bool = False  # the answer exists but is not shown here
    link: str | None = None  # the original thread


@dataclass(frozen=True)
class ExpertsAsked:
    """Tells the asker, privately, whom Lore asked (the target rendered as a safe mention)."""

    target: str
    already: bool = False  # someone had already asked experts about this answer


@dataclass(frozen=True)
class SummaryReply:
    """A thread's summary: the core's Markdown, with links to the key messages. Its text quotes
    people's messages, so adapters render it with mentions inert, like an answer's."""

    text: str


Reply = Progress | AnswerReply | ErrorReply | Notice | ExpertRequest | ExpertsAsked | SummaryReply
