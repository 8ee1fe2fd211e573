"""Admin pages: sources with reindexing through the workers, exports from the console, readiness."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.bot.web.conftest import ADMIN, ADMIN_PW
from tests.conftest import free_port, wait_for


async def test_sources_show_counts_last_sync_and_the_errors_of_the_last_run(make_lore, docs_dir, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(docs_dir, docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    lore = make_lore(docs=docs)
    lore.add_user(ADMIN, ADMIN_PW, "admin")
    client = await lore.signed_in(ADMIN, ADMIN_PW)
    page = (await client.page("/admin/sources")).text
    assert '<tr data-source="handbook">' in page
    assert '<td class="num">4</td>' in page  # documents
    chunks = lore.services.knowledge.store.count_chunks("handbook")
    assert f'<td class="num">{chunks}</td>' in page

    # Reindex through the workers' client, and follow the live progress the page polls.
    response = await client.http.post(
        "/admin/reindex",
        data={"source": "handbook"},
        headers={"X-CSRF-Token": await client.csrf(), "Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    [queued] = response.json()["queued"]
    assert queued["source"] == "handbook"

    async def finished():
        status = (await client.http.get("/admin/sync-status", headers={"Accept": "application/json"})).json()
        last = status["last"].get("handbook") or {}
        return last if last.get("task_id") == queued["task_id"] and last.get("state") == "done" else None

    last = None
    for _ in range(600):
        last = await finished()
        if last:
            break
        await asyncio.sleep(0.1)
    assert last and last["state"] == "done"
    page = (await client.page("/admin/sources")).text
    assert "broken.pdf" in page  # the file the last run skipped, with its reason
    assert "done" in page


async def test_reindex_of_an_unknown_source_is_refused(lore):
    client = await lore.signed_in(ADMIN, ADMIN_PW)
    response = await client.http.post(
        "/admin/reindex",
        data={"source": "nope"},
        headers={"X-CSRF-Token": await client.csrf(), "Accept": "application/json"},
    )
    assert response.status_code == 400 and "unknown source" in response.json()["error"]


async def test_the_export_button_writes_a_validated_dataset_and_the_page_lists_it(lore):
    client = await lore.signed_in(ADMIN, ADMIN_PW)
    answer = await client.ask("how many leave days do I get?")
    await client.json("/api/vote", {"answer_id": answer["answer_id"], "value": "up"})
    await wait_for(
        lambda: lore.votes(answer["answer_id"]) and lore.interaction(answer["answer_id"]), what="the vote"
    )

    started = await client.form("/admin/exports", {"format": "kto"})
    assert started.status_code == 303
    status = await wait_for(
        lambda: not lore.console.exports.status()["running"] and lore.console.exports.status()
    )
    assert status["error"] is None, status
    result = status["result"]
    assert result["counts"]["examples"] == 1 and result["format"] == "kto"
    name = result["directory"].rsplit("/", 1)[1]
    page = (await client.page("/admin/exports")).text
    assert name in page and "Exported 1 kto examples" in page
    assert "(restricted: 0 left out)" in page and "<td>0 left out</td>" in page
    card = (await client.page(f"/admin/exports/{name}")).text
    assert "## Redactions" in card and "examples written" in card
    lines = [
        json.loads(line)
        for f in ("train.jsonl", "validation.jsonl")
        for line in (await client.http.get(f"/admin/exports/{name}/{f}")).text.splitlines()
    ]
    assert [line["label"] for line in lines] == [True]
    assert (await client.http.get(f"/admin/exports/{name}/../../session.key")).status_code == 404
    assert (await client.http.get("/admin/exports/sft-x/train.jsonl")).status_code == 404
    bad = await client.form("/admin/exports", {"format": "csv"})
    assert bad.status_code == 200 and "unknown format" in bad.text


async def test_readyz_lists_what_is_down(make_lore):
    lore = make_lore(database={"url": f"postgresql://postgres@127.0.0.1:{free_port()}/lore"})
    response = await lore.client().http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database"] and body["checks"]["index"]["ok"]


@pytest.mark.redis
async def test_readyz_checks_redis_when_configured(make_lore):
    from tests.workers.conftest import REDIS_URL

    lore = make_lore(redis={"url": REDIS_URL, "prefix": "lore-web-test:"})
    body = (await lore.client().http.get("/readyz")).json()
    assert body["checks"]["redis"] == {"ok": True, "detail": "ok"}

    down = make_lore(
        data_dir="data2", redis={"url": f"redis://127.0.0.1:{free_port()}/0", "prefix": "lore-web-test:"}
    )
    response = await down.client().http.get("/readyz")
    assert response.status_code == 503 and response.json()["failing"] == ["redis"]
