"""The Celery app, configured entirely from settings.

`make_celery(settings)` is the worker and beat app: JSON only, late acks, one prefetched
message per process, results in the same Redis, time limits on every task, and the lease
step below. `make_celery(settings, sender=True)` is the tiny app of processes that only
send tasks by name (the chat side): no tasks, no result backend, short timeouts.

Redelivery: a lease instead of a huge visibility timeout. kombu's Redis transport keeps each
unacked message in a sorted set scored by delivery time and restores those older than
`worker.visibility_timeout`, in a sweep that runs only every ~100 s (kombu 5.6: every 10th call
of a 10 s timer). A fixed timeout can't be both "above the longest sync" and "a lost task back
within a minute". So every worker runs the `Lease` bootstep: a thread in the main process (never
starved by a busy task, the pool runs tasks in children) that every `worker.lease_interval` (5 s)
re-stamps the messages this worker still holds (`ZADD <prefix>unacked_index XX now tag`, so an
acked message is not re-added), and every `worker.restore_interval` (5 s) runs kombu's own sweep
(`QoS.restore_visible`, which takes kombu's mutex). `visibility_timeout` (30 s) then only has to
exceed the longest gap between two stamps (`WorkerSettings` validates that), not the longest sync.
Held messages include ETA messages waiting for a retry countdown, so a backoff can be longer than
the timeout. A killed worker stops stamping, and its messages come back about
`visibility_timeout + restore_interval` later: tests/workers/test_crash.py kills a worker with
`kill -9` mid-sync and sees it redelivered about 31 s later, and runs a sync lasting more than
twice the visibility timeout exactly once. The per-source sync lock's `worker.lock_ttl` (20 s) is
below the visibility timeout, so a redelivered sync finds the dead worker's lock already expired
(workers/locks.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery, bootsteps
from kombu import Exchange
from kombu import Queue as KombuQueue

from config.settings import Settings
from workers.names import QUEUE_OF, Queue
from workers.schedule import build_schedule

log = logging.getLogger(__name__)


class LoreCelery(Celery):  # type: ignore[misc]  # celery ships no type hints
    lore_settings: Settings


def make_celery(settings: Settings, *, sender: bool = False) -> LoreCelery:
    if not settings.redis.url:
        raise ValueError("no Redis configured (redis.url / LORE_REDIS__URL): background work runs in-process")
    w = settings.worker
    transport: dict[str, Any] = {
        "global_keyprefix": settings.redis.prefix,
        "visibility_timeout": w.visibility_timeout,
        # A worker killed inside the restore sweep holds this mutex; don't let it block sweeps long.
        "unacked_mutex_expire": max(10, int(w.restore_interval * 3)),
    }
    if sender:
        # Fail fast, don't retry: a record that can't be sent goes to the spool instead.
        timeout = settings.redis.connect_timeout
        transport |= {
            "socket_connect_timeout": timeout,
            "socket_timeout": 2,
            "max_retries": 0,
            "connect_retries_timeout": timeout,
        }
    app = LoreCelery(
        "lore",
        broker=settings.redis.url,
        backend=None if sender else settings.redis.url,
        set_as_current=False,
    )
    app.lore_settings = settings
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_queues=[
            KombuQueue(q.value, Exchange(q.value, type="direct"), routing_key=q.value) for q in Queue
        ],
        task_default_queue=Queue.FEEDBACK.value,
        task_routes={name.value: {"queue": queue.value} for name, queue in QUEUE_OF.items()},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A hard time limit fails the task (acked), rather than redelivering it forever.
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=24 * 3600,
        result_extended=True,
        task_publish_retry=not sender,
        worker_hijack_root_logger=False,
        beat_schedule=build_schedule(settings),
    )
    if sender:
        app.conf.broker_connection_timeout = settings.redis.connect_timeout
    if settings.qdrant.url is None:
        app.conf.worker_concurrency = 1  # embedded Qdrant: one process owns the index
    if not sender:
        from workers.tasks import register

        register(app, settings)
        app.steps["consumer"].add(Lease)
    return app


class Lease(bootsteps.StartStopStep):  # type: ignore[misc]
    """Keep the messages this worker holds from being redelivered, and redeliver lost ones fast
    (why: this module's docstring)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_lease_loop, args=(parent, self._stop), name="lore-lease", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    shutdown = stop


def held_tags(consumer: Any) -> list[str]:
    """Delivery tags of the messages this worker has received and not acked yet."""
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return []
    qos = task_consumer.channel.qos
    for _ in range(5):  # the event loop may change the dict while we copy it
        try:
            return [t for t in list(qos._delivered) if t not in qos._dirty]
        except RuntimeError:
            continue
    return []


def _lease_loop(consumer: Any, stop: threading.Event) -> None:
    settings: Settings = consumer.app.lore_settings
    w = settings.worker
    tick = min(w.lease_interval, w.restore_interval)
    conn = consumer.app.connection_for_write()
    next_sweep = 0.0
    try:
        while not stop.wait(tick):
            try:
                chan = conn.default_channel  # our own channel: nothing here touches the consumer's
                now = time.time()
                if tags := held_tags(consumer):
                    chan.client.zadd(chan.unacked_index_key, dict.fromkeys(tags, now), xx=True)
                if now >= next_sweep:
                    chan.qos.restore_visible(num=chan.unacked_restore_limit, interval=1)
                    next_sweep = now + w.restore_interval
            except Exception as exc:  # Redis away: keep trying, the broker reconnects on its own
                log.warning("lease renewal failed: %s", exc)
                conn.close()
                conn = consumer.app.connection_for_write()
    finally:
        conn.close()
