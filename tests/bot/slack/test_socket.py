"""The real Bolt app over Socket Mode against the emulator: mentions, DMs, threads, what Lore
ignores, retries, failures, rate limits, Slack errors and load."""

from __future__ import annotations

import asyncio
import logging
import re

from tests.bot.slack.conftest import USER, block_texts, button_values, has_buttons
from tests.conftest import wait_for
from tests.emulators.slack import (
    BOT_ID,
    BOT_USER_ID,
    app_mention_event,
    message_changed_event,
    message_event,
)


class BrokenEngine:
    def answer(self, question, history=(), **access):
        raise RuntimeError("the index exploded")


async def test_mention_is_acked_shows_progress_then_the_answer_with_sources_and_buttons(connect_slack):
    lore = await connect_slack()
    ts = lore.next_ts()
    event = app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", USER, "C1", ts)
    envelope = await lore.slack.send_event(event)
    ack = await lore.slack.wait_for_ack(envelope)
    assert ack.payload is None and ack.latency < 1.0

    answer = await lore.wait_answer(ts)
    [progress] = lore.progress_posts(ts)
    assert progress.args["text"] == "Searching the docs…"  # visible at once, in the thread
    assert answer.args["ts"] == lore.posted("C1", ts)[0]["ts"]  # that message, replaced
    assert progress.at < answer.at
    text = block_texts(answer.args)
    assert "WireGuard" in text
    assert "*Sources*" in text
    assert re.search(r"\n1\. <https://wiki\.example/hb/it/vpn\.md\|VPN> · updated \d{4}-\d{2}-\d{2}", text)
    up, down = button_values(answer.args)
    assert up.startswith("fb:up:") and down == up.replace("fb:up:", "fb:down:")

    # The interaction reached the real feedback store, with the correlation id and a hashed user.
    answer_id = up.split(":")[2]
    row = await wait_for(lambda: lore.interaction(answer_id), what="the interaction row")
    assert row.platform == "slack" and row.channel == "C1" and row.thread == ts
    assert row.user_hash == lore.user_hash(USER) and USER not in row.user_hash
    assert row.question == "how do I set up the VPN?" and len(row.correlation_id) == 12


async def test_the_correlation_id_is_on_every_log_line_of_an_answer(connect_slack, caplog):
    from config.logs import _AddCorrelationId

    caplog.handler.addFilter(_AddCorrelationId())
    caplog.set_level(logging.INFO)
    lore = await connect_slack()
    ts = await lore.mention("how many days of leave do we get?")
    answer = await lore.wait_answer(ts)
    answer_id = button_values(answer.args)[0].split(":")[2]
    row = await wait_for(lambda: lore.interaction(answer_id))
    mine = [r for r in caplog.records if getattr(r, "correlation_id", "-") == row.correlation_id]
    messages = [r.getMessage() for r in mine]
    assert any(m.startswith("answering slack message in C1") for m in messages)
    assert any(m.startswith(f"answered {answer_id}") for m in messages)


async def test_a_dm_is_answered_without_a_mention(connect_slack):
    lore = await connect_slack()
    ts = await lore.say("how many days of paid leave do we get?", channel="D1", channel_type="im")
    answer = await lore.wait_answer(None, channel="D1")  # DMs are answered at the top level
    assert "25 days" in block_texts(answer.args)
    [progress] = lore.progress_posts(None, channel="D1")
    assert "thread_ts" not in progress.args
    assert ts


async def test_a_thread_follow_up_without_a_mention_uses_the_thread(connect_slack):
    lore = await connect_slack()
    first = await lore.mention("how do I set up the VPN?")
    await lore.wait_answer(first)
    follow_up = await lore.say("and is split tunnelling allowed?", thread_ts=first)
    await lore.slack.wait_until(lambda: len(lore.answers("C1", first)) == 2, 20, "the follow-up's answer")
    second = lore.answers("C1", first)[1]
    assert "Split tunnelling is disabled" in block_texts(second.args)

    [replies] = [c for c in lore.slack.calls_to("conversations.replies") if c.args["ts"] == first]
    assert replies.args["channel"] == "C1" and replies.args["latest"] == follow_up
    answer_id = button_values(second.args)[0].split(":")[2]
    row = await wait_for(lambda: lore.interaction(answer_id))
    roles = [t["role"] for t in row.context]
    assert roles == ["user", "assistant"]  # the first question and Lore's answer, not the follow-up
    assert row.context[0]["text"] == "how do I set up the VPN?"
    assert "WireGuard" in row.context[1]["text"]


