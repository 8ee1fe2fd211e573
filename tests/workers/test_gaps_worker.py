"""`lore.cluster_gaps` on a real `lore worker -Q feedback` through real Redis, asked for by the
chat side's client (`CeleryTaskClient.request_gap_report`, what the console's button calls)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback.db import Database
from feedback.gaps import latest_report, view_report
from tests.feedback.gapdata import PLANTED, seed, topic_of
from tests.workers.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_a_feedback_worker_clusters_the_questions_on_request(stack, start_worker, client):
    db = Database(f"sqlite:///{Path(stack.overrides['data_dir']) / 'feedback.sqlite3'}")
    db.ensure_schema()
    seed(db.sessions)
    worker = start_worker("feedback")
    task_id = client.request_gap_report(requested_by="console:rex")
    report = wait_for(lambda: latest_report(db.sessions, "top"), 180, "the worker's clustering run")
    gaps = latest_report(db.sessions, "gaps")
    assert gaps.requested_by == report.requested_by == "console:rex"
    labels = [v.label for v in view_report(gaps.clusters, limit=6)]
    assert sorted(topic_of(label) for label in labels) == sorted(PLANTED)
    wait_for(lambda: task_id in worker.text() and "succeeded" in worker.text(), 30, "the task's success")
    db.dispose()
