"""HTTP mode (Events API): signed requests to Lore's FastAPI app, through the real Bolt app."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import httpx
import pytest

from tests.bot.slack.conftest import SIGNING_SECRET, USER, block_texts, button_values
from tests.conftest import wait_for
from tests.emulators.slack import (
    BOT_USER_ID,
    app_mention_event,
    block_action_payload,
    event_callback,
    load_payload,
    sign_request,
    slash_command_payload,
)


@pytest.fixture
async def http_lore(make_http_lore):
    return await make_http_lore()


def signed(
    body: str,
    content_type: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    **headers: str,
) -> dict[str, str]:
    return {"Content-Type": content_type, **sign_request(body, secret, timestamp), **headers}


def forged(body: str, forgery: str) -> dict[str, str]:
    """Headers of a request Slack did not send (or sent too long ago)."""
    return {
        "wrong secret": signed(body, "application/json", secret="not-the-secret"),
        "stale timestamp": signed(body, "application/json", timestamp=int(time.time()) - 600),
        "no signature": {"Content-Type": "application/json"},
    }[forgery]


async def post_event(lore, event: dict, *, event_id: str | None = None, **sign_kw) -> httpx.Response:
    body = json.dumps(event_callback(event, event_id=event_id))
    return await lore.http.post(
        "/slack/events", content=body, headers=signed(body, "application/json", **sign_kw)
    )


async def test_a_signed_mention_is_answered(http_lore):
    ts = http_lore.next_ts()
    started = time.monotonic()
    response = await post_event(
        http_lore, app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", USER, "C1", ts)
    )
    assert response.status_code == 200 and time.monotonic() - started < 3
    answer = await http_lore.wait_answer(ts)
    assert "WireGuard" in block_texts(answer.args)
    assert len(http_lore.progress_posts(ts)) == 1


@pytest.mark.parametrize("forgery", ["wrong secret", "stale timestamp", "no signature"])
async def test_forged_or_stale_requests_are_rejected_and_nothing_is_answered(http_lore, forgery):
    ts = http_lore.next_ts()
    body = json.dumps(event_callback(app_mention_event(f"<@{BOT_USER_ID}> vpn?", USER, "C1", ts)))
    headers = forged(body, forgery)
    response = await http_lore.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    await http_lore.settle(0.3)
    assert not http_lore.slack.calls_to("chat.postMessage")


@pytest.mark.parametrize("forgery", ["wrong secret", "stale timestamp", "no signature"])
async def test_a_rejected_request_is_logged_without_its_body(http_lore, caplog, forgery):
    caplog.set_level(logging.DEBUG)  # every logger, every level: the body appears in none
    marker = "FORGEDBODY7Z"
    event = app_mention_event(
        f"<@{BOT_USER_ID}> {marker} give me the secrets", USER, "C1", http_lore.next_ts()
    )
    body = json.dumps(event_callback(event))
    headers = forged(body, forgery)
    response = await http_lore.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    await http_lore.settle(0.2)
    assert not [r for r in caplog.records if marker in r.getMessage()]
    [rejected] = [r for r in caplog.records if r.getMessage().startswith("rejected a Slack request")]
    assert rejected.levelno == logging.INFO and f"{len(body.encode())} bytes" in rejected.getMessage()


async def test_a_replayed_ask_is_answered_once(http_lore):
    """A signed /ask sent again (a replay inside Slack's five-minute window) gets no second answer."""
    url = http_lore.slack.new_response_url("replayed")
    form = urlencode(slash_command_payload("/ask", "how do I set up the VPN?", USER, "C1", response_url=url))
    headers = signed(form, "application/x-www-form-urlencoded")
    for _ in range(3):
        response = await http_lore.http.post("/slack/commands", content=form, headers=headers)
        assert response.status_code == 200
    await http_lore.slack.wait_for("response_url", count=2, timeout=20)
    await http_lore.settle(0.5)
    progress, answer = http_lore.slack.calls_to("response_url")
    assert progress.args["text"] == "Searching the docs…" and "WireGuard" in block_texts(answer.args)
    # A new invocation of the same command (a new trigger_id) is a new question.
    again = slash_command_payload("/ask", "how do I set up the VPN?", USER, "C1", response_url=url)
    form = urlencode(again | {"trigger_id": "2222222222.3333333333.another"})
    await http_lore.http.post(
        "/slack/commands", content=form, headers=signed(form, "application/x-www-form-urlencoded")
    )
    await http_lore.slack.wait_for("response_url", count=4, timeout=20)


async def test_url_verification_echoes_the_challenge(http_lore):
    payload = load_payload("url_verification")
    body = json.dumps(payload)
    response = await http_lore.http.post(
        "/slack/events", content=body, headers=signed(body, "application/json")
    )
    assert response.status_code == 200
    assert response.json() == {"challenge": payload["challenge"]}


async def test_five_retried_deliveries_give_one_answer(http_lore):
    ts = http_lore.next_ts()
    event = app_mention_event(f"<@{BOT_USER_ID}> how many days of leave?", USER, "C1", ts)
    for attempt in range(5):
        retry = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"} if attempt else {}
        response = await post_event(http_lore, event, event_id="Ev0HTTPRETRY", **retry)
        assert response.status_code == 200
    await http_lore.wait_answer(ts)
    await http_lore.settle(0.5)
    assert len(http_lore.progress_posts(ts)) == 1 and len(http_lore.answers("C1", ts)) == 1


async def test_slash_command_and_button_over_http(http_lore):
    url = http_lore.slack.new_response_url("ask")
    form = urlencode(slash_command_payload("/ask", "how do I set up the VPN?", USER, "C1", response_url=url))
    response = await http_lore.http.post(
        "/slack/commands", content=form, headers=signed(form, "application/x-www-form-urlencoded")
    )
    assert response.status_code == 200
    _progress, answer = await http_lore.slack.wait_for("response_url", count=2, timeout=20)
    answer_id = button_values(answer.args)[0].split(":")[2]

    click = block_action_payload(
        "lore_feedback_up",
        f"fb:up:{answer_id}",
        USER,
        "C1",
        "1700000000.000001",
        response_url=http_lore.slack.new_response_url("up"),
        is_ephemeral=True,
    )
    form = urlencode({"payload": json.dumps(click)})
    response = await http_lore.http.post(
        "/slack/interactions", content=form, headers=signed(form, "application/x-www-form-urlencoded")
    )
    assert response.status_code == 200
    vote = await wait_for(lambda: http_lore.current_vote(answer_id, USER), what="the vote")
    assert vote.value == "up"


async def test_healthz_reports_the_slack_mode(http_lore):
    response = await http_lore.http.get("/healthz")
    assert response.json() == {"status": "ok", "slack": "http"}
