"""Task names, queues and Redis key names: constants the senders and the workers share.

`bot` may import this module (and `workers.client`); nothing here imports Celery.
"""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    INGEST = "ingest"  # syncs: heavy, low concurrency (one process owns an embedded index)
    FEEDBACK = "feedback"  # light: interaction and vote writes, and the sync dispatcher


class TaskName(StrEnum):
    SYNC_SOURCE = "lore.sync_source"
    SYNC_ALL = "lore.sync_all"
    RECORD_INTERACTION = "lore.record_interaction"
    RECORD_VOTE = "lore.record_vote"


QUEUE_OF: dict[TaskName, Queue] = {
    TaskName.SYNC_SOURCE: Queue.INGEST,
    TaskName.SYNC_ALL: Queue.FEEDBACK,
    TaskName.RECORD_INTERACTION: Queue.FEEDBACK,
    TaskName.RECORD_VOTE: Queue.FEEDBACK,
}


class Keys:
    """Lore's own Redis keys, under the configured prefix (`redis.prefix`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def lock(self, source: str) -> str:  # task id of the running sync
        return f"{self.prefix}sync:lock:{source}"

    def queued(self, source: str) -> str:  # task id of a requested sync not started yet
        return f"{self.prefix}sync:queued:{source}"

    def progress(self, source: str) -> str:
        return f"{self.prefix}sync:progress:{source}"

    def stored(self, task_id: str) -> str:  # set by the worker once a record is in the database
        return f"{self.prefix}stored:{task_id}"

    @property
    def last(self) -> str:  # hash: source -> JSON of its last result
        return f"{self.prefix}sync:last"

    @property
    def history(self) -> str:  # list of recent sync events, newest first
        return f"{self.prefix}sync:history"
