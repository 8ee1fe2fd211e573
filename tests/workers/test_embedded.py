"""Embedded mode: no Redis at all. The same functions run in-process on a small executor."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedback.schema import VoteRecord
from tests.workers.test_sync_queue import FlakySite, corpus
from workers.client import make_task_client, read_sync_status
from workers.inprocess import InProcessTaskClient


def test_syncs_and_votes_run_in_process_without_redis(make_knowledge, tmp_path):
    docs = corpus(tmp_path / "docs", n_extra=30)
    kn = make_knowledge([{"name": "hb", "type": "directory", "path": str(docs)}])
    client = make_task_client(kn.settings, knowledge=kn)
    assert isinstance(client, InProcessTaskClient)
    try:
        handle = client.request_sync("hb")
        assert client.request_sync("hb") == type(handle)(handle.task_id, "hb", joined=True)  # one at a time
        for i in range(20):
            client.record_vote(VoteRecord(answer_id=f"a{i % 4}", user_hash="u_1", platform="web", value="up"))
        last = client.wait(handle.task_id, "hb", timeout=60)
        assert last and last["state"] == "done" and last["added"] == 33
        # Another process (`lore sync status`) reads the same status from the data dir.
        assert read_sync_status(kn.settings).last["hb"]["task_id"] == handle.task_id
        assert kn.store.count_chunks("hb") >= 33
    finally:
        client.close()  # drains the pending writes

    from sqlalchemy import func, select

    from feedback.db import Database
    from feedback.models import Vote, VoteEvent

    db = Database.from_settings(kn.settings)
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(VoteEvent)) == 20
        assert s.scalar(select(func.count()).select_from(Vote)) == 4
    db.dispose()


def test_a_permanent_failure_is_recorded_in_embedded_mode(make_knowledge, tmp_path):
    kn = make_knowledge([{"name": "gone", "type": "directory", "path": str(tmp_path / "missing")}])
    client = make_task_client(kn.settings, knowledge=kn)
    try:
        handle = client.request_sync("gone")
        last = client.wait(handle.task_id, "gone", timeout=30)
        assert last and last["state"] == "failed" and "does not exist" in last["error"]
        assert [h["state"] for h in client.history() if h.get("source") == "gone"] == ["failed"]
    finally:
        client.close()


@pytest.fixture
def flaky_site(monkeypatch) -> Iterator[dict]:
    """A website source whose home page answers 503 `FlakySite.failures` times, then the page."""
    monkeypatch.setattr(FlakySite, "failures", 2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakySite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        "name": "site",
        "type": "website",
        "url": f"http://127.0.0.1:{server.server_port}/",
        "max_pages": 3,
    }
    server.shutdown()
    server.server_close()


def test_a_transient_failure_is_retried_in_process_by_the_same_job(make_knowledge, flaky_site):
    kn = make_knowledge(
        [flaky_site], worker={"sync_max_retries": 4, "retry_backoff": 1, "retry_backoff_max": 2}
    )
    client = make_task_client(kn.settings, knowledge=kn)
    try:
        handle = client.request_sync("site")
        deadline = time.monotonic() + 30
        while not client.board.snapshot().last.get("site") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.board.snapshot().last["site"]["state"] == "retrying"
        assert client.request_sync("site") == type(handle)(
            handle.task_id, "site", joined=True
        )  # joins the retry
        last = client.wait(handle.task_id, "site", timeout=60)
        assert last and last["state"] == "done" and last["attempt"] == 2 and last["added"] == 1, last
        finished = [h for h in reversed(client.history()) if h.get("event") == "finished"]
        assert [(h["state"], h["attempt"]) for h in finished] == [
            ("retrying", 0),
            ("retrying", 1),
            ("done", 2),
        ]
        assert 0.8 <= finished[0]["retry_in"] <= 1 and 1.6 <= finished[1]["retry_in"] <= 2
    finally:
        client.close()


def test_closing_does_not_wait_for_a_retry_that_is_not_due(make_knowledge, flaky_site, monkeypatch):
    monkeypatch.setattr(FlakySite, "failures", 1)
    kn = make_knowledge([flaky_site], worker={"retry_backoff": 60, "retry_backoff_max": 60})
    client = make_task_client(kn.settings, knowledge=kn)
    handle = client.request_sync("site")
    deadline = time.monotonic() + 30
    while not client.board.snapshot().last.get("site") and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 10  # the retry was scheduled, not slept on
    last = read_sync_status(kn.settings).last["site"]
    assert last["task_id"] == handle.task_id and last["state"] == "retrying" and last["retry_in"] >= 48


def test_the_cli_syncs_in_process_and_shows_status(tmp_path, monkeypatch):
    from bot.cli import app

    docs = corpus(tmp_path / "docs")
    (tmp_path / "lore.toml").write_text(
        f'data_dir = "data"\n[llm]\nprovider = "extractive"\n[[sources]]\nname = "hb"\ntype = "directory"\n'
        f'path = "{docs}"\n'
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    started = time.monotonic()
    result = runner.invoke(app, ["sync", "run", "hb", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hb"]["state"] == "done"
    status = runner.invoke(app, ["sync", "status", "--json"])
    assert json.loads(status.stdout)["last"]["hb"]["added"] == 3
    table = runner.invoke(app, ["sync", "status"]).stdout
    assert "hb" in table and "done" in table
    assert time.monotonic() - started < 120
    assert runner.invoke(app, ["worker"]).exit_code == 2  # nothing to start without Redis
    assert Path(tmp_path / "data" / "sync-status.json").exists()
