"""The Slack emulator, exercised through the real slack_sdk (no mocks)."""

import asyncio
import json
import time

import aiohttp
import pytest
from slack_bolt.request import payload_utils
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    PAYLOADS_DIR,
    SlackEmulator,
    app_mention_event,
    block_action_payload,
    event_callback,
    load_payload,
    message_changed_event,
    message_event,
    sign_request,
    slash_command_payload,
    view_submission_payload,
)


@pytest.fixture
async def slack():
    async with SlackEmulator(users={"U1ADMIN": {"name": "ada", "is_admin": True}}) as emulator:
        yield emulator


@pytest.fixture
def client(slack):
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)  # opens a session per request


# ---- Web API -----------------------------------------------------------------------------------


async def test_base_url_uses_an_ephemeral_port(slack):
    async with SlackEmulator() as other:
        assert slack.port and other.port and slack.port != other.port
        assert slack.base_url == f"http://127.0.0.1:{slack.port}/api/"


async def test_auth_test_ok_and_invalid_token(slack, client):
    response = await client.auth_test()
    assert response["ok"] and response["user_id"] == BOT_USER_ID and response["bot_id"] == slack.bot_id
    assert slack.calls[0].method == "auth.test"
    assert slack.calls[0].headers["Authorization"] == f"Bearer {BOT_TOKEN}"

    bad = AsyncWebClient(token="xoxb-not-a-real-token", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as excinfo:
        await bad.auth_test()
    assert excinfo.value.response["error"] == "invalid_auth"


async def test_post_message_then_replies_returns_the_thread_in_order(slack, client):
    parent_ts = "1700000000.000100"
    slack.preload_thread(
        "C1",
        parent_ts,
        [
            {"ts": parent_ts, "user": "U1", "text": "how do I deploy?"},
            {"ts": "1700000001.000200", "user": "U2", "text": "good question"},
        ],
    )
    posted = await client.chat_postMessage(channel="C1", text="Run `make deploy`.", thread_ts=parent_ts)
    assert posted["channel"] == "C1" and posted["message"]["thread_ts"] == parent_ts
    await client.chat_postMessage(channel="C1", text="unrelated top-level message")

    replies = await client.conversations_replies(channel="C1", ts=parent_ts)
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["how do I deploy?", "good question", "Run `make deploy`."]
    assert replies["messages"][-1]["ts"] == posted["ts"]
    assert slack.calls_to("conversations.replies")[0].args == {"channel": "C1", "ts": parent_ts}


async def test_chat_update_edits_the_stored_message(slack, client):
    posted = await client.chat_postMessage(channel="C1", text="Thinking…")
    divider = [{"type": "divider"}]
    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="Done", blocks=divider)
    assert updated["message"]["text"] == "Done"
    [call] = slack.calls_to("chat.update")
    assert call.args["blocks"] == divider

    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_update(channel="C1", ts="1.000001", text="nope")
    assert excinfo.value.response["error"] == "message_not_found"


async def test_form_encoded_blocks_and_views_are_decoded(slack, client):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    # Form-encoded calls (api_call(data=...)) carry blocks as a JSON string.
    form = {"channel": "C1", "text": "hi", "blocks": json.dumps(blocks)}
    await client.api_call("chat.postMessage", data=form)
    [call] = slack.calls_to("chat.postMessage")
    assert call.args["blocks"] == blocks
    assert call.headers["Content-Type"].startswith("application/x-www-form-urlencoded")

    view = {
        "type": "modal",
        "callback_id": "feedback",
        "title": {"type": "plain_text", "text": "Feedback"},
        "blocks": [],
    }
    opened = await client.views_open(trigger_id="123.456.abc", view=view)
    assert opened["view"]["callback_id"] == "feedback" and opened["view"]["id"].startswith("V")
    assert slack.calls_to("views.open")[0].args["view"] == view


async def test_post_ephemeral_users_info_and_catch_all(slack, client):
    ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert ephemeral["message_ts"]

    admin = await client.users_info(user="U1ADMIN")
    assert admin["user"]["is_admin"] is True and admin["user"]["name"] == "ada"
    assert (await client.users_info(user=BOT_USER_ID))["user"]["is_bot"] is True
    with pytest.raises(SlackApiError) as excinfo:
        await client.users_info(user="U404")
    assert excinfo.value.response["error"] == "user_not_found"

    assert (await client.reactions_add(channel="C1", name="eyes", timestamp="1.000001"))["ok"]
    assert slack.calls_to("reactions.add")[0].args["name"] == "eyes"


