"""Queue a sync through Redis, joining the one already running or queued for that source."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from redis import Redis

from config.settings import Settings
from workers.locks import claim_request
from workers.names import QUEUE_OF, Keys, TaskName
from workers.ports import SyncHandle


class Sender(Protocol):
    def send_task(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


def request_sync(
    app: Sender,
    redis: Redis,
    settings: Settings,
    source: str,
    *,
    full: bool = False,
    requested_by: str | None = None,
) -> SyncHandle:
    settings.source(source)  # KeyError with the known names for a typo
    keys = Keys(settings.redis.prefix)
    task_id = uuid.uuid4().hex
    holder, joined = claim_request(redis, keys, source, task_id, settings.worker.sync_time_limit)
    if joined:
        return SyncHandle(task_id=holder, source=source, joined=True)
    try:
        app.send_task(
            TaskName.SYNC_SOURCE,
            args=[source],
            kwargs={"full": full, "requested_by": requested_by},
            task_id=task_id,
            queue=QUEUE_OF[TaskName.SYNC_SOURCE],
        )
    except Exception:
        redis.delete(keys.queued(source))  # nothing was queued: don't make others join it
        raise
    return SyncHandle(task_id=task_id, source=source)
