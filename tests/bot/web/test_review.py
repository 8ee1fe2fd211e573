"""The review queue through the real console: filters, the item page, actions and conflicts."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
from datetime import UTC, datetime, timedelta

from feedback.schema import InteractionRecord, VoteRecord
from feedback.store import record_interaction, record_vote
from knowledge.answer import Answer, Citation, RetrievedChunk, Timings, Turn
from tests.bot.web.conftest import ADMIN, ADMIN_PW, REVIEWER, REVIEWER2, REVIEWER2_PW, REVIEWER_PW
from tests.conftest import wait_for


def logged(
    answer_id: str,
    question: str,
    *,
    platform="slack",
    source="handbook",
    days_ago=0,
    text="An answer [1].",
    chunk_text="Some text.",
    title="Doc",
    context=(),
    access=("public",),
) -> InteractionRecord:
    chunk = RetrievedChunk(
        chunk_id=f"c-{answer_id}",
        doc_id=f"{source}:doc.md",
        source=source,
        path="doc.md",
        title=title,
        url="https://wiki.example/doc.md",
        text=chunk_text,
        score=0.7,
        doc_hash="h1",
        n=1,
        access=list(access),
    )
    answer = Answer(
        answer_id=answer_id,
        question=question,
        text=text,
        abstained=False,
        model="extractive",
        prompt_version="v1",
        chunks=[chunk],
        timings=Timings(total_ms=12),
        citations=[
            Citation(
                n=1, title=title, url=chunk.url, source=source, path="doc.md", doc_id=chunk.doc_id, score=0.7
            )
        ],
    )
    return InteractionRecord(
        answer=answer,
        correlation_id="c",
        platform=platform,
        user_hash="u_x",
        context=[Turn(**t) for t in context],
        created_at=datetime.now(UTC) - timedelta(days=days_ago),
    )


def vote(answer_id: str, value: str, user="u_1", **kw) -> VoteRecord:
    return VoteRecord(answer_id=answer_id, user_hash=user, platform="slack", value=value, **kw)


def version_of(page_text: str) -> int:
    return int(re.search(r'name="version" value="(\d+)"', page_text).group(1))


def textarea(page_text: str) -> str:
    return html.unescape(
        re.search(r'<textarea id="ideal-answer"[^>]*>(.*?)</textarea>', page_text, re.S).group(1)
    )


async def test_the_queue_filters_by_vote_reason_platform_source_date_status_and_tag(lore):
    s = lore.db.sessions
    record_interaction(s, logged("q-down", "Why is the VPN slow?", platform="slack"))
    record_vote(s, vote("q-down", "down", reason="outdated", correction="Use the EU gateway."))
    record_interaction(s, logged("q-up", "How many leave days?", platform="discord", source="wiki"))
    record_vote(s, vote("q-up", "up"))
    record_interaction(s, logged("q-old", "Who approves Friday deploys?", platform="slack", days_ago=40))
    record_vote(s, vote("q-old", "down", reason="wrong"))
    record_interaction(s, logged("q-none", "What is the per diem?"))
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)

    async def shown(query: str) -> set[str]:
        page = await client.http.get(f"/review?{query}")
        assert page.status_code == 200
        return set(re.findall(r'data-href="/review/([\w-]+)', page.text))

    assert await shown("") == {"q-down", "q-up", "q-old"}  # default: answers with a vote
    assert await shown("vote=all") == {"q-down", "q-up", "q-old", "q-none"}
    assert await shown("vote=none") == {"q-none"}
    assert await shown("vote=down") == {"q-down", "q-old"}
    assert await shown("vote=up") == {"q-up"}
    assert await shown("reason=outdated") == {"q-down"}
    assert await shown("platform=discord") == {"q-up"}
    assert await shown("source=wiki") == {"q-up"}
    recent = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    assert await shown(f"from={recent}") == {"q-down", "q-up"}
    assert await shown(f"to={(datetime.now(UTC) - timedelta(days=30)).date().isoformat()}") == {"q-old"}
    assert await shown("status=new") == {"q-down", "q-up", "q-old"}

    page = await client.page("/review/q-down?vote=down")
    await client.form(
        "/review/q-down?vote=down", {"action": "tag", "version": version_of(page.text), "tags": "vpn Network"}
    )
    page = await client.page("/review/q-up")
    await client.form("/review/q-up", {"action": "reject", "version": version_of(page.text)})
    assert await shown("status=rejected") == {"q-up"}
    assert await shown("status=new") == {"q-down", "q-old"}  # tagging alone leaves it new
    assert await shown("tag=network") == {"q-down"}
    assert await shown("vote=down&status=new&reason=wrong") == {"q-old"}


async def test_an_item_shows_question_context_answer_chunks_votes_and_whether_its_documents_changed(
    make_lore, docs_dir, tmp_path
):
    docs = tmp_path / "docs"
    shutil.copytree(docs_dir, docs)
    lore = make_lore(docs=docs)
    lore.add_user(REVIEWER, REVIEWER_PW)
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    first = await client.ask("how many leave days do I get?")
    answer = await client.ask("and how do I set up the VPN?", conversation=first["conversation"])
    await client.json(
        "/api/vote",
        {
            "answer_id": answer["answer_id"],
            "value": "down",
            "reason": "wrong",
            "correction": "Use WireGuard <b>now</b>.",
        },
    )
    await wait_for(
        lambda: lore.votes(answer["answer_id"]) and lore.interaction(answer["answer_id"]), what="the vote"
    )

    page = await client.page(f"/review/{answer['answer_id']}")
    text = page.text
    assert "and how do I set up the VPN?" in text  # the question
    assert "how many leave days do I get?" in text  # the thread context
    assert "WireGuard" in text and "Thread context" in text  # the answer
    assert "Use WireGuard &lt;b&gt;now&lt;/b&gt;." in text  # the correction, escaped
    assert "Wrong" in text  # the reason
    assert textarea(text) == "Use WireGuard <b>now</b>."  # the editor starts from the correction
    stored = lore.interaction(answer["answer_id"])
    vpn = next(c for c in stored.chunks if c["path"] == "it/vpn.md")
    assert f"version {vpn['doc_hash'][:12]}" in text  # the document version each chunk came from
    assert "changed since" not in text and "doc-unchanged" in text

    (docs / "it" / "vpn.md").write_text("# VPN\n\nWe moved to Tailscale: install it from Self Service.\n")
    (docs / "hr" / "leave.md").unlink()
    assert (await asyncio.to_thread(lore.services.knowledge.sync, "handbook")).error is None
    text = (await client.page(f"/review/{answer['answer_id']}")).text
    assert "changed since" in text and "doc-changed" in text
    if any(c["path"] == "hr/leave.md" for c in stored.chunks):
        assert "doc-deleted" in text


async def test_reviewers_see_restricted_chunks_in_full_labelled_with_who_may_read_them(lore):
    record_interaction(
        lore.db.sessions,
        logged("secret", "What is the L5 band?", chunk_text="L5 band: 120-140k.", access=("group:hr",)),
    )
    record_interaction(lore.db.sessions, logged("open", "What is the wifi?", chunk_text="Guest wifi."))
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    text = (await client.page("/review/secret")).text
    assert "L5 band: 120-140k." in text  # a reviewer's job: they see everything
    assert '<span class="badge restricted" title="who may read it">group:hr</span>' in text
    text = (await client.page("/review/open")).text
    assert "Guest wifi." in text and "badge restricted" not in text


async def test_approve_edit_reject_reopen_and_history(lore):
    record_interaction(lore.db.sessions, logged("item-1", "How many leave days?", text="20 days [1]."))
    record_vote(lore.db.sessions, vote("item-1", "down", reason="wrong"))
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    page = await client.page("/review/item-1")
    assert textarea(page.text) == "20 days [1]."  # no correction: starts from the original answer

    response = await client.form("/review/item-1", {"action": "approve", "version": version_of(page.text)})
    assert response.status_code == 303 and "saved=approved" in response.headers["location"]
    page = await client.page(response.headers["location"])
    assert "Saved: approved." in page.text and 'id="review-status">approved<' in page.text

    edit = {
        "action": "edit",
        "version": version_of(page.text),
        "ideal_answer": "25 days a year [1].",
        "tags": "leave",
    }
    page = await client.page((await client.form("/review/item-1", edit)).headers["location"])
    assert 'id="review-status">edited<' in page.text and textarea(page.text) == "25 days a year [1]."

    empty = await client.form(
        "/review/item-1", {"action": "edit", "version": version_of(page.text), "ideal_answer": " "}
    )
    assert empty.status_code == 400 and "write the ideal answer" in empty.text

    page = await client.page(
        (await client.form("/review/item-1", {"action": "reject", "version": version_of(page.text)})).headers[
            "location"
        ]
    )
    assert 'id="review-status">rejected<' in page.text
    page = await client.page(
        (await client.form("/review/item-1", {"action": "reopen", "version": version_of(page.text)})).headers[
            "location"
        ]
    )
    assert 'id="review-status">new<' in page.text and version_of(page.text) == 4
    history = page.text.split("<h2>History</h2>")[1]
    assert [a for a in ("reopen", "reject", "edit", "approve") if f"<td>{a}</td>" in history] == [
        "reopen",
        "reject",
        "edit",
        "approve",
    ]
    assert "25 days a year [1]." in history and REVIEWER in history


async def test_two_reviewers_editing_the_same_item_get_a_conflict_and_neither_edit_is_lost(lore):
    from feedback.reviews import get_item

    record_interaction(lore.db.sessions, logged("shared", "What is the per diem?", text="75 USD [1]."))
    record_vote(lore.db.sessions, vote("shared", "down", reason="wrong", correction="95 USD in New York."))
    rex = await lore.signed_in(REVIEWER, REVIEWER_PW)
    rita = await lore.signed_in(REVIEWER2, REVIEWER2_PW)
    rex_page, rita_page = await rex.page("/review/shared"), await rita.page("/review/shared")
    assert version_of(rex_page.text) == version_of(rita_page.text) == 0

    saved = await rex.form(
        "/review/shared", {"action": "edit", "version": 0, "ideal_answer": "95 USD in New York [1]."}
    )
    assert saved.status_code == 303
    rita_text = "New York: 95 USD a day; elsewhere 75 USD [1]."
    lost = await rita.form(
        "/review/shared", {"action": "edit", "version": 0, "ideal_answer": rita_text, "tags": "money"}
    )
    assert lost.status_code == 409
    assert (
        "Conflict:" in lost.text
        and f"{REVIEWER} saved this item" in lost.text
        and "nothing was overwritten" in lost.text
    )
    assert "95 USD in New York [1]." in lost.text  # the other reviewer's edit, shown
    assert textarea(lost.text) == rita_text  # her own text, kept in the form to merge
    assert 'name="tags" value="money"' in lost.text
    assert version_of(lost.text) == 1  # the form now carries the current version
    item = get_item(lore.db.sessions, "shared")
    assert item.review.ideal_answer == "95 USD in New York [1]." and item.review.reviewer == REVIEWER
    conflict = next(e for e in item.history if e["outcome"] == "conflict")
    assert conflict["ideal_answer"] == rita_text and conflict["reviewer"] == REVIEWER2  # kept server-side too

    merged = "95 USD a day in New York; 75 USD elsewhere in the US [1]."
    again = await rita.form(
        "/review/shared", {"action": "edit", "version": version_of(lost.text), "ideal_answer": merged}
    )
    assert again.status_code == 303
    item = get_item(lore.db.sessions, "shared")
    assert item.review.ideal_answer == merged and item.review.version == 2
    assert [e["outcome"] for e in item.history] == ["saved", "conflict", "saved"]


async def test_simultaneous_saves_let_exactly_one_win(lore):
    from feedback.reviews import get_item

    record_interaction(lore.db.sessions, logged("race", "Who approves Friday deploys?"))
    rex = await lore.signed_in(REVIEWER, REVIEWER_PW)
    ada = await lore.signed_in(ADMIN, ADMIN_PW)
    results = await asyncio.gather(
        rex.form("/review/race", {"action": "edit", "version": 0, "ideal_answer": "The on-call lead [1]."}),
        ada.form(
            "/review/race", {"action": "edit", "version": 0, "ideal_answer": "The on-call lead approves [1]."}
        ),
    )
    assert sorted(r.status_code for r in results) == [303, 409]
    item = get_item(lore.db.sessions, "race")
    assert item.review.version == 1
    assert sorted(e["outcome"] for e in item.history) == ["conflict", "saved"]
    assert {e["ideal_answer"] for e in item.history} == {
        "The on-call lead [1].",
        "The on-call lead approves [1].",
    }


async def test_questions_answers_and_retrieved_text_are_shown_as_text_never_markup(lore):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    record_interaction(
        lore.db.sessions,
        logged(
            "xss",
            f"Why {evil}?",
            text=f"Because {evil} [1].",
            chunk_text=f"chunk {evil}",
            title=f"T {evil}",
            context=[{"role": "user", "text": f"earlier {evil}"}],
        ),
    )
    record_vote(lore.db.sessions, vote("xss", "down", correction=f"fix {evil}"))
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    for path in ("/review", "/review/xss"):
        page = (await client.http.get(path)).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page


async def test_next_and_previous_follow_the_filtered_queue(lore):
    for i, days in enumerate((3, 2, 1)):
        record_interaction(lore.db.sessions, logged(f"n{i}", f"Question number {i}?", days_ago=days))
        record_vote(lore.db.sessions, vote(f"n{i}", "down"))
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    page = (await client.page("/review/n1?vote=down")).text
    assert 'data-prev="/review/n2?vote=down"' in page and 'data-next="/review/n0?vote=down"' in page
