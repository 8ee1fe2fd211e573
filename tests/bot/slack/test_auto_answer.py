"""Auto-answer channels on Slack (bot/core/autoanswer.py): the real Bolt app over Socket Mode
against the emulator, the real index, detector and engine. Lore answers new questions in
`[[slack.auto_answer]]` channels unasked, and only when it has a cited answer."""

from __future__ import annotations

import json
from typing import Any

from bot.core.autoanswer import ENGLISH_ONLY_TEXT, OFFER_TEXT, PAUSED_TEXT, RESUMED_TEXT
from tests.bot.slack.conftest import ADMIN, USER, button_values, has_buttons
from tests.emulators.slack import (
    BOT_USER_ID,
    block_action_payload,
    event_callback,
    reaction_added_event,
    slash_command_payload,
)

HELP = "C0HELP"  # the auto-answer channel
OTHER = "C1"


def auto(**entry: Any) -> dict[str, Any]:
    return {"auto_answer": [{"channel": HELP} | entry]}


def replies(lore: Any, ts: str, channel: str = HELP) -> list[dict[str, Any]]:
    return lore.posted(channel, thread_ts=ts)


async def wait_reply(lore: Any, ts: str, channel: str = HELP) -> dict[str, Any]:
    await lore.slack.wait_until(lambda: bool(replies(lore, ts, channel)), 20, f"a reply to {ts}")
    await lore.settle()
    return replies(lore, ts, channel)[0]


async def test_a_question_in_an_auto_answer_channel_gets_a_cited_answer_in_its_thread(connect_slack):
    lore = await connect_slack(slack_cfg=auto())
    ts = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    answer = await wait_reply(lore, ts)
    assert has_buttons(answer) and "WireGuard" in str(answer["blocks"])
    assert "it/vpn.md" in str(answer["blocks"])  # the citation
    assert not lore.progress_posts(ts, HELP)[1:]  # no "Searching the docs…" for a question nobody asked
    assert len(replies(lore, ts)) == 1
    # Someone else chatting in the thread is not asking Lore.
    await lore.say("is split tunnelling allowed?", user="U2", channel=HELP, thread_ts=ts)
    await lore.settle(1)
    assert len(replies(lore, ts)) == 1
    # The asker's follow-up is answered like a mention.
    await lore.say("and is split tunnelling allowed?", channel=HELP, thread_ts=ts)
    await lore.wait_answer(ts, HELP)


async def test_chatter_and_other_channels_are_left_alone(connect_slack):
    lore = await connect_slack(slack_cfg=auto())
    for text in ("deploying now", "thanks!", "lgtm", "anyone around?", "how was everyone's weekend?"):
        await lore.say(text, channel=HELP)
    await lore.say("how do I set up the VPN on my laptop?", channel=OTHER)  # not an auto-answer channel
    await lore.settle(1)
    assert not [m for msgs in lore.slack.messages.values() for m in msgs if m.get("user") == BOT_USER_ID]


async def test_below_the_confidence_threshold_lore_stays_silent_or_offers_an_expert(connect_slack):
    lore = await connect_slack(slack_cfg=auto())
    ts = await lore.say("what is the name of the office dog?", channel=HELP)
    await lore.settle(1)
    assert replies(lore, ts) == []  # never "I couldn't find this" to someone who didn't ask
    await lore.stop()

    lore = await connect_slack(slack_cfg=auto(on_unsure="offer"))
    ts = await lore.say("what is the name of the office dog?", channel=HELP)
    offer = await wait_reply(lore, ts)
    assert offer["text"] == OFFER_TEXT and not has_buttons(offer)
    await lore.stop()

    # With experts configured, the offer carries "Ask an expert"; a click asks them.
    lore = await connect_slack(
        slack_cfg=auto(on_unsure="offer"), escalation={"default": {"slack": "slack:group:S0EXPERTS"}}
    )
    ts = await lore.say("what is the name of the office dog?", channel=HELP)
    offer = await wait_reply(lore, ts)
    assert OFFER_TEXT in str(offer["blocks"]) and "office dog" not in str(offer["blocks"])
    [expert] = [v for v in button_values(offer) if v.startswith("expert:")]
    click = block_action_payload("lore_ask_expert", expert, USER, HELP, offer["ts"], thread_ts=ts)
    await lore.slack.send_interactive(click)
    await lore.slack.wait_until(
        lambda: any("S0EXPERTS" in json.dumps(m) for m in lore.slack.messages.get(HELP, [])),
        20,
        "experts asked",
    )

    # Each time the question was recorded for the Gaps page: silent (never posted) the first time,
    # then as the offer line that was posted; the escalation has its interaction.
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from feedback.gaps import select_questions
    from feedback.models import Escalation, Interaction
    from feedback.schema import SILENT_NOTICE
    from tests.conftest import wait_for

    def escalated() -> Any:
        with lore.db.sessions() as session:
            return session.scalars(select(Escalation)).one_or_none()

    escalation = await wait_for(escalated, what="the escalation recorded")
    with lore.db.sessions() as session:
        rows = list(session.scalars(select(Interaction).order_by(Interaction.id)))
    assert [(r.abstained, r.answer_text, r.notice) for r in rows] == [
        (True, "", SILENT_NOTICE),
        (True, OFFER_TEXT, None),
        (True, OFFER_TEXT, None),
    ]
    assert rows[-1].answer_id == escalation.answer_id
    gaps = select_questions(lore.db.sessions, "gaps", since=datetime.now(UTC) - timedelta(days=1), limit=10)
    assert len(gaps) == 3 and [q.escalated for q in gaps] == [True, False, False]  # newest first


