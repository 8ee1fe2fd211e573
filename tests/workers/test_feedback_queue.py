"""Answers and votes through the queue: duplicates, a worker killed mid-stream, Redis down."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from feedback.db import Database
from feedback.models import Interaction, Vote, VoteEvent
from feedback.schema import InteractionRecord, VoteRecord
from knowledge.answer import Answer
from tests.conftest import free_port
from tests.feedback.pg import pg_url
from tests.workers.conftest import wait_for

__all__ = ["pg_url"]

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def make_votes(total: int, pairs: int, seed: int = 3) -> list[VoteRecord]:
    rnd = random.Random(seed)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    owners = [i % pairs for i in range(total)]  # every pair votes at least once
    votes = []
    for n, pair in enumerate(owners):
        votes.append(
            VoteRecord(
                answer_id=f"ans{pair // 3:04d}",
                user_hash=f"u_{pair % 3}",
                platform=rnd.choice(["slack", "discord"]),
                value=rnd.choice(["up", "down"]),
                reason=rnd.choice([None, "wrong", "outdated"]),
                created_at=base + timedelta(seconds=n),  # later votes of a pair are newer
            )
        )
    return votes


def db_for(stack, kind: str, request) -> Database:
    if kind == "postgres":
        url = request.getfixturevalue("pg_url")
        stack.overrides["database"] = {"url": url}
        db = Database(url.replace("postgresql://", "postgresql+psycopg://"))
        db.upgrade()
        with db.engine.begin() as conn:
            for table in (VoteEvent, Vote, Interaction):
                conn.execute(table.__table__.delete())
        return db
    return Database(f"sqlite:///{Path(stack.overrides['data_dir']) / 'feedback.sqlite3'}")


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_thousand_votes_with_duplicates_and_a_worker_restart(stack, start_worker, client, kind, request):
    db = db_for(stack, kind, request)
    client.settings = stack.settings()
    votes = make_votes(1000, pairs=300)
    rnd = random.Random(11)
    sends = votes + rnd.sample(votes, 200)  # 200 redeliveries of the same vote ids
    rnd.shuffle(sends)  # and out of order

    worker = start_worker("feedback", concurrency=2)
    for v in sends[:600]:
        client.record_vote(v)

    def events() -> int:
        with db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(VoteEvent)) or 0)

    wait_for(lambda: db.current() and events() >= 100, 60, "the worker to be writing votes")
    # Restart in the middle of the stream: the worker finishes what it runs and hands back
    # what it had prefetched. (A kill -9 mid-stream is tests/workers/test_outbox.py.)
    worker.stop()
    for v in sends[600:]:
        client.record_vote(v)
    start_worker("feedback", concurrency=2)

    wait_for(lambda: events() == 1000, 120, "all 1000 distinct votes")
    with db.sessions() as s:
        current = {(v.answer_id, v.user_hash): v.vote_id for v in s.scalars(select(Vote))}
        assert s.scalar(select(func.count()).select_from(VoteEvent)) == 1000
    latest = {}
    for v in votes:  # created_at grows with the index, so the last one per pair is the newest
        latest[(v.answer_id, v.user_hash)] = v.vote_id
    assert current == latest  # exactly one current vote per (answer, user), the newest, none missing
    assert client.redis.llen(stack.prefix + "feedback") == 0
    db.dispose()


def test_interactions_through_the_queue_are_stored_once(stack, start_worker, client):
    client.settings = stack.settings()
    start_worker("feedback")
    answer = Answer(
        question="How many leave days?", text="25 days [1].", abstained=False, model="m", prompt_version="p1"
    )
    record = InteractionRecord(
        answer=answer, correlation_id="c1", platform="slack", user_hash="u_x", channel="C1"
    )
    for _ in range(3):
        client.record_interaction(record)
    db = Database(f"sqlite:///{Path(stack.overrides['data_dir']) / 'feedback.sqlite3'}")

    def stored() -> list[Interaction]:
        if db.current() != db.head():  # still migrating
            return []
        with db.sessions() as s:
            return list(s.scalars(select(Interaction)))

    rows = wait_for(stored, 30, "the interaction")
    time.sleep(1)
    assert len(stored()) == 1 and rows[0].answer_id == answer.answer_id and rows[0].channel == "C1"
    db.dispose()


class PrivateRedis:
    """A second redis-server just for this test, so stopping it disturbs nobody."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.dir = free_port(), tmp / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
        )
        wait_for(
            lambda: (
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode
                == 0
            ),
            10,
            "redis",
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def test_votes_spool_while_redis_is_down_and_all_arrive_when_it_is_back(stack, start_worker, tmp_path):
    from workers.sender import CeleryTaskClient

    redis = PrivateRedis(tmp_path)
    redis.start()
    stack.overrides["redis"] = {"url": redis.url, "prefix": stack.prefix}
    stack.overrides["feedback"] = {"spool_flush_interval": 0.5}
    client = CeleryTaskClient(stack.settings())
    db = Database(f"sqlite:///{Path(stack.overrides['data_dir']) / 'feedback.sqlite3'}")

    def events() -> int:
        if db.current() != db.head():  # still migrating
            return 0
        with db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(VoteEvent)) or 0)

    try:
        start_worker("feedback")
        votes = make_votes(60, pairs=60)
        client.record_vote(votes[0])  # Redis up: sent at once
        wait_for(lambda: events() == 1, 30, "the first vote")
        redis.stop()

        for v in votes[1:]:
            started = time.monotonic()
            client.record_vote(v)
            assert time.monotonic() - started < 1.0  # the bot keeps answering
        assert client.spool.pending() == 59

        redis.start()  # an empty Redis (no persistence): only the spool can bring the votes back
        wait_for(lambda: client.spool.pending() == 0, 30, "the spool to drain")
        wait_for(lambda: events() == 60, 90, "every vote, the spooled ones included")
    finally:
        db.dispose()
        client.close()
        start_worker.stop_all()
        redis.stop()
