"""Prometheus metrics: `/metrics` of the real web app over real services, the queue-depth collector
on the real Redis, and a real worker's exporter (every pool process, multiprocess mode).

Counters are process-wide, so the in-process tests compare before and after."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.conftest import free_port
from tests.ops.conftest import REDIS_URL, Procs, base_env, make_docs, metric

QUESTION = "How do I set up the VPN?"


async def scrape(client: Any) -> str:
    response = await client.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return str(response.text)


def value(text: str, name: str, **labels: str) -> float:
    return metric(text, name, **labels) or 0.0


async def test_answers_latency_and_votes_are_counted_by_platform_and_outcome(make_lore: Any) -> None:
    lore = make_lore()
    client = lore.client()
    before = await scrape(client)
    answered = await client.ask(QUESTION)
    abstained = await client.ask("What is the airspeed velocity of an unladen swallow?")
    assert not answered["abstained"] and abstained["abstained"]
    vote = await client.json("/api/vote", {"answer_id": answered["answer_id"], "value": "up"})
    assert vote.status_code == 200, vote.text
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("lore_answers_total", platform="web", outcome="answered") == 1
    assert delta("lore_answers_total", platform="web", outcome="abstained") == 1
    assert delta("lore_votes_total", platform="web", vote="up") == 1
    for stage in ("retrieve", "generate", "total"):
        assert delta("lore_answer_seconds_count", platform="web", stage=stage) == 2
    assert value(after, "lore_answer_seconds_bucket", platform="web", stage="retrieve", le="+Inf") >= 2
    # Embedded mode: no Redis, so no queue gauges; nothing about users either.
    assert "lore_queue_depth" not in after and "anon:" not in after and "VPN" not in after


async def test_a_failing_engine_is_counted_as_an_error(make_lore: Any) -> None:
    class Broken:
        def answer(self, *_a: Any, **_k: Any) -> Any:
            raise RuntimeError("the engine is down")

    lore = make_lore(engine=Broken())
    client = lore.client()
    before = await scrape(client)
    await client.page("/chat")
    response = await client.json("/api/ask", {"question": QUESTION})
    assert response.status_code == 502
    after = await scrape(client)
    assert (
        value(after, "lore_answers_total", platform="web", outcome="error")
        - value(before, "lore_answers_total", platform="web", outcome="error")
        == 1
    )


async def test_metrics_can_be_turned_off(make_lore: Any) -> None:
    lore = make_lore(web={"metrics": False})
    response = await lore.client().http.get("/metrics")
    assert response.status_code == 404


@pytest.mark.redis
def test_queue_depth_is_read_from_redis_at_scrape_time_and_a_down_redis_is_a_gauge(
    prefix: str, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from config.settings import Settings
    from workers.client import queue_depth_collector

    redis = Redis.from_url(REDIS_URL)
    try:
        redis.rpush(f"{prefix}ingest", "a", "b", "c")
        redis.rpush(f"{prefix}answer", "q")
        redis.hset(f"{prefix}unacked", "tag", "message")
        registry = CollectorRegistry()
        registry.register(
            queue_depth_collector(Settings(data_dir=tmp_path, redis={"url": REDIS_URL, "prefix": prefix}))
        )
        text = generate_latest(registry).decode()
    finally:
        redis.close()
    assert metric(text, "lore_queue_depth", queue="ingest") == 3
    assert metric(text, "lore_queue_depth", queue="answer") == 1
    assert metric(text, "lore_queue_depth", queue="feedback") == 0
    assert metric(text, "lore_queue_unacked") == 1 and metric(text, "lore_broker_up") == 1

    down = CollectorRegistry()
    down.register(
        queue_depth_collector(
            Settings(data_dir=tmp_path, redis={"url": f"redis://127.0.0.1:{free_port()}/0"})
        )
    )
    started = time.monotonic()
    text = generate_latest(down).decode()
    assert metric(text, "lore_broker_up") == 0 and metric(text, "lore_queue_depth", queue="ingest") is None
    assert time.monotonic() - started < 10  # a scrape never hangs on a down Redis


@pytest.mark.redis
@pytest.mark.worker
async def test_a_worker_serves_the_metrics_of_all_its_processes(
    tmp_path: Path, procs: Procs, prefix: str
) -> None:
    from config.settings import Settings
    from workers.sender import CeleryTaskClient

    docs = make_docs(tmp_path / "docs")
    port = free_port()
    settings: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "sources": [
            {"name": "handbook", "type": "directory", "path": str(docs)},
            {"name": "gone", "type": "directory", "path": str(tmp_path / "no-such-folder")},
        ],
        "llm": {"provider": "extractive"},
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "worker": {"metrics_port": port, "sync_max_retries": 0},
    }
    worker = procs(
        "worker",
        ["worker", "-Q", "ingest", "-n", f"m-{uuid.uuid4().hex[:6]}@%h"],
        base_env(tmp_path, **settings),
    )
    await worker.wait_log(r"worker metrics on http://127.0.0.1:\d+/metrics", 120)
    client = CeleryTaskClient(Settings(**settings))
    try:
        for name in ("handbook", "gone"):
            handle = client.request_sync(name)
            last = await worker.wait_for(
                lambda h=handle, n=name: client.wait(h.task_id, n, timeout=0.5), 120, f"the sync of {name}"
            )
            assert last["state"] == ("done" if name == "handbook" else "failed"), last
    finally:
        client.close()
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    # Observed in the pool process, served by the main process.
    assert metric(text, "lore_sync_duration_seconds_count", source="handbook", outcome="done") == 1
    assert metric(text, "lore_sync_duration_seconds_count", source="gone", outcome="failed") == 1
    assert metric(text, "lore_sync_documents_sum", source="handbook") == 4
    assert (metric(text, "lore_sync_chunks_embedded_sum", source="handbook") or 0) >= 4
    assert metric(text, "lore_worker_task_failures_total", task="lore.sync_source") == 1
    assert metric(text, "lore_queue_depth", queue="ingest") == 0 and metric(text, "lore_broker_up") == 1


@pytest.mark.slow
async def test_lore_slack_serves_health_and_its_answer_metrics_on_the_ops_port(
    tmp_path: Path, procs: Procs, make_knowledge: Any
) -> None:
    from tests.emulators.slack import APP_TOKEN, BOT_TOKEN, BOT_USER_ID, SlackEmulator, app_mention_event

    docs = make_docs(tmp_path / "docs")
    sources = [{"name": "handbook", "type": "directory", "path": str(docs)}]
    kn = make_knowledge(sources, data_dir=tmp_path / "data")
    assert kn.sync("handbook").error is None
    kn.close()
    port = free_port()
    async with SlackEmulator() as slack:
        env = base_env(
            tmp_path,
            data_dir=str(tmp_path / "data"),
            sources=sources,
            llm={"provider": "extractive"},
            slack={"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_url": slack.base_url},
            web={"ops_port": port},
        )
        bot = procs("slack", ["slack"], env)
        await bot.wait_log(r"web app listening", 120)
        await slack.wait_connected(timeout=60)
        await slack.send_event(
            app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", "U1", "C1", slack.next_ts())
        )
        await slack.wait_for("chat.update", timeout=60)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok", "slack": "socket"}
            text = (await http.get("/metrics")).text
            assert (await http.get("/chat")).status_code == 404  # no console in this process
        assert metric(text, "lore_answers_total", platform="slack", outcome="answered") == 1
        bot.terminate()
        assert await bot.stopped(60) == 0


def test_the_cli_imports_no_metrics_before_a_worker_sets_up_multiprocess_mode() -> None:
    # prometheus_client picks its value class when first imported: if any `lore` command module
    # brought it in at import, `lore worker` would count in-process only and lose the pool's samples.
    import subprocess
    import sys

    modules = "('prometheus_client', 'slack_sdk')"
    code = f"import bot.cli, sys; print(sorted(m for m in {modules} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
