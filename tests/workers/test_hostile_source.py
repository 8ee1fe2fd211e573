"""A hostile source folder synced by a real Celery worker ends `done`, never `failed`.

A symlink loop used to fail the sync for good: it was recorded as failed, not retried, and
every later sync of the source failed the same way, so no good page ever arrived.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write
from tests.knowledge.hostile import HOSTILE, OUTSIDE_MARKER, good_doc_ids, hostile_folder

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_a_worker_sync_of_a_hostile_folder_skips_the_bad_entries(stack, start_worker, client, make_knowledge):
    root = hostile_folder(stack.tmp)
    stack.overrides["sources"] = [{"name": "hb", "type": "directory", "path": str(root)}]
    client.settings = stack.settings()
    start_worker("ingest,feedback")

    last = client.wait(client.request_sync("hb").task_id, "hb", timeout=300)
    assert last and last["state"] == "done" and last["error"] is None, last
    reasons = {s["path"]: s["reason"] for s in last["skipped"]}
    assert set(reasons) == set(HOSTILE), reasons
    for path, words in HOSTILE.items():
        assert words in reasons[path], (path, reasons[path])
    assert last["added"] == len(good_doc_ids("hb")), last

    # Later syncs of the same source still run, and new pages arrive.
    write(root, "it/wifi.md", "# Wi-Fi\n\nThe office Wi-Fi network is called Northwind-Staff.\n")
    again = client.wait(client.request_sync("hb").task_id, "hb", timeout=300)
    assert again and again["state"] == "done" and again["added"] == 1, again

    start_worker.stop_all()  # the worker owns the embedded index; read it only once it is gone
    kn = make_knowledge(stack.overrides["sources"], data_dir=Path(stack.overrides["data_dir"]))
    assert {d for _c, d in kn.store.chunk_ids("hb")} == good_doc_ids("hb") | {"hb:it/wifi.md"}
    assert all(OUTSIDE_MARKER not in c.text for c in kn.engine.search("vault phrase secret", top_k=10))
