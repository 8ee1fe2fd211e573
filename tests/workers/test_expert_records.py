""" "Ask an expert" records take the feedback path votes take: through the spool to a real Celery
`feedback` worker (and its retries), written once however often they are delivered; and with the
embedded client, kept in the spool while the database is unreachable and written on the next start."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from feedback.db import Database
from feedback.models import Escalation, ExpertAnswer
from feedback.schema import ExpertReplyRecord
from tests.feedback.test_experts import escalated
from tests.feedback.test_experts import reply as expert_reply
from tests.workers.conftest import wait_for
from workers.spool import Spool

ESCALATION = escalated("a-exp")


def reply(accepted: bool) -> ExpertReplyRecord:
    return expert_reply(accepted=accepted, answer_id="a-exp")


def rows(db: Database, model: type) -> list:
    if db.current() != db.head():  # the worker may still be migrating: a table can be missing
        return []
    with db.sessions() as s:
        return list(s.scalars(select(model)))


def test_escalations_and_expert_replies_through_the_queue_are_stored_once(stack, start_worker, client):
    client.settings = stack.settings()
    start_worker("feedback")
    for _ in range(2):
        client.record_escalation(ESCALATION)
        client.record_expert_reply(reply(accepted=False))
        client.record_expert_reply(reply(accepted=True))
    db = Database(f"sqlite:///{Path(stack.overrides['data_dir']) / 'feedback.sqlite3'}")
    try:
        wait_for(lambda: rows(db, Escalation), 30, "the escalation")
        wait_for(lambda: [r for r in rows(db, ExpertAnswer) if r.accepted], 30, "the accepted reply")
        wait_for(lambda: client.spool.total() == 0, 30, "the spool to empty (confirmed)")
        time.sleep(1)
        assert len(rows(db, Escalation)) == 1
        [kept] = rows(db, ExpertAnswer)
        assert (kept.from_expert, kept.accepted, kept.text) == (True, True, "Use the v3 client.")
    finally:
        db.dispose()


def test_embedded_records_wait_in_the_spool_while_the_database_is_down(tmp_path):
    from config.settings import Settings
    from workers.inprocess import InProcessTaskClient

    data = tmp_path / "data"
    data.mkdir()
    down = Settings(data_dir=data, database={"url": "postgresql+psycopg://lore@127.0.0.1:1/none"})
    client = InProcessTaskClient(down)
    client.record_escalation(ESCALATION)
    client.record_expert_reply(reply(accepted=True))
    client.close()
    assert Spool(data / "spool.sqlite3").total() == 2  # nothing written, nothing lost

    url = f"sqlite:///{data / 'feedback.sqlite3'}"
    again = InProcessTaskClient(Settings(data_dir=data, database={"url": url}))  # the next start
    db = Database(url)
    try:
        wait_for(lambda: again.spool.total() == 0, 60, "the spooled records to be written")
        assert [r.answer_id for r in rows(db, Escalation)] == ["a-exp"]
        assert [r.accepted for r in rows(db, ExpertAnswer)] == [True]
    finally:
        again.close()
        db.dispose()
