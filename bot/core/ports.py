"""The ports the conversation core talks through. Adapters implement the chat-facing ones.

`TaskClient` (recording interactions and votes, queueing syncs) is `workers.ports`' (built by
`workers.client.make_task_client`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bot.core.files import FileFetcher
from bot.core.messages import MessageRef, Reply, Target
from knowledge.access import Audience
from knowledge.answer import Answer, RetrievedChunk, Turn
from workers.ports import TaskClient

__all__ = [
    "AnswerEngine",
    "DeliveryError",
    "Directory",
    "ExpertDirectory",
    "KnowledgeBase",
    "Outbox",
    "ReplyReader",
    "StateStore",
    "Surface",
    "TaskClient",
    "ThreadReader",
    "UnsupportedReply",
]


class DeliveryError(Exception):
    """The platform refused a message (after its own retries). `retryable` is false for refusals
    such as "not in channel" that retrying cannot fix."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnsupportedReply(TypeError):
    """An outbox was asked to send a reply type it does not render (an explicit error, never a drop)."""


class Outbox(Protocol):
    """Sends replies to one platform. `max_message_len` is the longest answer text (in characters
    of the core's Markdown) that one message carries; the core splits longer answers."""

    max_message_len: int

    async def send(self, target: Target, reply: Reply) -> MessageRef: ...

    async def update(self, ref: MessageRef, reply: Reply) -> MessageRef: ...


class ThreadReader(Protocol):
    async def history(self, channel: str, thread: str, *, before: str | None = None) -> list[Turn]:
        """The thread's messages, oldest first, strictly before message `before` when given."""
        ...


@runtime_checkable
class ReplyReader(Protocol):
    """Thread readers that can also say who replied (auto-answer channels: a person's reply wins)."""

    async def repliers(self, channel: str, thread: str) -> list[str]:
        """The platform user ids of the people (no bots) who posted in `thread` after its first message."""
        ...


class AnswerEngine(Protocol):
    """Blocking: embedding and generation. The core only ever calls it from a worker thread.

    `audience`: only chunks it may read (None = unfiltered, for reviewers and tools; the core
    always passes one). `wider`: the asker's own audience, for a channel answer: `Answer.withheld`
    counts the matches it could read that `audience` may not. `sources`: channel scoping.
    `options`: `attachments`, the texts of files that came with the question (only then)."""

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        audience: Audience | None = None,
        wider: Audience | None = None,
        sources: Sequence[str] | None = None,
        **options: Any,
    ) -> Answer: ...


class KnowledgeBase(Protocol):
    """What the chat side reads from the index: `knowledge.service.Knowledge` when this process
    opens the index (index.owner = "self"), or `workers.remote.RemoteKnowledge`, which asks the
    worker that owns it (index.owner = "worker"). All blocking."""

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        audience: Audience | None = None,
        wider: Audience | None = None,
        sources: Sequence[str] | None = None,
        **options: Any,
    ) -> Answer: ...

    def is_empty(self) -> bool: ...

    def sources_status(self) -> list[dict[str, Any]]: ...

    def current_versions(self, doc_ids: Sequence[str]) -> dict[str, str | None]: ...

    def search(self, query: str, *, top_k: int = 8, audience: Audience | None = None) -> list[RetrievedChunk]:
        """The chunks nearest `query`, best first, without answering."""
        ...

    def close(self) -> None: ...


class StateStore(Protocol):
    """Small shared state with expiry: delivered-event ids, threads Lore answered in, recent
    answers. Redis when configured (several processes), else a SQLite file in data_dir (embedded)."""

    async def first_time(self, key: str, ttl: float) -> bool:
        """Atomically mark `key`; true only for the first caller within `ttl` seconds."""
        ...

    async def seen(self, key: str) -> bool: ...

    async def put(self, key: str, value: str, ttl: float) -> None: ...

    async def get(self, key: str) -> str | None: ...


class Directory(Protocol):
    """What a platform knows about people and channels beyond a message's payload, for
    permissions (knowledge/access.py). Cached by the implementation; failures raise."""

    async def principals(self, user: str) -> frozenset[str]:
        """More of who `user` is: their Slack user groups (`slack:group:S…`) and email
        (`email:…`), their Discord roles."""
        ...

    async def is_external(self, channel: str) -> bool:
        """Whether the channel is shared with another organisation (Slack Connect)."""
        ...


class ExpertDirectory(Protocol):
    """Who the experts of an escalation target are, and links to threads (bot/core/escalation.py).
    Cached by the implementation; failures raise."""

    async def is_expert(self, user: str, target: str) -> bool:
        """Whether `user` belongs to `target`: a member of the user group or role, or of the
        channel (Slack: its members; Discord: who can read it)."""
        ...

    async def permalink(self, channel: str, thread: str, workspace: str | None) -> str | None:
        """A link to thread `thread` in `channel` that the experts can open."""
        ...


@dataclass
class Surface:
    """What one adapter lends the core for a message: how to reply and how to read threads."""

    platform: str
    outbox: Outbox
    threads: ThreadReader | None = None
    allowed_channels: frozenset[str] = field(default_factory=frozenset)  # empty = every channel
    directory: Directory | None = None  # None: the payload's principals are all there is
    experts: ExpertDirectory | None = None  # None: no "Ask an expert" on this platform
    files: FileFetcher | None = None  # downloads a question's attachments (bot/core/files.py)
