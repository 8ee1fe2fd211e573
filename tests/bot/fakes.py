"""Test doubles for the core's ports, for unit tests of the core alone.

(The Slack tests use none of these: they run the real adapter, outbox and task client.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core.messages import MessageRef, Reply, Target
from knowledge.answer import Turn
from workers.ports import SyncHandle, SyncStatus


@dataclass
class Sent:
    ref: MessageRef
    replies: list[Reply]  # the first is what was sent; later ones are updates

    @property
    def current(self) -> Reply:
        return self.replies[-1]


class MemoryOutbox:
    def __init__(self, max_message_len: int = 3000) -> None:
        self.max_message_len = max_message_len
        self.sent: list[Sent] = []
        self._ids = itertools.count(1)

    async def send(self, target: Target, reply: Reply) -> MessageRef:
        ref = MessageRef(target, target.channel, str(next(self._ids)))
        self.sent.append(Sent(ref, [reply]))
        return ref

    async def update(self, ref: MessageRef, reply: Reply) -> MessageRef:
        next(s for s in self.sent if s.ref == ref).replies.append(reply)
        return ref


@dataclass
class ListThreads:
    turns: list[Turn] = field(default_factory=list)
    fail: bool = False
    asked: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def history(self, channel: str, thread: str, *, before: str | None = None) -> list[Turn]:
        self.asked.append((channel, thread, before))
        if self.fail:
            raise ConnectionError("thread API down")
        return list(self.turns)


class MemoryTasks:
    """Records what the core hands to the workers; syncs follow a script of statuses."""

    def __init__(
        self, statuses: Sequence[SyncStatus] = (), handles: dict[str, SyncHandle] | None = None
    ) -> None:
        self.interactions: list[Any] = []
        self.votes: list[Any] = []
        self.requested: list[tuple[str, str | None]] = []
        self._statuses = list(statuses)
        self._handles = handles or {}
        self.fail_records = False

    def record_interaction(self, record: Any) -> None:
        if self.fail_records:
            raise ConnectionError("broker down")
        self.interactions.append(record)

    def record_vote(self, record: Any) -> None:
        self.votes.append(record)

    def request_sync(self, source: str, *, full: bool = False, requested_by: str | None = None) -> SyncHandle:
        self.requested.append((source, requested_by))
        return self._handles.get(source) or SyncHandle(task_id=f"task-{source}", source=source)

    def sync_status(self) -> SyncStatus:
        return self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]

    def close(self) -> None:
        pass