async def test_user_groups_emails_and_shared_channels_for_the_directory():
    async with SlackEmulator(
        users={"U1": {"name": "ann", "email": "ann@hr.example.com"}, "U2": {"name": "bob"}},
        usergroups={"S0HR": ["U1"]},
        channels={"C0EXT": {"is_shared": True, "is_ext_shared": True}},
    ) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
        assert (await client.usergroups_users_list(usergroup="S0HR"))["users"] == ["U1"]
        with pytest.raises(SlackApiError) as excinfo:
            await client.usergroups_users_list(usergroup="S404")
        assert excinfo.value.response["error"] == "no_such_subteam"
        assert (await client.users_info(user="U1"))["user"]["profile"]["email"] == "ann@hr.example.com"
        assert "email" not in (await client.users_info(user="U2"))["user"]["profile"]  # no scope, no email
        shared = (await client.conversations_info(channel="C0EXT"))["channel"]
        plain = (await client.conversations_info(channel="C1"))["channel"]
        assert shared["is_ext_shared"] is True and plain["is_ext_shared"] is False and plain["id"] == "C1"


async def test_wait_for_returns_calls_and_times_out_helpfully(slack, client):
    task = asyncio.create_task(client.chat_postMessage(channel="C1", text="later"))
    [call] = await slack.wait_for("chat.postMessage", timeout=5)
    assert call.args["text"] == "later"
    await task
    with pytest.raises(TimeoutError, match=r"chat\.update.*chat\.postMessage"):
        await slack.wait_for("chat.update", timeout=0.2)


async def test_response_url_posts_are_recorded(slack, client):
    url = slack.new_response_url("cmd")
    body = {"text": "working on it", "response_type": "ephemeral"}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200
    [call] = slack.calls_to("response_url")
    assert call.args == {"text": "working on it", "response_type": "ephemeral"}


# ---- failure injection -------------------------------------------------------------------------


async def test_rate_limit_is_retried_after_retry_after(slack):
    client = AsyncWebClient(
        token=BOT_TOKEN,
        base_url=slack.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    slack.fail_next("chat.postMessage", 429, retry_after=1)
    response = await client.chat_postMessage(channel="C1", text="hello")
    assert response["ok"]
    first, second = slack.calls_to("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # the SDK honoured Retry-After


async def test_rate_limit_without_retry_surfaces_retry_after(slack, client):
    slack.fail_next("chat.postMessage", 429, retry_after=7)
    with pytest.raises(SlackApiError) as excinfo:
        await client.chat_postMessage(channel="C1", text="hello")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response["error"] == "ratelimited"
    assert excinfo.value.response.headers["Retry-After"] == "7"
    assert (await client.chat_postMessage(channel="C1", text="hello"))["ok"]  # only the next call failed


async def test_server_errors_are_retried(slack):
    client = AsyncWebClient(
        token=BOT_TOKEN,
        base_url=slack.base_url,
        retry_handlers=[AsyncServerErrorRetryHandler(max_retry_count=2)],
    )
    slack.fail_next("chat.update", 503, times=2)
    posted = await client.chat_postMessage(channel="C1", text="a")
    assert (await client.chat_update(channel="C1", ts=posted["ts"], text="b"))["ok"]
    assert [c.status for c in slack.calls_to("chat.update")] == [503, 503, 200]


# ---- Socket Mode -------------------------------------------------------------------------------


async def test_socket_mode_client_receives_event_and_acks(slack):
    web = AsyncWebClient(base_url=slack.base_url)
    socket = SocketModeClient(app_token=APP_TOKEN, web_client=web, auto_reconnect_enabled=False)
    received: list[SocketModeRequest] = []

    async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        payload = {"text": "ack text"} if req.type == "slash_commands" else None
        await client.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload=payload))

    socket.socket_mode_request_listeners.append(listener)
    try:
        await socket.connect()
        await slack.wait_connected(timeout=5)
        [open_call] = slack.calls_to("apps.connections.open")
        assert open_call.headers["Authorization"] == f"Bearer {APP_TOKEN}"

        event = app_mention_event("<@U0LOREBOT> where is the wiki?", "U1", "C1", "1700000000.000100")
        started = time.monotonic()
        envelope_id = await slack.send_event(event, event_id="Ev0RETRY", retry_attempt=1)
        ack = await slack.wait_for_ack(envelope_id, timeout=5)
        assert ack.payload is None and 0 <= ack.latency <= time.monotonic() - started

        request = received[0]
        assert request.type == "events_api"
        assert (request.retry_attempt, request.retry_reason) == (1, "timeout")
        assert request.payload["event"] == event and request.payload["event_id"] == "Ev0RETRY"

        command_id = await slack.send_slash_command(slash_command_payload("/ask", "wiki?", "U1", "C1"))
        assert (await slack.wait_for_ack(command_id)).payload == {"text": "ack text"}
        assert received[1].accepts_response_payload is True
    finally:
        await socket.close()


