"""Embedded mode: no Redis at all. The same functions run in-process on a small executor."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from feedback.schema import VoteRecord
from tests.workers.test_sync_queue import corpus
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
