"""The beat schedule, as plain data built from settings.

Sources with the same interval (`every`, else `worker.default_every`) share one entry that
runs `sync_all(sources=[…])`; that light task queues each sync and joins any already
running or queued, so a slow sync never piles up scheduled copies behind it.

With `datasets.export_every` set, one more entry exports `datasets.formats` on that interval;
`gaps.every` re-clusters the questions (feedback/gaps.py) and `gaps.digest_every` posts the digest;
`tuning.every` retrains the retriever, and an hourly entry drops retired models' collections
after `tuning.grace` (docs/tuning.md).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from config.settings import Settings, parse_duration
from workers.names import QUEUE_OF, TaskName


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for src in settings.sources:
        groups[src.every or settings.worker.default_every].append(src.name)
    schedule = {}
    for every, names in sorted(groups.items(), key=lambda kv: parse_duration(kv[0])):
        seconds = parse_duration(every).total_seconds()
        schedule[f"sync-every-{every}"] = {
            "task": str(TaskName.SYNC_ALL),
            "schedule": seconds,
            "kwargs": {"sources": names},
            # A tick nobody picked up in time is dropped: the next one does the same work.
            "options": {"queue": str(QUEUE_OF[TaskName.SYNC_ALL]), "expires": max(1.0, seconds * 0.9)},
        }
    if settings.datasets.export_every:
        seconds = parse_duration(settings.datasets.export_every).total_seconds()
        schedule[f"export-datasets-every-{settings.datasets.export_every}"] = {
            "task": str(TaskName.EXPORT_DATASETS),
            "schedule": seconds,
            "kwargs": {"formats": list(settings.datasets.formats)},
            "options": {
                "queue": str(QUEUE_OF[TaskName.EXPORT_DATASETS]),
                "expires": max(1.0, seconds * 0.9),
            },
        }
    for key, interval, task in (
        ("cluster-gaps", settings.gaps.every, TaskName.CLUSTER_GAPS),
        ("gaps-digest", settings.gaps.digest_every, TaskName.GAPS_DIGEST),
        ("tune-retriever", settings.tuning.every, TaskName.TUNE_RETRIEVER),
    ):
        if interval:
            seconds = parse_duration(interval).total_seconds()
            schedule[f"{key}-every-{interval}"] = {
                "task": str(task),
                "schedule": seconds,
                "kwargs": {"requested_by": "schedule"},
                "options": {"queue": str(QUEUE_OF[task]), "expires": max(1.0, seconds * 0.9)},
            }
    if settings.redis.url:
        # Old models' collections go `tuning.grace` after a switch (a no-op without models).
        schedule["drop-expired-models-every-1h"] = {
            "task": str(TaskName.CHANGE_MODEL),
            "schedule": 3600.0,
            "kwargs": {"action": "drop_expired", "requested_by": "schedule"},
            "options": {"queue": str(QUEUE_OF[TaskName.CHANGE_MODEL]), "expires": 3240.0},
        }
    return schedule
