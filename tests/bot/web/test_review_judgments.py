"""Relevance judgments on the review item page through the real console: judging retrieved chunks,
searching the real index for the passage that should have been found and attaching it, and the
same refusals as every review write (sign-in and role, CSRF)."""

from __future__ import annotations

import re

from feedback.judgments import judgments_for
from feedback.store import record_interaction
from tests.bot.web.conftest import REVIEWER, REVIEWER_PW
from tests.bot.web.test_review import logged

QUESTION = "How much is the per diem in New York?"


async def scripted(client, path: str, data: dict[str, str]):
    """A form post as the page's script sends it: the CSRF token in a header, JSON back."""
    headers = {"X-CSRF-Token": await client.csrf(), "Accept": "application/json"}
    return await client.http.post(path, data=data, headers=headers)


def seeded(lore) -> str:
    """An answer that retrieved the VPN page (wrong) for a per diem question."""
    record_interaction(
        lore.db.sessions,
        logged("q-pd", QUESTION, chunk_text="Install WireGuard from Self Service.", title="VPN"),
    )
    return "c-q-pd"  # the logged chunk's id


async def test_a_reviewer_judges_a_retrieved_chunk_replaces_and_clears_the_verdict(lore):
    chunk_id = seeded(lore)
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    page = await client.page("/review/q-pd")
    assert f'data-chunk-id="{chunk_id}" data-verdict=""' in page.text
    assert "<kbd>y</kbd> relevant" in page.text and "<kbd>/</kbd> search passages" in page.text

    # As the page's script does: JSON back.
    reply = await scripted(
        client, "/review/q-pd/judgments", {"chunk_id": chunk_id, "verdict": "not_relevant"}
    )
    assert reply.status_code == 200 and reply.json() == {
        "ok": True,
        "chunk_id": chunk_id,
        "verdict": "not_relevant",
    }
    [j] = judgments_for(lore.db.sessions, "q-pd")
    assert (j.relevant, j.origin, j.reviewer) == (False, "retrieved", REVIEWER)
    assert (j.passage.text, j.passage.doc_hash, j.passage.path) == (
        "Install WireGuard from Self Service.",
        "h1",
        "doc.md",
    )

    # As a plain form (no script): back to the item, filters kept, the verdict shown.
    done = await client.form(
        "/review/q-pd/judgments?vote=down", {"chunk_id": chunk_id, "verdict": "relevant"}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/review/q-pd?vote=down#judge-{chunk_id}"
    assert [j.relevant for j in judgments_for(lore.db.sessions, "q-pd")] == [True]
    page = await client.page("/review/q-pd")
    assert f'data-chunk-id="{chunk_id}" data-verdict="relevant"' in page.text

    cleared = await scripted(client, "/review/q-pd/judgments", {"chunk_id": chunk_id, "verdict": "clear"})
    assert cleared.json()["verdict"] is None and judgments_for(lore.db.sessions, "q-pd") == []

    # Nonsense is refused and stores nothing.
    unknown = await scripted(
        client, "/review/q-pd/judgments", {"chunk_id": "c-elsewhere", "verdict": "relevant"}
    )
    assert unknown.status_code == 400 and "not retrieved" in unknown.json()["error"]
    bad = await scripted(client, "/review/q-pd/judgments", {"chunk_id": chunk_id, "verdict": "maybe"})
    assert bad.status_code == 400
    missing = await scripted(client, "/review/nope/judgments", {"chunk_id": chunk_id, "verdict": "relevant"})
    assert missing.status_code == 404
    assert judgments_for(lore.db.sessions, "q-pd") == []


async def test_a_reviewer_searches_the_index_and_attaches_the_passage_that_should_have_been_found(lore):
    seeded(lore)
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    page = await client.page("/review/q-pd?vote=down&find=per+diem+New+York")
    assert page.status_code == 200
    results = re.findall(r'<li class="result" data-chunk-id="([^"]+)"', page.text)
    assert results and "95 USD a day" in page.text
    assert 'name="vote" value="down"' in page.text  # the search keeps the queue's filters
    [found] = [c for c in lore.services.knowledge.search("per diem New York", top_k=8) if "95 USD" in c.text]
    assert found.chunk_id in results

    attached = await scripted(
        client, "/review/q-pd/attach?vote=down", {"chunk_id": found.chunk_id, "find": "per diem New York"}
    )
    assert attached.status_code == 200, attached.text
    assert attached.json()["path"] == "expenses/per-diem.md"
    [j] = judgments_for(lore.db.sessions, "q-pd")
    assert (j.relevant, j.origin, j.passage.chunk_id) == (True, "attached", found.chunk_id)
    assert j.passage.text == found.text and j.passage.doc_hash == found.doc_hash  # read from the index
    page = await client.page("/review/q-pd?find=per+diem+New+York")
    assert "Attached ✓" in page.text and 'id="attached"' in page.text and "per-diem.md" in page.text

    # Without the script: a redirect back to the search.
    again = await client.form("/review/q-pd/attach", {"chunk_id": found.chunk_id, "find": "per diem"})
    assert (
        again.status_code == 303
        and again.headers["location"] == "/review/q-pd?vote=any&find=per+diem#passage-search"
    )

    # A passage the search does not find is not attached (the text is never taken from the form).
    stale = await scripted(
        client, "/review/q-pd/attach", {"chunk_id": "made-up", "find": "per diem New York"}
    )
    assert stale.status_code == 409 and len(judgments_for(lore.db.sessions, "q-pd")) == 1

    # Removing the attached passage.
    removed = await scripted(
        client, "/review/q-pd/judgments", {"chunk_id": found.chunk_id, "verdict": "clear"}
    )
    assert removed.status_code == 200 and judgments_for(lore.db.sessions, "q-pd") == []


async def test_judging_needs_a_reviewer_and_the_csrf_token(lore):
    chunk_id = seeded(lore)
    # Anonymous (the chat is public: a visitor has a session and a CSRF token, but no role).
    visitor = lore.client()
    await visitor.page("/chat")
    refused = await scripted(visitor, "/review/q-pd/judgments", {"chunk_id": chunk_id, "verdict": "relevant"})
    assert refused.status_code == 401
    refused = await scripted(visitor, "/review/q-pd/attach", {"chunk_id": chunk_id, "find": "per diem"})
    assert refused.status_code == 401
    search = await visitor.http.get("/review/q-pd?find=per+diem")
    assert search.status_code == 303 and search.headers["location"].startswith("/login?next=")

    # A reviewer, without the token.
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    forged = await client.form(
        "/review/q-pd/judgments", {"chunk_id": chunk_id, "verdict": "relevant"}, csrf=False
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    forged = await client.form("/review/q-pd/attach", {"chunk_id": chunk_id, "find": "x"}, csrf=False)
    assert forged.status_code == 403
    assert judgments_for(lore.db.sessions, "q-pd") == []