async def test_a_human_reply_in_the_thread_wins(connect_slack):
    lore = await connect_slack(slack_cfg=auto(delay=1.5))
    ts = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await lore.say(
        "Self Service has WireGuard, then sign in with Okta", user="U2", channel=HELP, thread_ts=ts
    )
    await lore.settle(2.5)
    assert replies(lore, ts) == []
    # The asker adding detail is not an answer: Lore still replies.
    ts = await lore.say("how many days of paid leave do we get?", channel=HELP)
    await lore.say("(I'm in the Berlin office if that matters)", channel=HELP, thread_ts=ts)
    await wait_reply(lore, ts)


async def test_throttles_per_person_and_per_channel(connect_slack):
    lore = await connect_slack(slack_cfg=auto(user_per_hour=1, channel_per_hour=2))
    first = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await wait_reply(lore, first)
    again = await lore.say("how many days of paid leave do we get?", channel=HELP)
    await lore.settle(1)
    assert replies(lore, again) == []  # this person's hour is used up
    other = await lore.say("what is the per diem in New York?", user="U2", channel=HELP)
    await wait_reply(lore, other)
    third = await lore.say("when do production deploys happen?", user=ADMIN, channel=HELP)
    await lore.settle(1)
    assert replies(lore, third) == []  # the channel's hour is used up


async def test_moderators_pause_and_resume_with_a_reaction_or_a_command_and_it_survives_a_restart(
    connect_slack, slack
):
    lore = await connect_slack(slack_cfg=auto())
    # Anyone else's ⏸️ is just a reaction.
    await slack.send_event(reaction_added_event("double_vertical_bar", USER, HELP, "1700000000.000001"))
    ts = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await wait_reply(lore, ts)

    await slack.send_slash_command(
        slash_command_payload("/lore-pause", "", ADMIN, HELP, slack.new_response_url("pause"))
    )
    await slack.wait_until(lambda: bool(slack.calls_to("response_url")), 10, "the pause confirmation")
    assert PAUSED_TEXT in str(slack.calls_to("response_url")[-1].args)
    await lore.stop()

    lore = await connect_slack(slack_cfg=auto())  # a restart over the same data directory
    ts = await lore.say("how many days of paid leave do we get?", channel=HELP)
    await lore.settle(1)
    assert replies(lore, ts) == []
    # A direct question is still answered while auto-answers are paused.
    asked = await lore.mention("how many days of paid leave do we get?", channel=HELP)
    await lore.wait_answer(asked, HELP)

    await slack.send_event(reaction_added_event("arrow_forward", ADMIN, HELP, ts))
    await slack.wait_until(
        lambda: any(RESUMED_TEXT in str(c.args) for c in slack.calls_to("chat.postEphemeral")), 10, "resumed"
    )
    ts = await lore.say("what is the per diem in New York?", channel=HELP)
    await wait_reply(lore, ts)


async def test_a_non_moderator_cannot_pause(connect_slack, slack):
    lore = await connect_slack(slack_cfg=auto())
    await slack.send_slash_command(
        slash_command_payload("/lore-pause", "", USER, HELP, slack.new_response_url("nope"))
    )
    await slack.wait_until(lambda: bool(slack.calls_to("response_url")), 10, "the refusal")
    assert "Only Lore admins" in str(slack.calls_to("response_url")[-1].args)
    ts = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await wait_reply(lore, ts)


async def test_not_english(connect_slack, slack):
    lore = await connect_slack(slack_cfg=auto())
    ts = await lore.say("wie richte ich das VPN auf meinem Laptop ein?", channel=HELP)
    await lore.settle(1)
    assert replies(lore, ts) == []  # unasked: silence
    asked = await lore.mention("wie richte ich das VPN auf meinem Laptop ein?", channel=OTHER)
    await slack.wait_until(lambda: bool(lore.posted(OTHER, asked)), 20, "the note")
    [note] = lore.posted(OTHER, asked)
    assert note["text"] == ENGLISH_ONLY_TEXT