async def test_after_a_restart_a_follow_up_in_lores_thread_is_still_answered(connect_slack):
    lore = await connect_slack()
    first = await lore.mention("how do I set up the VPN?")
    await lore.wait_answer(first)
    await lore.stop()  # a deploy: the process goes, its data directory stays

    again = await connect_slack()
    await again.say("and is split tunnelling allowed?", thread_ts=first)
    await again.slack.wait_until(lambda: len(again.answers("C1", first)) == 2, 20, "the follow-up's answer")
    assert "Split tunnelling is disabled" in block_texts(again.answers("C1", first)[1].args)


async def test_an_event_redelivered_after_a_restart_is_not_answered_again(connect_slack):
    lore = await connect_slack()
    ts = lore.next_ts()
    event = app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", USER, "C1", ts)
    await lore.slack.send_event(event, event_id="Ev0BEFORERESTART")
    await lore.wait_answer(ts)
    await lore.stop()

    again = await connect_slack()
    envelope = await again.slack.send_event(event, event_id="Ev0BEFORERESTART", retry_attempt=1)
    await again.slack.wait_for_ack(envelope)
    await again.settle(0.5)
    assert len(again.progress_posts(ts)) == 1 and len(again.answers("C1", ts)) == 1


async def test_lore_ignores_bots_itself_edits_and_unaddressed_messages(connect_slack):
    lore = await connect_slack()
    answered = await lore.mention("how do I set up the VPN?")
    await lore.wait_answer(answered)
    before = len(lore.slack.calls_to("chat.postMessage"))

    send = lore.slack.send_event
    # another bot, even mentioning Lore; and Lore's own message in the thread it answered
    await send(message_event(f"<@{BOT_USER_ID}> vpn?", "U0OTHERBOT", "C1", lore.next_ts(), bot_id="B0OTHER"))
    await send(message_event("done", BOT_USER_ID, "C1", lore.next_ts(), thread_ts=answered, bot_id=BOT_ID))
    # an edit that adds a mention
    await send(message_changed_event(f"<@{BOT_USER_ID}> vpn?", "vpn?", USER, "C1", lore.next_ts()))
    # a channel message without a mention, and a reply in a thread Lore never answered in
    await lore.say("how do I set up the VPN?")
    await lore.say("what about leave?", thread_ts=lore.next_ts())
    await lore.settle(0.5)
    assert len(lore.slack.calls_to("chat.postMessage")) == before


async def test_five_deliveries_of_one_event_give_one_answer(connect_slack):
    lore = await connect_slack()
    ts = lore.next_ts()
    event = app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", USER, "C1", ts)
    envelopes = [
        await lore.slack.send_event(event, event_id="Ev0RETRIED", retry_attempt=attempt)
        for attempt in range(5)
    ]
    for envelope in envelopes:
        await lore.slack.wait_for_ack(envelope)  # every delivery is acked
    await lore.wait_answer(ts)
    await lore.settle(0.5)
    assert len(lore.progress_posts(ts)) == 1
    assert len(lore.answers("C1", ts)) == 1


async def test_a_mention_delivered_as_app_mention_and_as_message_gives_one_answer(connect_slack):
    lore = await connect_slack()
    ts = lore.next_ts()
    text = f"<@{BOT_USER_ID}> how do I set up the VPN?"
    await lore.slack.send_event(message_event(text, USER, "C1", ts))  # message.channels
    await lore.slack.send_event(app_mention_event(text, USER, "C1", ts))  # app_mention, another event_id
    await lore.wait_answer(ts)
    await lore.settle(0.5)
    assert len(lore.progress_posts(ts)) == 1


async def test_channel_allowlist(connect_slack):
    lore = await connect_slack(slack_cfg={"channels": ["CALLOWED"]})
    refused = await lore.mention("vpn?", channel="COTHER")
    allowed = await lore.mention("how do I set up the VPN?", channel="CALLOWED")
    await lore.wait_answer(allowed, channel="CALLOWED")
    await lore.say("how many days of leave?", channel="D9", channel_type="im")  # DMs always work
    await lore.wait_answer(None, channel="D9")
    await lore.settle(0.3)
    assert not lore.progress_posts(refused, channel="COTHER")


async def test_when_the_engine_fails_the_user_sees_an_error_with_the_correlation_id(connect_slack, caplog):
    from config.logs import _AddCorrelationId

    caplog.handler.addFilter(_AddCorrelationId())
    lore = await connect_slack(engine=BrokenEngine())
    ts = await lore.mention("how do I set up the VPN?")
    [progress] = await lore.slack.wait_for("chat.postMessage")
    await lore.slack.wait_for("chat.update")
    [update] = lore.slack.calls_to("chat.update")
    assert update.args["ts"] == lore.posted("C1", ts)[0]["ts"]  # the progress message became the error
    text = update.args["text"]
    assert text.startswith("Sorry, something went wrong")
    failures = [r for r in caplog.records if r.getMessage() == "answering failed"]
    assert failures and failures[0].exc_info and "the index exploded" in str(failures[0].exc_info[1])
    cid = failures[0].correlation_id
    assert cid != "-" and f"reference: {cid}" in text and cid in block_texts(update.args)
    assert not has_buttons(update.args)
    assert progress.args["text"] == "Searching the docs…"


