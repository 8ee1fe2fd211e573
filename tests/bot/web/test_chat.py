"""The web chat as a third adapter: real conversation core, real Knowledge, real feedback store."""

from __future__ import annotations

import base64
import json
import re

from feedback.identity import load_key, pseudonymize
from feedback.users import list_users
from tests.bot.web.conftest import REVIEWER, REVIEWER_PW
from tests.conftest import wait_for


async def test_an_answer_comes_with_numbered_linked_sources_and_timings_and_is_logged(lore):
    client = lore.client()
    answer = await client.ask("how do I set up the VPN?")
    assert "WireGuard" in answer["text"] and not answer["abstained"]
    assert answer["sources"][0] == {
        "n": 1,
        "title": "VPN",
        "url": "https://wiki.example/hb/it/vpn.md",
        "href": "https://wiki.example/hb/it/vpn.md",
        "updated": answer["sources"][0]["updated"],
    }
    assert f'href="#src-{answer["answer_id"][:12]}-1"' in answer["html"]  # [1] links to source 1
    timings = answer["timings"]
    assert timings["total_ms"] > 0 and timings["wall_ms"] >= timings["total_ms"] * 0.5
    stored = await wait_for(lambda: lore.interaction(answer["answer_id"]), what="the interaction")
    assert stored.platform == "web" and stored.question == "how do I set up the VPN?"
    anon = session_of(client)["anon"]  # the browser's anonymous id lives in its session only
    assert stored.user_hash == pseudonymize("web", f"anon:{anon}", load_key(lore.settings))
    assert anon not in repr([getattr(stored, c) for c in ("user_hash", "channel", "thread", "workspace")])
    assert stored.channel == answer["conversation"] and stored.chunks[0]["doc_hash"]


def session_of(client) -> dict:
    """The console's signed session cookie, decoded (its payload is base64 JSON)."""
    cookie = client.http.cookies["lore_session"]
    payload = cookie.split(".")[0]
    return json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))


async def test_a_down_vote_with_reason_and_correction_lands_in_the_same_store(lore):
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    answer = await client.ask("how many leave days do I get?")
    response = await client.json(
        "/api/vote",
        {
            "answer_id": answer["answer_id"],
            "value": "down",
            "reason": "incomplete",
            "correction": "25 days [1].",
        },
    )
    assert response.status_code == 200 and response.json()["ok"] and "Thanks" in response.json()["message"]
    [vote] = await wait_for(lambda: lore.votes(answer["answer_id"]), what="the vote")
    assert (vote.platform, vote.value, vote.reason, vote.correction) == (
        "web",
        "down",
        "incomplete",
        "25 days [1].",
    )
    user = next(u for u in list_users(lore.db.sessions) if u.username == REVIEWER)
    assert vote.user_hash == pseudonymize(
        "web", f"user:{user.id}", load_key(lore.settings)
    )  # never the raw id
    interaction = await wait_for(lambda: lore.interaction(answer["answer_id"]), what="the interaction")
    assert interaction.user_hash == vote.user_hash
    # A later 👍 by the same person replaces the current vote.
    await client.json("/api/vote", {"answer_id": answer["answer_id"], "value": "up"})
    await wait_for(
        lambda: [v for v in lore.votes(answer["answer_id"]) if v.value == "up"], what="the new vote"
    )


async def test_follow_ups_carry_the_conversation_as_context(lore):
    client = lore.client()
    first = await client.ask("how many leave days do I get?")
    second = await client.ask("and do they carry over?", conversation=first["conversation"])
    assert second["conversation"] == first["conversation"]
    stored = await wait_for(lambda: lore.interaction(second["answer_id"]), what="the follow-up")
    assert [t["role"] for t in stored.context] == ["user", "assistant"]
    assert stored.context[0]["text"] == "how many leave days do I get?"
    # Someone else's conversation id is not theirs to continue.
    other = lore.client()
    third = await other.ask("how do I set up the VPN?", conversation=first["conversation"])
    assert third["conversation"] != first["conversation"]


async def test_votes_only_count_for_answers_this_browser_received(lore):
    alice, mallory = lore.client(), lore.client()
    answer = await alice.ask("how do I set up the VPN?")
    await mallory.page("/chat")
    stuffed = await mallory.json("/api/vote", {"answer_id": answer["answer_id"], "value": "down"})
    assert stuffed.status_code == 404
    assert (await mallory.json("/api/vote", {"answer_id": "../etc", "value": "down"})).status_code == 422
    assert (
        await alice.json("/api/vote", {"answer_id": answer["answer_id"], "value": "sideways"})
    ).status_code == 422


async def test_empty_and_oversized_questions_are_refused_politely(lore):
    client = lore.client()
    await client.page("/chat")
    assert (await client.json("/api/ask", {"question": "   "})).status_code == 400
    too_long = await client.json("/api/ask", {"question": "x" * 5000})
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "question is too long: at most 2000 characters"


async def test_a_refused_request_never_echoes_its_input(lore):
    client = lore.client()
    await client.page("/chat")
    huge = "secret-ish " * 100_000  # 1.1 MB
    response = await client.json("/api/ask", {"question": huge})
    assert response.status_code == 422 and len(response.content) < 1000
    assert "secret-ish" not in response.text and "question is too long" in response.json()["error"]
    wrong = await client.json("/api/vote", {"answer_id": "a1", "value": "sideways " * 1000})
    assert wrong.status_code == 422 and "sideways" not in wrong.text and len(wrong.content) < 1000


async def test_rate_limits_apply_to_the_web_chat_too(make_lore):
    lore = make_lore(chat={"user_per_minute": 1, "channel_per_minute": 100})
    client = lore.client()
    first = await client.ask("how do I set up the VPN?")
    response = await client.json(
        "/api/ask", {"question": "and split tunnelling?", "conversation": first["conversation"]}
    )
    assert response.status_code == 429 and "try again" in response.json()["error"]


async def test_the_chat_page_serves_its_script_and_a_strict_content_security_policy(lore):
    client = lore.client()
    page = await client.page("/chat")
    assert page.status_code == 200 and '<script src="/static/console.js"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    script = await client.http.get("/static/console.js")
    assert script.status_code == 200 and "/api/ask" in script.text


async def test_a_failing_answer_shows_a_reference_and_keeps_the_details_in_the_log(make_lore, caplog):
    class Broken:
        def answer(self, question, history=(), **options):
            raise RuntimeError("the index is on fire")

    lore = make_lore(engine=Broken())
    client = lore.client()
    await client.page("/chat")
    response = await client.json("/api/ask", {"question": "how do I set up the VPN?"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert "something went wrong" in error and "the index is on fire" not in error
    assert re.search(r"reference: [0-9a-f]{12}\)", error)
    failed = [r for r in caplog.records if r.getMessage() == "answering failed"]
    assert failed and "the index is on fire" in str(failed[0].exc_info[1])  # the details go to the log only
