"""Prometheus metrics of the background work, and the queue-depth collector.

Counted where the work happens, once each:

- `lore_sync_duration_seconds{source,outcome}`, `lore_sync_documents{source}` and
  `lore_sync_chunks_embedded{source}`: in `workers.jobs.run_sync` (Celery workers and the
  in-process executor alike);
- `lore_worker_task_failures_total{task}`, `lore_worker_task_retries_total{task}`: Celery's
  `task_failure` / `task_retry` signals (`workers.process`);
- `lore_queue_depth{queue}`, `lore_queue_unacked`, `lore_broker_up`: read from Redis at scrape
  time (`QueueDepthCollector`).

A Celery worker is several processes (prefork), so `lore worker` runs prometheus_client's
multiprocess mode: every process writes its samples under `PROMETHEUS_MULTIPROC_DIR` (set before
this module is imported, by `workers.process.prepare_metrics_dir`), and the main process serves
them all at `worker.metrics_port` (`workers.process`). Labels carry no user data: source names,
task names and queue names only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from config.settings import Settings
from workers.names import Keys, Queue

log = logging.getLogger(__name__)

_SIZE_BUCKETS = (0, 1, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000, 100_000)

SYNC_SECONDS = Histogram(
    "lore_sync_duration_seconds",
    "How long a sync of one source took, by how it ended (done, failed).",
    ["source", "outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600),
)
SYNC_DOCUMENTS = Histogram(
    "lore_sync_documents", "Documents a sync listed and looked at.", ["source"], buckets=_SIZE_BUCKETS
)
SYNC_CHUNKS = Histogram(
    "lore_sync_chunks_embedded",
    "Chunks a sync embedded (new and changed documents).",
    ["source"],
    buckets=_SIZE_BUCKETS,
)
TASK_FAILURES = Counter("lore_worker_task_failures_total", "Celery tasks that ended in failure.", ["task"])
TASK_RETRIES = Counter("lore_worker_task_retries_total", "Celery tasks scheduled for a retry.", ["task"])


def observe_sync(source: str, progress: Any, seconds: float) -> None:
    outcome = "failed" if progress.error else "done"
    SYNC_SECONDS.labels(source, outcome).observe(seconds)
    SYNC_DOCUMENTS.labels(source).observe(progress.seen)
    SYNC_CHUNKS.labels(source).observe(progress.chunks_embedded)


class QueueDepthCollector(Collector):
    """Messages waiting per queue (LLEN of kombu's Redis lists) and unacknowledged ones, read from
    Redis at scrape time, with a short timeout: a down Redis gives `lore_broker_up 0`, not a hang."""

    def __init__(self, settings: Settings, timeout: float = 1.0) -> None:
        assert settings.redis.url
        self.url = settings.redis.url
        self.keys = Keys(settings.redis.prefix)
        self.timeout = timeout

    def describe(self) -> list[Metric]:  # so registering does not read Redis
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("lore_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]),
            GaugeMetricFamily("lore_queue_unacked", "Messages delivered to workers, not acknowledged yet."),
            GaugeMetricFamily("lore_broker_up", "1 if Redis (the broker) answered this scrape."),
        )

    def collect(self) -> Iterator[Metric]:
        from redis import Redis

        depth, unacked, up = self._families()
        client = Redis.from_url(self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in Queue:
                pipe.llen(self.keys.queue(queue.value))
            pipe.hlen(self.keys.queue("unacked"))
            *lengths, held = pipe.execute()
            for queue, length in zip(Queue, lengths, strict=True):
                depth.add_metric([queue.value], float(length))
            unacked.add_metric([], float(held))
            up.add_metric([], 1.0)
        except Exception as exc:
            log.debug("queue depth unavailable: %s", exc)
            up.add_metric([], 0.0)
        finally:
            client.close()
        yield depth
        yield unacked
        yield up
