"""Graceful shutdown, as an orchestrator does it: SIGTERM to the process, then wait for its exit.

- An ingest worker in the middle of a long sync stops at its next batch, hands the sync back to
  the queue (the same task id) and exits 0 at once; the next worker resumes it, skipping what the
  first one indexed, and finishes it.
- A question in flight when both the index owner and the chat process get SIGTERM is still
  answered: the owner finishes it before its pool process exits, and the web server finishes the
  request before it stops.
(`lore serve`, `lore slack` and `lore discord` draining on SIGTERM is also covered in
tests/bot/test_serve.py; beat and the feedback worker stopping cleanly in test_multiprocess.py.)
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.conftest import free_port
from tests.emulators.openai_chat import FixedLLM
from tests.ops.conftest import REDIS_URL, Procs, base_env, make_docs

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

VOCABULARY = (
    "alpha beta gamma delta policy leave travel expense laptop vpn office remote budget review deploy "
    "release team hiring onboarding security password badge parking printer wiki"
)


def many_docs(root: Path, n: int, words: int) -> Path:
    rng = random.Random(7)
    words_list = VOCABULARY.split()
    for i in range(n):
        body = " ".join(rng.choice(words_list) for _ in range(words))
        (root / f"doc{i:04d}.md").parent.mkdir(parents=True, exist_ok=True)
        (root / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n{body}\n")
    return root


def history(redis: Redis, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in reversed(redis.lrange(f"{prefix}sync:history", 0, -1))]


async def test_a_sigtermed_ingest_worker_hands_its_sync_back_and_the_next_one_finishes_it(
    tmp_path: Path, procs: Procs, prefix: str
) -> None:
    from config.settings import Settings
    from workers.sender import CeleryTaskClient

    docs = many_docs(tmp_path / "docs", 160, 150)
    settings: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),  # the same machine: the restarted worker reopens the index
        "sources": [{"name": "big", "type": "directory", "path": str(docs)}],
        "llm": {"provider": "extractive"},
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "index": {"batch_docs": 8},
        "worker": {"shutdown_grace": 0},
        "log_format": "json",
    }
    env = base_env(tmp_path, **settings)
    first = procs("ingest-1", ["worker", "-Q", "ingest", "-n", f"one-{uuid.uuid4().hex[:6]}@%h"], env)
    await first.wait_log(r" ready\.", 120)
    client = CeleryTaskClient(Settings(**settings))
    redis = Redis.from_url(REDIS_URL)
    try:
        handle = client.request_sync("big", requested_by="test")
        await first.wait_for(
            lambda: (client.sync_status().running.get("big") or {}).get("seen", 0) >= 16, 120, "two batches"
        )
        first.terminate()
        assert await first.stopped(60) == 0, first.tail()
        events = [(e["event"], e.get("task_id")) for e in history(redis, prefix)]
        assert ("handed_back", handle.task_id) in events, events
        assert "big" not in client.sync_status().last  # not finished by the first worker
        # Handed back at once: the message waits in the queue, not in a dead worker's unacked set.
        assert redis.llen(f"{prefix}ingest") == 1 and redis.hlen(f"{prefix}unacked") == 0

        second = procs("ingest-2", ["worker", "-Q", "ingest", "-n", f"two-{uuid.uuid4().hex[:6]}@%h"], env)
        await second.wait_log(r" ready\.", 120)
        last = await second.wait_for(
            lambda: client.wait(handle.task_id, "big", timeout=0.5, poll=0.25), 300, "the resumed sync"
        )
        assert last["state"] == "done" and last["task_id"] == handle.task_id
        assert last["unchanged"] >= 8, last  # what the first worker indexed was not embedded again
        assert last["added"] + last["unchanged"] == 160, last
        second.terminate()
        assert await second.stopped(60) == 0, second.tail()
    finally:
        client.close()
        redis.close()
    for proc in (first, second):
        assert all(line.startswith("{") for line in proc.err().splitlines()), proc.tail()


@pytest.fixture
async def slow_llm() -> AsyncIterator[FixedLLM]:
    """An OpenAI-compatible endpoint that holds each completion until `release` is set."""
    async with FixedLLM("Install WireGuard from Self Service [1].", model="slow-model", hold=True) as llm:
        yield llm


async def test_a_question_in_flight_is_answered_although_owner_and_web_get_sigterm(
    tmp_path: Path, procs: Procs, prefix: str, slow_llm: FixedLLM
) -> None:
    from config.settings import Settings
    from workers.sender import CeleryTaskClient

    docs = make_docs(tmp_path / "docs")
    port = free_port()
    common: dict[str, Any] = {
        "sources": [{"name": "handbook", "type": "directory", "path": str(docs)}],
        "llm": {"provider": "openai", "base_url": slow_llm.url, "model": "slow-model", "max_retries": 0},
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "index": {"owner": "worker"},
        "web": {"port": port, "index_on_start": False},
        "log_format": "json",
    }
    owner_settings = {**common, "data_dir": str(tmp_path / "data-owner")}
    owner = procs(
        "owner",
        ["worker", "-Q", "ingest", "-n", f"owner-{uuid.uuid4().hex[:6]}@%h"],
        base_env(tmp_path, **owner_settings),
    )
    web_env = base_env(tmp_path, **common, data_dir=str(tmp_path / "data-web"))
    serve = procs("serve", ["serve", "--no-gateways"], web_env)
    await owner.wait_log(r"answer server ready", 120)
    client = CeleryTaskClient(Settings(**owner_settings))
    try:
        handle = client.request_sync("handbook")
        assert await owner.wait_for(lambda: client.wait(handle.task_id, "handbook", timeout=0.5), 120, "sync")
    finally:
        client.close()
    await serve.wait_log(r"web app listening", 120)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        chat = await http.get("/chat")
        token = re.search(r'name="csrf-token" content="([^"]+)"', chat.text).group(1)
        asking = asyncio.create_task(
            http.post(
                "/api/ask", json={"question": "How do I set up the VPN?"}, headers={"X-CSRF-Token": token}
            )
        )
        await asyncio.wait_for(slow_llm.received.wait(), 60)  # the owner is generating the answer
        owner.terminate()
        serve.terminate()
        await asyncio.sleep(1.0)  # both are shutting down now, with the answer still in flight
        assert owner.alive() and serve.alive()
        slow_llm.release.set()
        answer = await asyncio.wait_for(asking, 60)
    assert answer.status_code == 200, answer.text
    assert "WireGuard" in answer.json()["text"]
    assert await owner.stopped(60) == 0, owner.tail()
    assert await serve.stopped(60) == 0, serve.tail()
    # The count includes `lore serve`'s start-up question "is anything indexed?", when the owner
    # was up in time to hear it.
    stopped = re.search(r"answer server stopped \((\d+) answered\)", owner.err())
    assert stopped and int(stopped.group(1)) >= 1, owner.tail()
