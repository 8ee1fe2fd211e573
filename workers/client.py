"""The send side of Lore's background work: what `bot` may import from `workers`.

`TaskClient` is the port the chat side uses. Two implementations (built by
`make_task_client(settings)`): one sends Celery tasks by name through Redis (spooling to a
local durable outbox when Redis is down); the other runs the same plain functions
in-process on a small executor when no Redis is configured (embedded mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from config.settings import Settings
from feedback.schema import InteractionRecord, VoteRecord

if TYPE_CHECKING:
    from knowledge.service import Knowledge


@dataclass
class SyncHandle:
    """A requested sync: `joined` is true when one was already running and we attached to it."""

    task_id: str
    source: str
    joined: bool = False


@dataclass
class SyncStatus:
    """Running syncs (with live progress) and the last result of each source."""

    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> progress dict
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> last summary


class TaskClient(Protocol):
    def record_interaction(self, record: InteractionRecord) -> None:
        """Never blocks the caller for long and never loses the record."""

    def record_vote(self, record: VoteRecord) -> None:
        """Never blocks the caller for long and never loses the vote."""

    def request_sync(self, source: str, *, full: bool = False, requested_by: str | None = None) -> SyncHandle:
        """Queue a sync of one source, or join the one already running."""

    def sync_status(self) -> SyncStatus: ...

    def close(self) -> None: ...


def make_task_client(settings: Settings, *, knowledge: Knowledge | None = None) -> TaskClient:
    """Celery through Redis when `redis.url` is set, else the in-process executor.

    Pass the process's `Knowledge` in embedded mode: an embedded index has one owner per
    process, and in-process syncs must use that one. Raises nothing for a down Redis:
    records spool until it is back.
    """
    if settings.redis.url:
        from workers.sender import CeleryTaskClient

        return CeleryTaskClient(settings)
    from workers.inprocess import InProcessTaskClient

    return InProcessTaskClient(settings, knowledge=knowledge)


def read_sync_status(settings: Settings) -> SyncStatus:
    """Running syncs and last results, for a process that doesn't run them (CLI, chat commands)."""
    if settings.redis.url:
        from redis import Redis

        from workers.names import Keys
        from workers.progress import RedisBoard

        redis = Redis.from_url(settings.redis.url, socket_connect_timeout=settings.redis.connect_timeout)
        try:
            return RedisBoard(redis, Keys(settings.redis.prefix), ttl=1).snapshot()
        finally:
            redis.close()
    from workers.inprocess import STATUS_FILE
    from workers.progress import read_file_board

    return read_file_board(settings.data_dir / STATUS_FILE)
