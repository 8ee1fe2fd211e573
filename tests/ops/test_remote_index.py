"""`index.owner = "worker"`: the chat side asks the index owner over the `answer` queue.

Without an owner it degrades clearly (an error reply with a reference id, a failing readiness
check that says what to start); with `lore worker -Q answer` (the Celery tasks of the same
names, the way to scale answers with a Qdrant server) the same questions are answered.
The ingest worker's own answer server is exercised in test_multiprocess.py and test_shutdown.py.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.ops.conftest import REDIS_URL, Procs, base_env, make_docs

pytestmark = [pytest.mark.redis]


def remote_settings(tmp: Path, prefix: str, answer_timeout: float = 1) -> dict[str, Any]:
    docs = make_docs(tmp / "docs")
    return {
        "data_dir": str(tmp / "data"),
        "sources": [{"name": "handbook", "type": "directory", "path": str(docs)}],
        "llm": {"provider": "extractive"},
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "index": {"owner": "worker", "answer_timeout": answer_timeout},
    }


def test_owner_worker_needs_redis() -> None:
    from pydantic import ValidationError

    from config.settings import Settings

    with pytest.raises(ValidationError, match=r"index.owner = 'worker'.*set redis.url"):
        Settings(index={"owner": "worker"})


async def test_without_an_owner_the_chat_side_says_what_is_missing(tmp_path: Path, prefix: str) -> None:
    import httpx

    from bot.serve import web_app
    from bot.services import build_services
    from config.settings import Settings
    from workers.ports import OwnerUnavailable
    from workers.remote import RemoteKnowledge

    settings = Settings(**remote_settings(tmp_path, prefix))
    remote = RemoteKnowledge(settings)
    started = time.monotonic()
    with pytest.raises(OwnerUnavailable, match=r"did not reply within 1 s.*lore worker -Q ingest"):
        remote.answer("How do I set up the VPN?")
    assert time.monotonic() - started < 10
    remote.close()

    services = build_services(settings)
    assert getattr(services.knowledge, "remote", False)  # the chat process never opens the index
    app = web_app(services)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://lore.test"
        ) as http:
            chat = await http.get("/chat")
            import re

            token = re.search(r'name="csrf-token" content="([^"]+)"', chat.text).group(1)
            answer = await http.post(
                "/api/ask", json={"question": "How do I set up the VPN?"}, headers={"X-CSRF-Token": token}
            )
            assert answer.status_code == 502 and re.search(r"[0-9a-f]{12}", answer.json()["error"])
            ready = await http.get("/readyz")
            body = ready.json()
            assert ready.status_code == 503 and body["failing"] == ["index"], body
            assert "lore worker -Q ingest" in body["checks"]["index"]["detail"]
    finally:
        await services.aclose()
    assert not (tmp_path / "data" / "edge").exists()


@pytest.mark.worker
async def test_answer_workers_serve_the_queue_through_celery(
    tmp_path: Path, procs: Procs, prefix: str, make_knowledge: Any
) -> None:
    from config.settings import Settings
    from workers.remote import RemoteKnowledge

    data = remote_settings(tmp_path, prefix, answer_timeout=60)
    kn = make_knowledge(data["sources"], data_dir=Path(data["data_dir"]))
    assert kn.sync("handbook").error is None
    kn.close()
    settings = Settings(**data)
    env = base_env(tmp_path, **data)
    worker = procs("answer", ["worker", "-Q", "answer", "-n", f"a-{uuid.uuid4().hex[:6]}@%h"], env)
    await worker.wait_log(r" ready\.", 120)
    remote = RemoteKnowledge(settings)
    try:
        answer = remote.answer("How do I set up the VPN?")
        assert "WireGuard" in answer.text and answer.citations
        assert not remote.is_empty()
        [row] = remote.sources_status()
        assert row["name"] == "handbook" and row["documents"] == 4
        info = remote.index_info()
        assert info["collection"]["model"] == "all-MiniLM-L6-v2" and info["owner_problem"] is None
    finally:
        remote.close()
    assert "Task lore.answer[" in worker.err() and "answer server" not in worker.err()
    worker.terminate()
    assert await worker.stopped(60) == 0


@pytest.mark.worker
async def test_the_cli_asks_the_index_owner_and_never_opens_an_index_of_its_own(
    tmp_path: Path, procs: Procs, prefix: str
) -> None:
    import json
    import subprocess

    from tests.ops.conftest import LORE

    data = remote_settings(tmp_path, prefix, answer_timeout=60)
    owner = procs(
        "ingest",
        ["worker", "-Q", "ingest", "-n", f"owner-{uuid.uuid4().hex[:6]}@%h"],
        base_env(tmp_path, **data),
    )
    cli_data = tmp_path / "cli-data"  # another container's data directory: no index there
    env = base_env(tmp_path, **{**data, "data_dir": str(cli_data)})

    def lore(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LORE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )

    await owner.wait_log(r"answer server ready", 180)
    refused = lore("index")
    assert refused.returncode == 2 and "lore sync run --all --wait" in refused.stderr, refused.stderr
    synced = lore("sync", "run", "--all", "--wait", "--json")
    assert synced.returncode == 0 and json.loads(synced.stdout)["handbook"]["state"] == "done", synced.stderr

    asked = lore("ask", "How do I set up the VPN?", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "WireGuard" in answer["text"] and answer["citations"][0]["path"] == "it/vpn.md"
    listed = lore("sources", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["sources"]
    assert row["name"] == "handbook" and row["documents"] == 4
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": "q1",
                "question": "What is the per diem in New York?",
                "sources": ["expenses/per-diem.md"],
                "facts": ["95 USD"],
                "kind": "factual",
            }
        )
        + "\n"
    )
    evaluated = lore("eval", str(questions), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["overall"]["recall_at_k"] == 1.0

    assert not (cli_data / "edge").exists() and not (cli_data / "qdrant").exists()
    assert owner.err().count("for a chat process") >= 2  # the ask and the eval question
    owner.terminate()
    assert await owner.stopped(60) == 0


def test_the_owner_answers_for_the_audience_and_sources_the_chat_side_sends(
    tmp_path: Path, prefix: str, make_knowledge: Any
) -> None:
    # The owner's answer server in this process (as in the ingest worker) over the real Redis
    # queue; the chat side's RemoteKnowledge sends the audience, the wider one and the sources.
    from redis import Redis

    from config.settings import Settings
    from knowledge.access import PUBLIC_AUDIENCE, AccessPolicy
    from workers.answers import AnswerServer
    from workers.app import make_celery
    from workers.names import Keys
    from workers.remote import RemoteKnowledge

    data = remote_settings(tmp_path, prefix, answer_timeout=60)
    data["sources"][0]["access_rules"] = [{"glob": "hr/**", "access": ["group:hr"]}]
    data["groups"] = {"hr": ["slack:UHR"]}
    settings = Settings(**data)
    kn = make_knowledge(data["sources"], data_dir=Path(data["data_dir"]), groups=data["groups"])
    assert kn.sync("handbook").error is None
    redis = Redis.from_url(REDIS_URL)
    server = AnswerServer(make_celery(settings), lambda: kn, lambda: redis, Keys(prefix), threads=1)
    server.start()
    remote = RemoteKnowledge(settings)
    policy = AccessPolicy(settings)
    question = "How many days of paid leave do we get?"
    try:
        public = remote.answer(question, audience=PUBLIC_AUDIENCE, wider=policy.person(["slack:UHR"]))
        assert public.audience == ["public"] and public.withheld >= 1
        assert "25 days" not in public.text and all(c.access == ["public"] for c in public.chunks)
        hr = remote.answer(question, audience=policy.person(["slack:UHR"]))
        assert "25 days" in hr.text and "group:hr" in hr.audience
        assert remote.answer(question, audience=policy.person(["slack:UHR"]), sources=["other"]).chunks == []
        unfiltered = remote.answer(question)
        assert unfiltered.audience == [] and "25 days" in unfiltered.text
        visible = remote.visible_documents(PUBLIC_AUDIENCE)
        assert "hr/leave.md" not in visible["handbook"] and "it/vpn.md" in visible["handbook"]
        assert [r["access"] for r in remote.sources_status()] == ["public; 1 rule"]
        # A search without answering (the console's Gaps page): unfiltered, or for an audience.
        found = remote.search(question, top_k=4)
        assert found[0].path == "hr/leave.md" and found[0].dense_score is not None
        assert "hr/leave.md" not in [c.path for c in remote.search(question, audience=PUBLIC_AUDIENCE)]
    finally:
        remote.close()
        server.stop(timeout=5)
        redis.close()


def test_the_owner_summarizes_threads_and_reads_attachments_for_the_chat_side(
    tmp_path: Path, prefix: str, make_knowledge: Any
) -> None:
    # "Summarize this thread" and a question's attachments with index.owner = "worker": the
    # owner's embedder does the centrality, the attachment's text travels with the question.
    from redis import Redis

    from config.settings import Settings
    from workers.answers import AnswerServer
    from workers.app import make_celery
    from workers.names import Keys
    from workers.remote import RemoteKnowledge

    data = remote_settings(tmp_path, prefix, answer_timeout=60)
    settings = Settings(**data)
    kn = make_knowledge(data["sources"], data_dir=Path(data["data_dir"]))
    assert kn.sync("handbook").error is None
    redis = Redis.from_url(REDIS_URL)
    server = AnswerServer(make_celery(settings), lambda: kn, lambda: redis, Keys(prefix), threads=1)
    server.start()
    remote = RemoteKnowledge(settings)
    try:
        thread = [
            "Can I deploy the billing fix on Friday?",
            "Friday deploys need approval from the on-call lead.",
            "lunch is at noon",
            "Dana is the on-call lead; ask her to approve the Friday deploy.",
        ]
        summary = remote.summarize(thread, key_count=2)
        assert summary.read == 4 and summary.model == "extractive" and 2 not in summary.key
        runbook = {"name": "runbook.txt", "text": "The backup window is 02:00 to 04:00 UTC.", "url": ""}
        answer = remote.answer("when is the backup window?", attachments=[runbook])
        assert "02:00" in answer.text and answer.citations[0].title == "runbook.txt"
    finally:
        remote.close()
        server.stop(timeout=5)
        redis.close()
