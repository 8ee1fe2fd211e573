"""Syncs through the queue: real Redis, real `celery` worker processes, real MiniLM."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write
from tests.workers.conftest import LORE_BIN, history, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker]

DOCS = {
    "it/vpn.md": "# VPN\n\nWe use WireGuard for remote access. Install it from Self Service.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year.\n",
    "expenses/travel.md": "# Travel\n\nThe domestic per diem is 75 dollars a day.\n",
}


def corpus(root: Path, n_extra: int = 0) -> Path:
    for rel, text in DOCS.items():
        write(root, rel, text)
    for i in range(n_extra):
        write(
            root, f"extra/doc{i:03d}.md", f"# Note {i}\n\nThis note {i} is about topic number {i * 7 % 13}.\n"
        )
    return root


def test_a_sync_requested_through_the_queue_updates_the_index(stack, start_worker, client, make_knowledge):
    docs = corpus(stack.tmp / "docs")
    stack.overrides["sources"] = [{"name": "hb", "type": "directory", "path": str(docs)}]
    client.settings = stack.settings()
    start_worker("ingest,feedback", via="celery")  # plain `celery -A workers.celery_app`

    handle = client.request_sync("hb")
    assert not handle.joined
    last = client.wait(handle.task_id, "hb", timeout=90)
    assert last and last["state"] == "done", last
    assert (last["added"], last["changed"], last["deleted"]) == (3, 0, 0)

    # An edit and a delete, synced again through the queue.
    write(docs, "hr/leave.md", "# Leave\n\nEveryone gets 30 days of paid leave a year.\n")
    (docs / "it/vpn.md").unlink()
    again = client.request_sync("hb")
    last = client.wait(again.task_id, "hb", timeout=60)
    assert last and (last["changed"], last["deleted"], last["unchanged"]) == (1, 1, 1), last

    # `lore sync status --json` shows the same last result.
    out = subprocess.run(
        [LORE_BIN, "sync", "status", "--json"], env=stack.env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["running"] == {} and status["last"]["hb"]["task_id"] == again.task_id

    start_worker.stop_all()  # the worker owns the embedded index; read it only once it is gone
    kn = make_knowledge(stack.overrides["sources"], data_dir=Path(stack.overrides["data_dir"]))
    docs_indexed = {doc for _c, doc in kn.store.chunk_ids("hb")}
    assert docs_indexed == {"hb:hr/leave.md", "hb:expenses/travel.md"}
    assert "30 days" in kn.engine.search("how many days of leave", top_k=1)[0].text


def test_two_concurrent_requests_run_one_sync(stack, start_worker, make_knowledge):
    from workers.sender import CeleryTaskClient

    docs = corpus(stack.tmp / "docs", n_extra=40)
    stack.overrides["sources"] = [{"name": "hb", "type": "directory", "path": str(docs)}]
    clients = [CeleryTaskClient(stack.settings()) for _ in range(2)]
    try:
        handles: list[Any] = [None, None]
        barrier = threading.Barrier(2)

        def request(i: int) -> None:
            barrier.wait()
            handles[i] = clients[i].request_sync("hb")

        threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert handles[0].task_id == handles[1].task_id
        assert sorted(h.joined for h in handles) == [False, True]

        start_worker("ingest")
        # While it runs, another request joins it rather than queueing a second sync.
        wait_for(lambda: clients[0].sync_status().running.get("hb"), 60, "the sync to start")
        assert clients[1].request_sync("hb").task_id == handles[0].task_id
        assert clients[0].wait(handles[0].task_id, "hb", timeout=90)["state"] == "done"

        # Two deliveries that bypass the request check (e.g. a duplicate message) still
        # run one sync: the second worker finds the source locked and joins.
        start_worker("ingest")
        for _ in range(2):
            clients[0].app.send_task("lore.sync_source", args=["hb"], kwargs={"full": True}, queue="ingest")
        wait_for(lambda: history(clients[0], "hb", "joined"), 60, "the second delivery to join the first")
        wait_for(lambda: len(history(clients[0], "hb", "finished")) == 2, 90, "the full sync to finish")
        assert len(history(clients[0], "hb", "started")) == 2  # the first request, and one of the two
    finally:
        for c in clients:
            c.close()


def test_the_beat_schedule_fires(stack, start_worker, client):
    from tests.workers.conftest import Worker

    docs = corpus(stack.tmp / "docs")
    stack.overrides["sources"] = [{"name": "hb", "type": "directory", "path": str(docs), "every": "2s"}]
    start_worker("ingest,feedback")
    beat = Worker(
        [LORE_BIN, "beat", "--loglevel", "INFO"], stack.env(), stack.tmp / "beat.log", cwd=stack.tmp
    )
    try:
        wait_for(lambda: len(history(client, "hb", "finished")) >= 2, 90, "two scheduled syncs")
    finally:
        beat.stop()
    started = history(client, "hb", "started")
    assert started and all(s["requested_by"] == "schedule" for s in started)
    assert "Scheduler: Sending due task sync-every-2s" in beat.text()


class FlakySite(BaseHTTPRequestHandler):
    """A one-page site whose home page answers 503 for the first `failures` requests."""

    failures = 2
    served: list[str] = []  # noqa: RUF012 - shared with the test on purpose

    def do_GET(self) -> None:
        FlakySite.served.append(self.path)
        if self.path == "/robots.txt":
            self.send_error(404)
            return
        if FlakySite.failures > 0:
            FlakySite.failures -= 1
            self.send_error(503)
            return
        body = (
            b"<html><head><title>Status</title></head><body><main><h1>Status</h1>"
            + (b"<p>All systems are operational. The API answers within fifty milliseconds.</p>" * 5)
            + b"</main></body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_transient_failure_retries_and_a_permanent_one_does_not(stack, start_worker, client):
    from workers.app import make_celery

    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakySite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.overrides["sources"] = [
            {
                "name": "site",
                "type": "website",
                "url": f"http://127.0.0.1:{server.server_port}/",
                "max_pages": 3,
            },
            {"name": "gone", "type": "directory", "path": str(stack.tmp / "no-such-folder")},
        ]
        stack.overrides["worker"] |= {"sync_max_retries": 4, "retry_backoff": 1, "retry_backoff_max": 2}
        client.settings = stack.settings()
        start_worker("ingest,feedback")

        flaky = client.request_sync("site")
        broken = client.request_sync("gone")
        last = client.wait(flaky.task_id, "site", timeout=90)
        assert last["state"] == "done" and last["attempt"] == 2 and last["added"] == 1, last
        assert [r["attempt"] for r in history(client, "site", "finished")] == [0, 1, 2]
        assert [r["state"] for r in history(client, "site", "finished")] == ["retrying", "retrying", "done"]

        last = client.wait(broken.task_id, "gone", timeout=60)
        assert last["state"] == "failed" and last["attempt"] == 0 and not last["transient"]
        assert "does not exist" in last["error"]
        assert len(history(client, "gone", "started")) == 1  # no retry
        result = make_celery(stack.settings()).AsyncResult(broken.task_id)
        assert result.state == "FAILURE" and "does not exist" in str(result.result)
    finally:
        server.shutdown()