async def test_slack_connect_channels_get_no_auto_answers_unless_allowed(connect_slack, slack):
    slack.channels[HELP] = {"is_shared": True, "is_ext_shared": True}
    lore = await connect_slack(slack_cfg=auto())
    ts = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await lore.settle(1)
    assert replies(lore, ts) == []
    await lore.stop()

    lore = await connect_slack(slack_cfg=auto() | {"external_channels": "auto"})
    ts = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await wait_reply(lore, ts)


async def test_http_mode_signed_events_and_a_forged_pause(make_http_lore):
    """The same through HTTP mode: signed event requests reach the core; a forged ⏸️ does nothing."""
    from tests.bot.slack.test_http import forged, post_event
    from tests.emulators.slack import message_event

    lore = await make_http_lore(slack_cfg=auto())
    reaction = reaction_added_event("double_vertical_bar", ADMIN, HELP, "1700000000.000001")
    body = json.dumps(event_callback(reaction))
    refused = await lore.http.post("/slack/events", content=body, headers=forged(body, "wrong secret"))
    assert refused.status_code == 401
    ts = lore.next_ts()
    response = await post_event(lore, message_event("how do I set up the VPN on my laptop?", USER, HELP, ts))
    assert response.status_code == 200
    answer = await wait_reply(lore, ts)
    assert "it/vpn.md" in str(answer["blocks"])
    ts = lore.next_ts()
    await post_event(lore, message_event("deploying the billing service now", USER, HELP, ts))
    await lore.settle(1)
    assert replies(lore, ts) == []


async def test_a_silent_auto_answer_is_kept_for_the_gaps_page_and_never_counted_as_an_answer(
    connect_slack, embedder
):
    """Lore stays silent on a question it is unsure of, but the question is recorded (an abstention
    marked as never posted), so the Gaps page clusters it; chatter is not recorded at all. The
    review queue, datasets, `lore feedback stats` and the Overview don't count it as an answer."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from feedback.gaps import cluster_questions, latest_report, view_report
    from feedback.models import Interaction
    from feedback.overview import overview
    from feedback.reviews import QueueFilters, curated_items, review_queue
    from feedback.schema import SILENT_NOTICE
    from feedback.stats import feedback_stats
    from tests.conftest import wait_for

    lore = await connect_slack(slack_cfg=auto())
    for text in ("deploying now", "thanks!", "lgtm"):
        await lore.say(text, channel=HELP)
    answered = await lore.say("how do I set up the VPN on my laptop?", channel=HELP)
    await wait_reply(lore, answered)
    quiet = await lore.say("what is the name of the office dog?", channel=HELP)

    def rows() -> list[Any]:
        with lore.db.sessions() as session:
            return list(session.scalars(select(Interaction).order_by(Interaction.id)))

    await wait_for(lambda: len(rows()) == 2, what="both questions recorded")
    await lore.settle(1)
    assert replies(lore, quiet) == []  # still nothing posted
    by_question = {r.question: r for r in rows()}
    assert set(by_question) == {
        "how do I set up the VPN on my laptop?",
        "what is the name of the office dog?",
    }
    row = by_question["what is the name of the office dog?"]
    assert (row.abstained, row.answer_text, row.citations, row.notice) == (True, "", [], SILENT_NOTICE)
    assert (row.platform, row.channel, row.thread) == ("slack", HELP, quiet)
    posted = by_question["how do I set up the VPN on my laptop?"]

    everything = review_queue(lore.db.sessions, QueueFilters(vote="all"))
    assert [r.answer_id for r in everything.rows] == [posted.answer_id]
    assert [i.answer_id for i in curated_items(lore.db.sessions)] == [posted.answer_id]
    stats = feedback_stats(lore.db.sessions)
    assert (stats["totals"]["answers"], stats["totals"]["silent"]) == (1, 1)
    today = datetime.now(UTC).date()
    o = overview(lore.db.sessions, today - timedelta(days=1), today)
    assert o["totals"]["questions"] == 1 and o["totals"]["abstention"] == 0.0
    assert o["totals"]["silent"] == 1 and o["silent"][-1] == 1

    one_is_enough = lore.settings.model_copy(
        update={"gaps": lore.settings.gaps.model_copy(update={"min_size": 1})}
    )
    cluster_questions(lore.db.sessions, one_is_enough, embedder, requested_by="test")
    gaps = view_report(latest_report(lore.db.sessions, "gaps").clusters)
    assert [v.label for v in gaps] == ["what is the name of the office dog?"]
    assert gaps[0].abstained == 1 and gaps[0].answer_ids == [row.answer_id]
