"""Permissions on Slack (issue 19): the real Bolt app (Socket Mode, and signed HTTP requests)
against the Slack emulator, with its user groups, emails and shared channels.

The engine is `AccessEngine` (the engine's access contract over a few labelled documents, and a
record of what the core asked for): the core's and the adapter's decisions are under test here;
the index's own filter is the index's suite, and `test_canary_*` joins the two once merged.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import httpx
import pytest

from bot.core.access import EXTERNAL_REFUSED, SHARE_REFUSED
from knowledge.access import PUBLIC_AUDIENCE
from tests.bot.fakes import AccessEngine, Doc
from tests.bot.slack.conftest import SIGNING_SECRET, block_texts, button_values, share_click
from tests.conftest import wait_for
from tests.emulators.slack import (
    BOT_USER_ID,
    SlackEmulator,
    app_mention_event,
    block_action_payload,
    event_callback,
    sign_request,
    slash_command_payload,
)

MARKER = "CANARY-SLACK-41"  # only in the restricted document
DOCS = [
    Doc("handbook", "it/vpn.md", "Install WireGuard for the VPN from Self Service."),
    Doc(
        "handbook", "hr/salary-bands.md", f"Salary bands for engineers are set by HR. {MARKER}", ("group:hr",)
    ),
    Doc("eng", "deploys.md", "Production deploys need the release pipeline."),
]
GROUPS = {"hr": ["slack:group:S0HR", "email:*@hr.example.com"]}
SALARY = "what are the salary bands?"
VPN = "which VPN client to install?"
HR_BY_GROUP, HR_BY_EMAIL, OUTSIDER = "U1", "U2", "U9"


@pytest.fixture
async def slack():
    users = {
        HR_BY_GROUP: {"name": "ada"},
        HR_BY_EMAIL: {"name": "ann", "email": "Ann@HR.example.com"},
        OUTSIDER: {"name": "otto", "email": "otto@example.com"},
    }
    async with SlackEmulator(
        users=users,
        usergroups={"S0HR": [HR_BY_GROUP]},
        channels={"C0EXT": {"is_shared": True, "is_ext_shared": True}},
    ) as emulator:
        yield emulator


async def connect(connect_slack, engine, **slack_cfg):
    return await connect_slack(engine=engine, groups=GROUPS, slack_cfg=slack_cfg)


def private_values(args) -> list[str]:
    return [v for v in button_values(args) if v.startswith("private:")]


async def dm(lore, text: str, user: str, channel: str):
    before = len(lore.answers(channel, None))
    await lore.say(text, user=user, channel=channel, channel_type="im")
    await lore.slack.wait_until(lambda: len(lore.answers(channel, None)) > before, 20, "the DM answer")
    return lore.answers(channel, None)[before]


async def test_dms_get_the_askers_groups_and_email_and_channels_the_channels_audience(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    by_group = await dm(lore, SALARY, HR_BY_GROUP, "D1")
    by_email = await dm(lore, SALARY, HR_BY_EMAIL, "D2")
    outsider = await dm(lore, SALARY, OUTSIDER, "D3")
    assert MARKER in block_texts(by_group.args) and MARKER in block_texts(by_email.args)
    assert MARKER not in block_texts(outsider.args)
    grants = [c.audience.grants for c in engine.calls]
    assert grants[0] == {"public", "slack:U1", "slack:group:S0HR", "group:hr"}
    assert grants[1] == {"public", "slack:U2", "email:ann@hr.example.com", "group:hr"}
    assert grants[2] == {"public", "slack:U9", "email:otto@example.com"}
    assert all(c.wider is None for c in engine.calls)

    ts = await lore.mention(SALARY, user=HR_BY_GROUP, channel="C1")
    answer = await lore.wait_answer(ts)
    assert MARKER not in block_texts(answer.args)
    call = engine.calls[-1]
    assert call.audience.grants == {"public", "channel:slack:C1"} and "group:hr" in call.wider.grants

    # The directory is cached: one usergroups.users.list for four questions, one users.info a person.
    await dm(lore, VPN, HR_BY_GROUP, "D1")
    assert len(lore.slack.calls_to("usergroups.users.list")) == 1
    assert sorted(c.args["user"] for c in lore.slack.calls_to("users.info")) == ["U1", "U2", "U9"]
    assert len(lore.slack.calls_to("conversations.info")) == 1  # C1, once; DMs need no lookup


async def test_answer_privately_shows_only_when_something_was_left_out_and_answers_the_clicker(
    connect_slack, caplog
):
    caplog.set_level(logging.DEBUG)  # even at DEBUG, no answer text in the log (slack_sdk would log bodies)
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    plain_ts = await lore.mention(VPN, user=HR_BY_GROUP)
    plain = await lore.wait_answer(plain_ts)
    assert private_values(plain.args) == []  # nothing withheld, no button

    ts = await lore.mention(SALARY, user=HR_BY_GROUP)
    answer = await lore.wait_answer(ts)
    [value] = private_values(answer.args)
    assert MARKER not in block_texts(answer.args) and "Answer privately" in json.dumps(answer.args["blocks"])

    # Someone else in HR (by email) clicks: an ephemeral answer for them, with their rights.
    def click(user: str) -> dict:
        return block_action_payload(
            "lore_answer_privately",
            value,
            user,
            "C1",
            answer.args["ts"],
            thread_ts=ts,
            response_url=lore.slack.new_response_url(f"private-{user}"),
        )

    await lore.slack.send_interactive(click(HR_BY_EMAIL))

    def ephemeral_answers(user: str) -> list:
        return [
            c
            for c in lore.slack.calls_to("chat.postEphemeral")
            if c.args.get("user") == user and button_values(c.args)
        ]

    [mine] = (await wait_for(lambda: ephemeral_answers(HR_BY_EMAIL), what="the private answer"))[:1]
    assert MARKER in block_texts(mine.args) and mine.args["channel"] == "C1" and mine.args["thread_ts"] == ts
    assert private_values(mine.args) == []
    assert engine.calls[-1].audience.grants == {"public", "slack:U2", "email:ann@hr.example.com", "group:hr"}
    # Nothing went to the channel or through the response_url (which could replace the public answer).
    assert all(MARKER not in block_texts(c.args) for c in lore.slack.calls_to("chat.postMessage"))
    assert all(MARKER not in block_texts(c.args) for c in lore.slack.calls_to("chat.update"))
    assert lore.slack.calls_to("response_url") == []

    # The same button clicked by someone outside HR: their own (public) answer.
    await lore.slack.send_interactive(click(OUTSIDER))
    [theirs] = (await wait_for(lambda: ephemeral_answers(OUTSIDER), what="the outsider's answer"))[:1]
    assert MARKER not in block_texts(theirs.args)
    assert caplog.records and not [r.name for r in caplog.records if MARKER in r.getMessage()]


async def test_share_in_channel_is_refused_for_restricted_content_and_the_user_told_why(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    url = lore.slack.new_response_url("ask")
    await lore.slack.send_slash_command(slash_command_payload("/ask", SALARY, HR_BY_GROUP, "C1", url))
    await lore.slack.wait_until(
        lambda: any(button_values(c.args) for c in lore.slack.calls_to("response_url"))
    )
    shown = next(c for c in lore.slack.calls_to("response_url") if button_values(c.args))
    assert shown.args["response_type"] == "ephemeral" and MARKER in block_texts(shown.args)
    share = next(v for v in button_values(shown.args) if v.startswith("share:"))

    await lore.slack.send_interactive(share_click(lore.slack, share, name="share"))
    [told] = await wait_for(
        lambda: [c for c in lore.slack.calls_to("response_url") if c.name == "share"], what="the refusal"
    )
    assert told.args["response_type"] == "ephemeral" and told.args["replace_original"] is False
    assert SHARE_REFUSED.split(":")[0] in told.args["text"]
    await lore.settle()
    assert [c for c in lore.slack.calls_to("response_url") if c.name == "share"] == [told]  # no delete
    assert lore.slack.calls_to("chat.postMessage") == []  # nothing posted in the channel


async def test_an_external_shared_channel_gets_public_content_only(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    ts = await lore.mention(SALARY, user=HR_BY_GROUP, channel="C0EXT")
    answer = await lore.wait_answer(ts, channel="C0EXT")
    assert MARKER not in block_texts(answer.args) and private_values(answer.args) == []
    assert engine.calls[-1].audience == PUBLIC_AUDIENCE and engine.calls[-1].wider is None


async def test_refuse_mode_answers_nothing_in_an_external_shared_channel(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine, external_channels="refuse")
    ts = await lore.mention(SALARY, user=HR_BY_GROUP, channel="C0EXT")
    [notice] = await lore.slack.wait_for("chat.postMessage")
    assert notice.args["channel"] == "C0EXT" and notice.args["thread_ts"] == ts
    assert notice.args["text"] == EXTERNAL_REFUSED
    await lore.settle()
    assert engine.calls == [] and lore.answers("C0EXT", ts) == []


async def test_channel_sources_scope_a_channel_to_its_sources(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine, channel_sources=[{"channel": "C0ENG", "sources": ["eng"]}])
    ts = await lore.mention("how do production deploys work?", channel="C0ENG")
    await lore.wait_answer(ts, channel="C0ENG")
    await dm(lore, "how do production deploys work?", HR_BY_GROUP, "D1")
    assert [c.sources for c in engine.calls] == [["eng"], None]


async def test_a_failing_directory_falls_back_to_the_payload_never_to_more(connect_slack, caplog):
    caplog.set_level(logging.WARNING)
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    lore.slack.fail_next("usergroups.users.list", status=200, error="missing_scope")
    answer = await dm(lore, SALARY, HR_BY_GROUP, "D1")
    assert engine.calls[0].audience.grants == {"public", "slack:U1"}
    assert MARKER not in block_texts(answer.args)
    assert any("payload's principals only" in r.getMessage() for r in caplog.records)
    # The failure was not cached: the next question resolves the user group.
    await dm(lore, SALARY, HR_BY_GROUP, "D1")
    assert "group:hr" in engine.calls[1].audience.grants


async def test_when_conversations_info_fails_the_events_own_flag_decides_else_public_only(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    lore.slack.fail_next("conversations.info", status=200, error="missing_scope", times=2)
    # A mention's event says whether its channel is shared (is_ext_shared_channel: false here).
    ts = await lore.mention(SALARY, user=HR_BY_GROUP)
    await lore.wait_answer(ts)
    assert engine.calls[0].audience.grants == {"public", "channel:slack:C1"}
    # A /ask payload says nothing: without conversations.info, public only.
    url = lore.slack.new_response_url("ask")
    await lore.slack.send_slash_command(slash_command_payload("/ask", SALARY, HR_BY_GROUP, "C1", url))
    await wait_for(lambda: len(engine.calls) == 2, what="the /ask")
    assert engine.calls[1].audience == PUBLIC_AUDIENCE


async def test_the_events_flag_alone_makes_a_channel_shared(connect_slack):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_slack, engine)
    ts = await lore.mention(SALARY, user=HR_BY_GROUP, channel="C0NEW", ext_shared=True)
    await lore.wait_answer(ts, channel="C0NEW")
    assert engine.calls[0].audience == PUBLIC_AUDIENCE
    assert lore.slack.calls_to("conversations.info") == []  # Slack said so: no lookup needed


# ---- HTTP mode: signed requests ----------------------------------------------------------------


@pytest.fixture
async def http_lore(make_http_lore):
    engine = AccessEngine(DOCS)
    lore = await make_http_lore(engine=engine, groups=GROUPS)
    lore.engine = engine
    return lore


async def signed_post(lore, path: str, body: str, content_type: str) -> httpx.Response:
    headers = {"Content-Type": content_type, **sign_request(body, SIGNING_SECRET)}
    return await lore.http.post(path, content=body, headers=headers)


async def test_signed_requests_a_channel_answer_and_its_answer_privately_click(http_lore):
    lore = http_lore
    ts = lore.next_ts()
    event = app_mention_event(f"<@{BOT_USER_ID}> {SALARY}", HR_BY_GROUP, "C1", ts)
    response = await signed_post(lore, "/slack/events", json.dumps(event_callback(event)), "application/json")
    assert response.status_code == 200
    answer = await lore.wait_answer(ts)
    [value] = private_values(answer.args)
    assert MARKER not in block_texts(answer.args)

    click = block_action_payload(
        "lore_answer_privately", value, HR_BY_EMAIL, "C1", answer.args["ts"], thread_ts=ts
    )
    body = urlencode({"payload": json.dumps(click)})
    response = await signed_post(lore, "/slack/interactions", body, "application/x-www-form-urlencoded")
    assert response.status_code == 200
    await lore.slack.wait_until(
        lambda: any(button_values(c.args) for c in lore.slack.calls_to("chat.postEphemeral")), 20
    )
    [private] = [c for c in lore.slack.calls_to("chat.postEphemeral") if button_values(c.args)]
    assert private.args["user"] == HR_BY_EMAIL and MARKER in block_texts(private.args)
    assert lore.engine.calls[-1].audience.grants >= {"group:hr", "slack:U2"}
