"""The durable outbox: no interaction or vote is lost when a worker or the bot process dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from feedback.db import Database
from feedback.models import VoteEvent
from tests.workers.conftest import wait_for
from tests.workers.test_feedback_queue import make_votes
from workers.spool import Spool


def stored_events(db: Database) -> int:
    if db.current() is None:
        return 0
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(VoteEvent)) or 0)


def test_spool_keeps_records_until_confirmed_and_backs_off(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite3")
    ids = [spool.put("lore.record_vote", f"vote-{i}", [{"n": i}], "feedback") for i in range(3)]
    assert spool.pending() == 3 and spool.unconfirmed() == 0
    sent: list[str] = []
    assert spool.flush(lambda item: sent.append(item.task_id)) == 3
    assert sent == ["vote-0", "vote-1", "vote-2"]  # in order
    assert spool.pending() == 0 and spool.unconfirmed() == 3
    assert spool.confirm(lambda task_ids: [t != "vote-1" for t in task_ids]) == 2
    assert [s.task_id for s in spool.sent()] == ["vote-1"]  # the unconfirmed one stays
    assert spool.due(timeout=3600) == []
    time.sleep(0.3)
    [again] = spool.due(timeout=0.2)
    spool.mark_sent(again.id)
    assert spool.due(timeout=0.2) == []  # the second wait is twice as long
    time.sleep(0.5)
    assert [s.task_id for s in spool.due(timeout=0.2)] == ["vote-1"]
    spool.close()
    reopened = Spool(tmp_path / "spool.sqlite3")  # survives a restart
    assert reopened.total() == 1 and ids[1] == reopened.sent()[0].id
    reopened.close()


@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.slow
def test_kill_9_of_a_busy_feedback_worker_loses_no_vote(stack, start_worker):
    from workers.sender import CeleryTaskClient

    stack.overrides["feedback"] = {"spool_flush_interval": 0.5, "confirm_timeout": 5}
    client = CeleryTaskClient(stack.settings())
    db = Database(f"sqlite:///{Path(stack.overrides['data_dir']) / 'feedback.sqlite3'}")
    votes = make_votes(600, pairs=600)
    try:
        worker = start_worker("feedback", concurrency=2)
        for v in votes:
            client.record_vote(v)
        wait_for(lambda: stored_events(db) >= 50, 60, "the worker to be busy writing votes")
        worker.kill()  # kill -9, mid-stream: some messages are popped, some are running
        at_kill = stored_events(db)
        assert at_kill < len(votes), "the worker finished before the kill; make the stream longer"
        start_worker("feedback", concurrency=2)
        wait_for(lambda: stored_events(db) == len(votes), 180, "every vote, including those in flight")
        wait_for(lambda: client.spool.total() == 0, 60, "every record to be confirmed and dropped")
    finally:
        db.dispose()
        client.close()


CRASHING_BOT = textwrap.dedent(
    """
    import sys, time
    from config.settings import Settings
    from tests.workers.test_feedback_queue import make_votes
    from workers.inprocess import InProcessTaskClient

    client = InProcessTaskClient(Settings(data_dir=sys.argv[1]))
    for vote in make_votes(400, pairs=400):
        client.record_vote(vote)
    print("recorded", flush=True)
    time.sleep(60)  # killed here, with writes still queued in memory
    """
)


def test_embedded_writes_left_by_a_crash_are_written_on_the_next_start(tmp_path):
    from config.settings import Settings
    from workers.inprocess import InProcessTaskClient

    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_BOT, str(data)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"recorded"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    db = Database(f"sqlite:///{data / 'feedback.sqlite3'}")
    left = Spool(data / "spool.sqlite3").total()
    assert left > 0 and stored_events(db) + left >= 400  # what was not written is still spooled
    client = InProcessTaskClient(Settings(data_dir=data))  # the next start
    try:
        wait_for(lambda: stored_events(db) == 400, 60, "the spooled votes to be written")
        wait_for(lambda: client.spool.total() == 0, 30, "the spool to empty")
    finally:
        client.close()
        db.dispose()