async def test_disconnect_makes_the_client_reconnect_and_exit_does_not_hang(slack):
    socket = SocketModeClient(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=slack.base_url))
    try:
        await socket.connect()
        await slack.wait_connected()
        await slack.send_disconnect()
        await slack.wait_for("apps.connections.open", count=2)  # the SDK asked for a fresh URL
        await slack.wait_connected()
        started = time.monotonic()
        await slack.__aexit__(None, None, None)  # still connected: closing must not wait for the client
        assert time.monotonic() - started < 3
    finally:
        await socket.close()


async def test_bolt_app_over_socket_mode_answers_in_thread(slack):
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncApp

    app = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url))

    @app.event("app_mention")
    async def mention(event, say):
        await say(text="on it", thread_ts=event["ts"])

    @app.action("feedback_down")
    async def feedback(ack, body, client):
        await ack()
        await client.views_open(
            trigger_id=body["trigger_id"],
            view={
                "type": "modal",
                "callback_id": "feedback_modal",
                "title": {"type": "plain_text", "text": "Why?"},
                "blocks": [],
            },
        )

    @app.view("feedback_modal")
    async def submitted(ack, view):
        await ack(response_action="errors", errors={"reason": "pick one"})

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    try:
        await handler.connect_async()
        await slack.send_event(app_mention_event("<@U0LOREBOT> hi", "U1", "C1", "1700000000.000100"))
        [post] = await slack.wait_for("chat.postMessage")
        assert (post.args["channel"], post.args["text"]) == ("C1", "on it")
        assert post.args["thread_ts"] == "1700000000.000100"
        assert slack.calls_to("auth.test"), "bolt authorizes with auth.test before dispatching"

        answer_ts = slack.messages["C1"][-1]["ts"]
        click_payload = block_action_payload("feedback_down", "q1", "U1", "C1", answer_ts)
        click = await slack.send_interactive(click_payload)
        assert (await slack.wait_for_ack(click)).payload is None
        [opened] = await slack.wait_for("views.open")
        assert opened.args["view"]["callback_id"] == "feedback_modal"

        submit = await slack.send_interactive(view_submission_payload("feedback_modal", "{}", {}, "U1"))
        ack = await slack.wait_for_ack(submit)
        assert ack.payload == {"response_action": "errors", "errors": {"reason": "pick one"}}
    finally:
        await handler.close_async()


async def test_apps_connections_open_requires_an_app_token(slack, client):
    with pytest.raises(SlackApiError) as excinfo:
        await client.apps_connections_open(app_token=BOT_TOKEN)
    assert excinfo.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as excinfo:
        await client.apps_connections_open(app_token="xapp-1-wrong")
    assert excinfo.value.response["error"] == "invalid_auth"
    url = (await client.apps_connections_open(app_token=APP_TOKEN))["url"]
    assert url.startswith(f"ws://127.0.0.1:{slack.port}/socket-mode/")


async def test_wait_connected_times_out_without_a_client(slack):
    with pytest.raises(TimeoutError, match="Socket Mode connection"):
        await slack.wait_connected(timeout=0.2)


# ---- signing -----------------------------------------------------------------------------------


def test_sign_request_is_accepted_by_the_sdk_verifier():
    body = json.dumps(event_callback(app_mention_event("<@U0LOREBOT> hi", "U1", "C1", "1700000000.000100")))
    verifier = SignatureVerifier("shh-secret")
    headers = sign_request(body, "shh-secret")
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body.replace("hi", "ho"), headers)
    assert not verifier.is_valid_request(body, sign_request(body, "other-secret"))
    stale = sign_request(body, "shh-secret", timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)  # outside the SDK's 5-minute replay window


# ---- payload builders vs recorded payloads -----------------------------------------------------


def test_recorded_payloads_are_all_present_and_parse():
    names = {p.stem for p in PAYLOADS_DIR.glob("*.json")}
    assert names >= {
        "app_mention",
        "message_im",
        "message_thread_reply",
        "message_bot",
        "message_changed",
        "block_actions",
        "view_submission",
        "slash_command_ask",
        "slash_command_reindex",
        "url_verification",
    }


