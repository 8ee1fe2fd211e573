""" "Ask an expert" on Slack: the real Bolt app (Socket Mode, and signed HTTP requests) against the
emulator, with the real embedded task client writing to the real SQLite feedback log.

The round trip: the button under an answer, the click, Lore's post to the expert user group in the
thread, the asker told privately, the expert's reply captured, the asker's ✅ accepting it, the
item in the review queue under the expert filter, and, once approved, in the SFT and DPO exports.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from bot.core.escalation import FROM_DM
from feedback.experts import expert_answers
from feedback.models import Escalation, ExpertAnswer
from knowledge.answer import ABSTAIN_TEXT
from tests.bot.experts import approve_and_export, queued
from tests.bot.fakes import AccessEngine, Doc
from tests.bot.slack.conftest import SIGNING_SECRET, USER, block_texts, button_values
from tests.conftest import wait_for
from tests.emulators.slack import (
    BOT_USER_ID,
    SlackEmulator,
    block_action_payload,
    event_callback,
    reaction_added_event,
    sign_request,
)

EXPERT, CHATTY, OUTSIDER, CHANNEL_EXPERT = "U7", "U2", "U9", "U8"
EXPERTS = "slack:group:S0EXP"
EXPERT_ANSWER = "Use the WireGuard profile from Self Service, then sign in with your badge."


@pytest.fixture
async def slack():
    users = {u: {"name": n} for u, n in ((USER, "ada"), (CHATTY, "bob"), (EXPERT, "eve"), (OUTSIDER, "otto"))}
    async with SlackEmulator(
        users=users,
        usergroups={"S0EXP": [EXPERT], "S0HR": [USER]},
        members={"C0EXPERTS": [CHANNEL_EXPERT, BOT_USER_ID]},
    ) as emulator:
        yield emulator


def expert_value(args) -> str:
    [value] = [v for v in button_values(args) if v.startswith("expert:")]
    return value


def click(lore, value: str, message_ts: str, thread_ts: str | None, *, user: str = USER, channel="C1", n=1):
    payload = block_action_payload(
        "lore_ask_expert",
        value,
        user,
        channel,
        message_ts,
        thread_ts=thread_ts,
        trigger_id=f"1111.2222.expert-{n}",
        response_url=lore.slack.new_response_url(f"expert-{n}"),
    )
    payload["actions"][0]["action_ts"] = lore.next_ts()  # each click has its own, as in Slack
    return payload


def posts(lore, channel: str, thread: str | None = None) -> list:
    return [
        c
        for c in lore.slack.calls_to("chat.postMessage")
        if c.args.get("channel") == channel and c.args.get("thread_ts") == thread and c.status == 200
    ]


def told(lore, user: str = USER) -> list:
    return [c for c in lore.slack.calls_to("chat.postEphemeral") if c.args.get("user") == user]


def rows(lore, model) -> list:
    with lore.db.sessions() as session:
        return list(session.scalars(select(model)))


async def test_round_trip_click_post_expert_reply_accept_queue_and_export(connect_slack, caplog):
    caplog.set_level(logging.INFO)
    lore = await connect_slack(
        escalation={"default": {"slack": EXPERTS}}, datasets={"validation_fraction": 0}
    )
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts)
    value = expert_value(answer.args)
    answer_id = value.split(":")[1]
    assert "Ask an expert" in json.dumps(answer.args["blocks"])

    await lore.slack.send_interactive(click(lore, value, answer.args["ts"], ts))
    [asked] = await wait_for(lambda: posts(lore, "C1", ts)[1:], what="the post to the experts")
    text = block_texts(asked.args)
    assert text.startswith(f"<!subteam^S0EXP>: <@{USER}> asked for an expert's help")
    assert "&gt; how do I set up the VPN?" in text and "*Lore's answer*" in text
    permalink = f"https://loretest.slack.com/archives/C1/p{ts.replace('.', '')}"
    assert permalink in text
    [notice] = await wait_for(lambda: told(lore), what="the asker told")
    assert notice.args["text"].startswith("I've asked <!subteam^S0EXP>")
    assert notice.args["thread_ts"] == ts
    [escalation] = await wait_for(lambda: rows(lore, Escalation), what="the escalation row")
    assert (escalation.answer_id, escalation.target, escalation.routed_by) == (answer_id, EXPERTS, "default")
    assert escalation.answer_shown and escalation.user_hash == lore.user_hash(USER)

    # Chatter in the thread: Lore stays quiet (the experts have it) and records nothing.
    chatter = await lore.say("same problem here, any news?", user=CHATTY, thread_ts=ts)
    reply = await lore.say(EXPERT_ANSWER, user=EXPERT, thread_ts=ts)
    [captured] = await wait_for(lambda: expert_answers(lore.db.sessions, answer_id), what="the expert answer")
    assert (captured.text, captured.from_expert, captured.accepted) == (EXPERT_ANSWER, True, False)
    assert len(lore.answers("C1", ts)) == 1  # no answer to the chatter or to the expert

    # ✅ by an outsider on the chatter: ignored. ✅ by the asker on the expert's reply: accepted.
    await lore.slack.send_event(reaction_added_event("white_check_mark", OUTSIDER, "C1", chatter))
    await lore.slack.send_event(reaction_added_event("white_check_mark", USER, "C1", reply))
    await wait_for(lambda: expert_answers(lore.db.sessions, answer_id)[0].accepted, what="the acceptance")
    await lore.settle()
    [stored] = rows(lore, ExpertAnswer)
    assert stored.accepted_by == lore.user_hash(USER) and stored.author_hash == lore.user_hash(EXPERT)
    assert stored.reply_id == f"slack:C1:{reply}"

    assert queued(lore.db, answer_id, "any") and queued(lore.db, answer_id, "accepted")
    approve_and_export(
        lore.db, lore.settings, answer_id, EXPERT_ANSWER, lore.interaction(answer_id).answer_text
    )
    assert not [r for r in caplog.records if EXPERT_ANSWER in r.getMessage()]  # no reply text in the log


async def test_chatter_is_ignored_but_a_reply_the_asker_accepts_is_kept(connect_slack):
    lore = await connect_slack(escalation={"default": {"slack": EXPERTS}})
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts)
    value = expert_value(answer.args)
    answer_id = value.split(":")[1]
    first = click(lore, value, answer.args["ts"], ts)
    await lore.slack.send_interactive(first)
    await lore.slack.send_interactive(first)  # the same click delivered again
    await wait_for(lambda: rows(lore, Escalation), what="the escalation")
    await lore.settle()
    assert len(told(lore)) == 1 and len(posts(lore, "C1", ts)) == 2

    thanks = await lore.say("thanks!", user=CHATTY, thread_ts=ts)
    helpful = await lore.say("Ask IT for the new VPN profile, it fixed it for me.", user=CHATTY, thread_ts=ts)
    await lore.slack.send_event(reaction_added_event("thumbsup", USER, "C1", thanks))  # not a ✅
    await lore.slack.send_event(reaction_added_event("white_check_mark", CHATTY, "C1", helpful))  # own reply
    await lore.settle(0.5)
    assert rows(lore, ExpertAnswer) == []  # chatter is not training data

    await lore.slack.send_event(reaction_added_event("white_check_mark", USER, "C1", helpful))
    [kept] = await wait_for(lambda: rows(lore, ExpertAnswer), what="the accepted reply")
    assert (kept.answer_id, kept.from_expert, kept.accepted) == (answer_id, False, True)
    assert queued(lore.db, answer_id, "accepted")

    # A second click asks nobody again; the clicker is told who was asked already.
    await lore.slack.send_interactive(click(lore, value, answer.args["ts"], ts, user=CHATTY, n=2))
    [again] = await wait_for(lambda: told(lore, CHATTY), what="the second clicker told")
    assert again.args["text"].startswith("Experts were already asked")
    assert len(posts(lore, "C1", ts)) == 2  # the answer and the one post to the experts


DOCS = [
    Doc("handbook", "it/vpn.md", "Install WireGuard for the VPN from Self Service."),
    Doc("hr", "salary-bands.md", "Salary bands for engineers are set by HR. CANARY-ESC-7", ("group:hr",)),
]


async def test_a_restricted_answer_is_not_posted_to_an_expert_channel_that_may_not_read_it(connect_slack):
    """An HR member's DM answer used an HR-only document; HR questions go to #experts, whose
    audience may not read it: the experts get the question only (no link: a DM has none), and
    the asker is told where."""
    lore = await connect_slack(
        engine=AccessEngine(DOCS),
        groups={"hr": ["slack:group:S0HR"]},
        escalation={
            "default": {"slack": EXPERTS},
            "routes": [{"sources": ["hr"], "slack": "slack:channel:C0EXPERTS"}],
        },
    )
    await lore.say("what are the salary bands?", user=USER, channel="D1", channel_type="im")
    await lore.slack.wait_until(lambda: bool(lore.answers("D1", None)), 20, "the DM answer")
    [answer] = lore.answers("D1", None)
    assert "CANARY-ESC-7" in block_texts(answer.args)
    await lore.slack.send_interactive(
        click(lore, expert_value(answer.args), answer.args["ts"], None, channel="D1")
    )

    [asked] = await wait_for(lambda: posts(lore, "C0EXPERTS"), what="the post in #experts")
    text = block_texts(asked.args)
    assert "&gt; what are the salary bands?" in text and "CANARY-ESC-7" not in json.dumps(asked.args)
    assert "not shown here" in text and "Open the thread" not in text
    [notice] = await wait_for(lambda: told(lore), what="the asker told")
    assert notice.args["text"].startswith("I've asked <#C0EXPERTS>")
    [escalation] = await wait_for(lambda: rows(lore, Escalation), what="the escalation")
    assert (escalation.routed_by, escalation.answer_shown) == ("source:hr", False)

    # A member of #experts answers under Lore's post: captured for the DM's answer.
    await lore.say(
        "Bands are on the HR portal.",
        user=CHANNEL_EXPERT,
        channel="C0EXPERTS",
        thread_ts=lore.posted("C0EXPERTS")[0]["ts"],
    )
    [captured] = await wait_for(lambda: rows(lore, ExpertAnswer), what="the channel expert's answer")
    assert captured.from_expert and captured.answer_id == escalation.answer_id


async def test_a_user_group_cannot_be_brought_into_a_dm(connect_slack):
    lore = await connect_slack(escalation={"default": {"slack": EXPERTS}})
    await lore.say("how do I set up the VPN?", user=USER, channel="D1", channel_type="im")
    await lore.slack.wait_until(lambda: bool(lore.answers("D1", None)), 20, "the DM answer")
    [answer] = lore.answers("D1", None)
    await lore.slack.send_interactive(
        click(lore, expert_value(answer.args), answer.args["ts"], None, channel="D1")
    )
    [notice] = await wait_for(lambda: told(lore), what="the refusal")
    assert notice.args["text"] == FROM_DM
    await lore.settle()
    assert rows(lore, Escalation) == [] and len(posts(lore, "D1")) == 1  # only the answer


async def test_no_button_without_experts_for_the_platform(connect_slack):
    lore = await connect_slack(escalation={"default": {"discord": "discord:role:1400000000000000099"}})
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts)
    assert not [v for v in button_values(answer.args) if v.startswith("expert:")]


async def test_http_mode_click_and_reaction_are_signed_requests(make_http_lore):
    lore = await make_http_lore(escalation={"default": {"slack": EXPERTS}})

    async def post(path: str, body: str, content_type: str) -> httpx.Response:
        headers = sign_request(body, SIGNING_SECRET) | {"Content-Type": content_type}
        return await lore.http.post(path, content=body, headers=headers)

    async def event(e: dict) -> None:
        lore.slack.remember_event(e)
        resp = await post("/slack/events", json.dumps(event_callback(e)), "application/json")
        assert resp.status_code == 200

    from tests.emulators.slack import app_mention_event

    ts = lore.next_ts()
    await event(app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", USER, "C1", ts))
    answer = await lore.wait_answer(ts)
    payload = click(lore, expert_value(answer.args), answer.args["ts"], ts)
    resp = await post(
        "/slack/events", urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
    )
    assert resp.status_code == 200
    await wait_for(lambda: posts(lore, "C1", ts)[1:], what="the post to the experts")
    from tests.emulators.slack import message_event

    reply = lore.next_ts()
    await event(message_event(EXPERT_ANSWER, EXPERT, "C1", reply, thread_ts=ts))
    answer_id = expert_value(answer.args).split(":")[1]
    await wait_for(lambda: expert_answers(lore.db.sessions, answer_id), what="the expert answer")
    await event(reaction_added_event("white_check_mark", EXPERT, "C1", reply))  # an expert may accept too
    await wait_for(
        lambda: [e for e in expert_answers(lore.db.sessions, answer_id) if e.accepted and e.from_expert],
        what="the accepted expert answer",
    )
    forged = await lore.http.post(
        "/slack/events",
        content=json.dumps(event_callback(reaction_added_event("white_check_mark", USER, "C1", reply))),
        headers={
            "Content-Type": "application/json",
            "X-Slack-Signature": "v0=forged",
            "X-Slack-Request-Timestamp": "1",
        },
    )
    assert forged.status_code == 401


async def test_when_the_expert_channel_refuses_lore_the_asker_is_told_and_may_click_again(connect_slack):
    lore = await connect_slack(escalation={"default": {"slack": "slack:channel:C0EXPERTS"}})
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts)
    value = expert_value(answer.args)
    lore.slack.fail_next("chat.postMessage", status=200, error="not_in_channel")
    await lore.slack.send_interactive(click(lore, value, answer.args["ts"], ts))
    [sorry] = await wait_for(lambda: told(lore), what="the asker told it failed")
    assert sorry.args["text"].startswith("Sorry, I couldn't reach the experts")
    assert rows(lore, Escalation) == [] and lore.posted("C0EXPERTS") == []

    await asyncio.sleep(1.1)  # the failed attempt holds the answer for a second at most
    await lore.slack.send_interactive(click(lore, value, answer.args["ts"], ts, n=2))
    await wait_for(lambda: lore.posted("C0EXPERTS"), what="the post on the second click")
    await wait_for(lambda: rows(lore, Escalation), what="the escalation")


async def test_an_abstention_has_the_button_and_the_experts_hear_that_lore_found_nothing(connect_slack):
    lore = await connect_slack(engine=AccessEngine(DOCS), escalation={"default": {"slack": EXPERTS}})
    ts = await lore.mention("who feeds the office parrot?")
    answer = await lore.wait_answer(ts)
    assert ABSTAIN_TEXT in block_texts(answer.args)
    await lore.slack.send_interactive(click(lore, expert_value(answer.args), answer.args["ts"], ts))
    [asked] = await wait_for(lambda: posts(lore, "C1", ts)[1:], what="the post to the experts")
    assert "Lore found nothing in the docs" in block_texts(asked.args)
    assert "*Lore's answer*" not in block_texts(asked.args)