async def test_rate_limited_users_get_a_polite_private_message(connect_slack):
    lore = await connect_slack(chat={"user_per_minute": 2})
    sent = [await lore.mention("vpn?"), await lore.mention("leave?"), await lore.mention("deploys?")]
    [notice] = await lore.slack.wait_for("chat.postEphemeral")
    # Events are handled concurrently: whichever of the three reaches the limiter last is refused.
    limited = notice.args["thread_ts"]
    assert notice.args["user"] == USER and limited in sent
    assert notice.args["text"].startswith("Sorry, you're asking faster than I can keep up")
    for ts in sent:
        if ts != limited:
            await lore.wait_answer(ts)
    await lore.settle(0.3)
    assert not lore.progress_posts(limited)
    other = await lore.mention("how do I set up the VPN?", user="U2")  # per user: others still get answers
    await lore.wait_answer(other)


async def test_slack_429_and_server_errors_are_retried_and_nothing_is_lost(connect_slack):
    lore = await connect_slack()
    lore.slack.fail_next("chat.postMessage", 429, retry_after=1)
    lore.slack.fail_next("chat.update", 503, times=2)
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts, timeout=30)
    posts = [c for c in lore.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == ts]
    assert [c.status for c in posts] == [429, 200]
    assert posts[1].at - posts[0].at >= 1.0  # Retry-After honoured
    assert [c.status for c in lore.slack.calls_to("chat.update")] == [503, 503, 200]
    assert "WireGuard" in block_texts(answer.args)


async def test_a_post_that_slack_stored_before_failing_is_not_posted_twice(connect_slack):
    """chat.postMessage answers 500 after creating the message: exactly one message remains, the
    progress message, edited into the answer (a blind retry left a stray "Searching the docs…")."""
    lore = await connect_slack()
    lore.slack.fail_next("chat.postMessage", 500, after_applying=True)
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts, timeout=30)
    await lore.settle(0.5)
    [message] = lore.posted("C1", ts)
    assert message["ts"] == answer.args["ts"] and "WireGuard" in block_texts(message)
    assert [c.status for c in lore.slack.calls_to("chat.postMessage")] == [500]
    assert lore.slack.calls_to("conversations.replies")  # it looked before posting again


async def test_a_post_that_failed_before_storing_is_posted_again_once(connect_slack):
    lore = await connect_slack()
    lore.slack.fail_next("chat.postMessage", 503, times=2)
    ts = await lore.mention("how do I set up the VPN?")
    answer = await lore.wait_answer(ts, timeout=30)
    await lore.settle(0.5)
    [message] = lore.posted("C1", ts)
    assert message["ts"] == answer.args["ts"]
    assert [c.status for c in lore.slack.calls_to("chat.postMessage")] == [503, 503, 200]


async def test_a_lost_top_level_post_is_found_in_the_channel_history(slack_settings, make_services, slack):
    """A post outside a thread (here through the outbox directly) is looked up with conversations.history."""
    from bot.core.messages import Notice, Target
    from bot.slack.outbox import SlackOutbox, make_web_client

    settings = slack_settings()
    outbox = SlackOutbox(make_web_client(settings.slack), retries=3)
    slack.fail_next("chat.postMessage", 502, after_applying=True)
    ref = await outbox.send(Target("C7"), Notice("Reindexing handbook…"))
    [message] = slack.messages["C7"]
    assert ref.id == message["ts"] and ref.channel == "C7"
    assert slack.calls_to("conversations.history")


async def test_fifty_mentions_at_once_are_all_answered(connect_slack):
    lore = await connect_slack()
    questions = ["how do I set up the VPN?", "how many days of leave?", "when can we deploy to production?"]
    sent = await asyncio.gather(
        *(lore.mention(questions[i % 3], user=f"U{i % 7}", channel=f"C{i % 5}") for i in range(50))
    )
    threads = [(f"C{i % 5}", ts) for i, ts in enumerate(sent)]
    await lore.slack.wait_until(lambda: all(lore.answers(ch, ts) for ch, ts in threads), 120, "50 answers")
    await lore.settle(0.2)
    assert len(lore.slack.acks) == 50 and max(a.latency for a in lore.slack.acks) < 3  # acked in time, all
    assert all(len(lore.answers(ch, ts)) == 1 for ch, ts in threads)
    assert all(len(lore.progress_posts(ts, ch)) == 1 for ch, ts in threads)