@pytest.mark.parametrize(
    ("name", "built"),
    [
        (
            "app_mention",
            event_callback(app_mention_event("<@U0LOREBOT> hi", "U1", "C1", "1700000000.000100")),
        ),
        (
            "message_im",
            event_callback(message_event("hi", "U1", "D1", "1700000000.000100", channel_type="im")),
        ),
        (
            "message_thread_reply",
            event_callback(
                message_event(
                    "more",
                    "U2",
                    "C1",
                    "1700000001.000100",
                    thread_ts="1700000000.000100",
                    parent_user_id="U1",
                )
            ),
        ),
        (
            "message_bot",
            event_callback(
                message_event(
                    "answer",
                    BOT_USER_ID,
                    "C1",
                    "1700000002.000100",
                    thread_ts="1700000000.000100",
                    parent_user_id="U1",
                    bot_id="B0LORE",
                )
            ),
        ),
        (
            "message_changed",
            event_callback(message_changed_event("new", "old", "U1", "C1", "1700000000.000100")),
        ),
        ("block_actions", block_action_payload("feedback_down", "q1", "U1", "C1", "1700000002.000100")),
        ("view_submission", view_submission_payload("feedback_modal", "{}", {}, "U1")),
        ("slash_command_ask", slash_command_payload("/ask", "where?", "U1", "C1")),
        ("slash_command_reindex", slash_command_payload("/reindex", "confluence", "U1", "D1")),
    ],
)
def test_builders_match_recorded_shapes(name, built):
    recorded = load_payload(name)
    assert set(built) == set(recorded)
    if "event" in recorded:
        # Bot events carry curated blocks, not rich_text, so only compare keys of the event itself.
        assert set(built["event"]) - {"blocks"} == set(recorded["event"]) - {"blocks"}


def test_builders_are_recognised_by_bolt():
    mention = event_callback(app_mention_event("<@U0LOREBOT> hi", "U1", "C1", "1700000000.000100"))
    assert payload_utils.is_event(mention)
    dm = event_callback(message_event("hi", "U1", "D1", "1700000000.000100", channel_type="im"))
    assert payload_utils.is_im_message_event(dm)
    edit = event_callback(message_changed_event("new", "old", "U1", "C1", "1700000000.000100"))
    assert payload_utils.is_message_event(edit) and edit["event"]["ts"] > edit["event"]["message"]["ts"]
    assert payload_utils.to_action(block_action_payload("a", "v", "U1", "C1", "1.000001"))["action_id"] == "a"
    assert payload_utils.is_view_submission(view_submission_payload("cb", "{}", {}, "U1"))
    assert payload_utils.to_command(slash_command_payload("/ask", "q", "U1", "C1"))["command"] == "/ask"
    for name in ("app_mention", "message_im", "block_actions", "view_submission", "slash_command_ask"):
        payload = load_payload(name)
        checks = (
            payload_utils.is_event,
            payload_utils.is_block_actions,
            payload_utils.is_view_submission,
            payload_utils.is_slash_command,
        )
        assert any(check(payload) for check in checks), name


# ---- files, permalinks, message shortcuts --------------------------------------------------------


async def test_url_private_needs_the_bot_token_and_permalinks_point_at_messages(slack, client):
    f = slack.add_file("notes.txt", b"hello", "text/plain")
    assert f["size"] == 5 and f["mimetype"] == "text/plain" and f["filetype"] == "txt"
    async with aiohttp.ClientSession() as http:
        for url in (f["url_private"], f["url_private_download"]):
            async with http.get(url, headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as resp:
                assert resp.status == 200 and await resp.read() == b"hello"
        async with http.get(f["url_private"]) as resp:  # no token: Slack's sign-in page
            assert resp.status == 200 and resp.content_type == "text/html"
    posted = await client.chat_postMessage(channel="C1", text="parent")
    reply = await client.chat_postMessage(channel="C1", text="reply", thread_ts=posted["ts"])
    link = await client.chat_getPermalink(channel="C1", message_ts=reply["ts"])
    assert link["permalink"].startswith(
        f"https://loretest.slack.com/archives/C1/p{reply['ts'].replace('.', '')}"
    )
    assert f"thread_ts={posted['ts']}" in link["permalink"]
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_getPermalink(channel="C1", message_ts="1.000001")


async def test_a_message_shortcut_reaches_a_socket_mode_client(slack):
    from tests.emulators.slack import message_shortcut_payload

    got: list[dict] = []
    sm = SocketModeClient(
        app_token=APP_TOKEN, web_client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
    )

    async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
        got.append(req.payload)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    sm.socket_mode_request_listeners.append(listener)
    await sm.connect()
    try:
        await slack.wait_connected()
        message = {"type": "message", "user": "U1", "text": "hi", "ts": "1700000000.000100"}
        payload = message_shortcut_payload(
            "lore_summarize", message, "U1", "C1", response_url=slack.new_response_url()
        )
        await slack.wait_for_ack(await slack.send_interactive(payload))
        assert got[0]["type"] == "message_action" and got[0]["callback_id"] == "lore_summarize"
        assert got[0]["message"]["ts"] == got[0]["message_ts"] == "1700000000.000100"
    finally:
        await sm.close()
