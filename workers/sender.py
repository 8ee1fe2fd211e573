"""`CeleryTaskClient`: the chat side's client when Redis is configured.

It only sends tasks, by name, through a tiny send-only Celery app. Every interaction and vote
is written to the local outbox (workers/spool.py) and deleted only once the worker that stored
it confirms; so neither a down Redis, nor a worker killed at the wrong instant, nor a Redis
restart loses it. Recording is that local write and nothing else: publishing is the flusher
thread's job (woken at once, in spool order), so a vote or an answer never waits on the
network, not even on a Redis that accepts connections and then hangs (up to the socket timeout
per call, every call, when the caller published itself).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis import Redis

from config.settings import Settings
from feedback.schema import EscalationRecord, ExpertReplyRecord, InteractionRecord, VoteRecord
from workers.app import make_celery
from workers.dispatch import request_sync
from workers.names import QUEUE_OF, Keys, TaskName, record_task
from workers.ports import SyncHandle, SyncStatus
from workers.progress import RedisBoard
from workers.spool import Flusher, Spool, Spooled

log = logging.getLogger(__name__)


class WorkersUnavailable(Exception):
    """Redis could not be reached for something that can't be spooled (a sync request, status)."""


class CeleryTaskClient:
    def __init__(self, settings: Settings) -> None:
        assert settings.redis.url
        self.settings = settings
        self.app = make_celery(settings, sender=True)
        timeout = settings.redis.connect_timeout
        self.redis = Redis.from_url(settings.redis.url, socket_connect_timeout=timeout, socket_timeout=2)
        self.board = RedisBoard(self.redis, Keys(settings.redis.prefix), ttl=settings.worker.lock_ttl * 2)
        self.spool = Spool(settings.data_dir / "spool.sqlite3")
        self.keys = Keys(settings.redis.prefix)
        self._flusher = Flusher(
            self.spool,
            self._send_spooled,
            settings.feedback.spool_flush_interval,
            stored=self._stored,
            confirm_timeout=settings.feedback.confirm_timeout,
        )

    # -- feedback: never raise, never wait on the network, never lose ---------------

    def record_interaction(self, record: InteractionRecord) -> None:
        self._record(*record_task(record))

    def record_vote(self, record: VoteRecord) -> None:
        self._record(*record_task(record))

    def record_escalation(self, record: EscalationRecord) -> None:
        self._record(*record_task(record))

    def record_expert_reply(self, record: ExpertReplyRecord) -> None:
        self._record(*record_task(record))

    def _record(self, name: TaskName, task_id: str, payload: dict[str, Any]) -> None:
        try:
            self.spool.put(str(name), task_id, [payload], str(QUEUE_OF[name]))
        except Exception:  # the spool itself failed (disk full?): say so loudly, keep answering
            log.exception("could not record %s %s", name, task_id)
            return
        self._flusher.wake()  # it publishes, off the caller's path

    def _stored(self, task_ids: list[str]) -> list[bool]:
        """Which of these records a worker has confirmed storing."""
        values: list[bytes | None] = self.redis.mget([self.keys.stored(t) for t in task_ids])  # type: ignore[assignment]
        return [v is not None for v in values]

    def _send_spooled(self, item: Spooled) -> None:
        self.app.send_task(
            item.task_name,
            args=item.args,
            argsrepr=f"<{item.task_id}>",  # a record holds an answer: not for logs or task events
            task_id=item.task_id,
            queue=item.queue,
            retry=False,
            ignore_result=True,
        )

    # -- syncs ------------------------------------------------------------------------

    def request_sync(self, source: str, *, full: bool = False, requested_by: str | None = None) -> SyncHandle:
        try:
            return request_sync(
                self.app, self.redis, self.settings, source, full=full, requested_by=requested_by
            )
        except KeyError:
            raise
        except Exception as exc:
            raise WorkersUnavailable(f"could not queue a sync of {source}: {exc}") from exc

    def sync_status(self) -> SyncStatus:
        try:
            return self.board.snapshot()
        except Exception as exc:
            raise WorkersUnavailable(f"could not read sync status from Redis: {exc}") from exc

    def request_gap_report(self, *, requested_by: str | None = None) -> str:
        try:
            result = self.app.send_task(
                TaskName.CLUSTER_GAPS,
                kwargs={"requested_by": requested_by},
                queue=str(QUEUE_OF[TaskName.CLUSTER_GAPS]),
                retry=False,
            )
        except Exception as exc:
            raise WorkersUnavailable(f"could not queue a clustering of the questions: {exc}") from exc
        return str(result.id)

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.board.history(limit)

    def wait(
        self, task_id: str, source: str, *, timeout: float = 3600, poll: float = 0.5
    ) -> dict[str, Any] | None:
        """Block until `task_id` has a final result for `source` (done or failed); None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.sync_status().last.get(source)
            if last and last.get("task_id") == task_id and last.get("state") in ("done", "failed"):
                return last
            time.sleep(poll)
        return None

    def close(self) -> None:
        self._flusher.stop()
        self.spool.close()
        self.redis.close()
