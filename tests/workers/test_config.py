"""The Celery app and the beat schedule are plain data built from settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.app import make_celery
from workers.names import QUEUE_OF, Queue, TaskName
from workers.schedule import build_schedule


def test_the_schedule_groups_sources_by_interval(make_settings, tmp_path):
    settings = make_settings(
        [
            {"name": "a", "type": "directory", "path": str(tmp_path), "every": "30m"},
            {"name": "b", "type": "directory", "path": str(tmp_path)},
            {"name": "c", "type": "directory", "path": str(tmp_path), "every": "30m"},
        ],
        worker={"default_every": "6h"},
        gaps={"every": None},
    )
    schedule = build_schedule(settings)
    assert schedule == {
        "sync-every-30m": {
            "task": "lore.sync_all",
            "schedule": 1800.0,
            "kwargs": {"sources": ["a", "c"]},
            "options": {"queue": "feedback", "expires": 1620.0},
        },
        "sync-every-6h": {
            "task": "lore.sync_all",
            "schedule": 21600.0,
            "kwargs": {"sources": ["b"]},
            "options": {"queue": "feedback", "expires": 19440.0},
        },
    }


def test_the_app_is_configured_from_settings(make_settings):
    settings = make_settings(redis={"url": "redis://127.0.0.1:6379/5", "prefix": "acme:"})
    app = make_celery(settings)
    conf = app.conf
    assert conf.broker_url == "redis://127.0.0.1:6379/5" and conf.result_backend == "redis://127.0.0.1:6379/5"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.broker_transport_options["global_keyprefix"] == "acme:"
    assert conf.broker_transport_options["visibility_timeout"] == settings.worker.visibility_timeout
    assert conf.worker_concurrency == 1  # embedded Qdrant: one process owns the index
    for name in TaskName:
        task = app.tasks[name.value]
        assert task.soft_time_limit and task.time_limit > task.soft_time_limit
        if QUEUE_OF[name] == Queue.TRAIN:  # never redelivered: one that died left the serving model as it was
            assert not task.acks_late and not task.reject_on_worker_lost
        else:
            assert task.acks_late and task.reject_on_worker_lost
        assert task.queue == QUEUE_OF[name].value
    assert {q.name for q in conf.task_queues} == {q.value for q in Queue}
    sender = make_celery(settings, sender=True)
    assert TaskName.SYNC_SOURCE.value not in sender.tasks and not sender.conf.result_backend


def test_inconsistent_timeouts_are_refused(make_settings):
    with pytest.raises(ValidationError, match="lock_ttl must be below"):
        make_settings(worker={"visibility_timeout": 10, "lock_ttl": 10})
    with pytest.raises(ValidationError, match="twice the lease"):
        make_settings(worker={"visibility_timeout": 10, "lease_interval": 6, "lock_ttl": 5})
