"""Issue 19's canary on Slack, end to end: the canary corpus (tests/canary/corpus.py: 20 restricted
documents with unique markers, their public twins, 100 questions aimed at the markers) in the real
Knowledge (labelled index, the filter inside the search), behind the real Bolt app and the Slack
emulator. The questions are dealt over every path an unauthorised person has: channel mentions,
thread follow-ups, DMs, `/ask`, Share, "Answer privately" clicked by an outsider, after a restart
(Socket Mode), and over signed HTTP requests. No marker may reach anything Slack received
(messages, edits, ephemerals, response_url bodies), a log line or a metric; the one member of
`group:secret` gets the markers in a DM, with the restricted document cited.

Each test runs in both index modes (`index_owner`): embedded (all 100 questions here), and
worker-owner, where a real `lore worker` process at DEBUG owns the index and the Bolt app asks it
through `RemoteKnowledge` (half the questions here, the other half on Discord). There the
owner's log and /metrics are checked too, and a restart restarts the owner as well.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest

from tests.bot.slack.conftest import SIGNING_SECRET, block_texts, button_values
from tests.canary import on_slack
from tests.canary.checks import log_leaks, lore_logging, lore_logging_at_debug, metrics_text
from tests.canary.corpus import CanaryCorpus, canary_source, spread
from tests.canary.on_slack import Question, dms, mentions, private_values, thread
from tests.canary.owner import IndexOwner, restarted
from tests.conftest import wait_for
from tests.emulators.slack import (
    BOT_USER_ID,
    SlackEmulator,
    app_mention_event,
    block_action_payload,
    event_callback,
    message_event,
    sign_request,
    slash_command_payload,
)

SECRET = "U1"  # in the user group S0SECRET, which lore.toml's `secret` group names
OUTSIDER = "U2"
PATHS = 8  # the socket test's seven paths and the HTTP test's one


@pytest.fixture
async def slack():
    users = {SECRET: {"name": "ada"}, OUTSIDER: {"name": "bob"}}
    async with SlackEmulator(users=users, usergroups={"S0SECRET": [SECRET]}) as emulator:
        yield emulator


def canary_settings(canary: CanaryCorpus, template, owner: IndexOwner | None = None) -> dict:
    return {
        "template": template,
        "extra_sources": [canary_source(canary.root)],
        "groups": {"secret": ["slack:group:S0SECRET"]},
        **(owner.chat if owner else {}),
    }


def seen_by_others(slack: SlackEmulator) -> list[str]:
    """Everything Slack received from Lore that someone other than SECRET may see: every call but
    SECRET's own DM (D1), ephemerals for SECRET and response_urls named for SECRET."""
    return on_slack.seen_by_others(slack, SECRET, "D1")


async def assert_no_leak(
    canary: CanaryCorpus, slack: SlackEmulator, caplog, owner: IndexOwner | None, *logs: str
) -> None:
    sent = [line for line in seen_by_others(slack) if canary.exposed(line)]
    assert sent == [], f"{len(sent)} leaking calls, e.g. {sent[0][:400]}"
    assert log_leaks(canary, caplog, *logs) == []
    assert canary.leaks(metrics_text()) == []
    if owner is not None:
        assert await owner.exposed(canary) == []


async def asks(lore, questions: list[Question], *, user: str, name: str) -> list:
    """`/ask` each question in C1; the private answers (through each command's response_url)."""
    for i, (q, _) in enumerate(questions):
        url = lore.slack.new_response_url(f"{name}-{i}")
        command = slash_command_payload("/ask", q, user, "C1", url)
        await lore.slack.send_slash_command(command | {"trigger_id": f"1111111111.{i}.{name}"})

    def answered() -> list:
        calls = [c for c in lore.slack.calls_to("response_url") if c.name.startswith(f"{name}-")]
        shown = {c.name: c for c in calls if button_values(c.args)}
        return [shown[f"{name}-{i}"] for i in range(len(questions))] if len(shown) == len(questions) else []

    return await wait_for(answered, 60, f"{len(questions)} /ask answers")


def slack_questions(canary: CanaryCorpus, owner: IndexOwner | None) -> list[Question]:
    """All 100 when the index is embedded; with an owning worker, the half Discord does not ask."""
    return canary.questions() if owner is None else canary.questions()[1::2]


async def test_the_canary_never_leaks_through_slack_socket_mode(
    connect_slack, slack, canary, canary_template, caplog, index_owner
):
    owner = index_owner
    paths = spread(slack_questions(canary, owner), PATHS)
    lore = await connect_slack(**canary_settings(canary, canary_template, owner))
    answered = owner.answered() if owner else 0
    # At Lore's default level (INFO) when embedded; at DEBUG with an owning worker.
    with lore_logging(lore.settings, caplog, debug=owner is not None) as log:
        # 1. Channel mentions by an outsider: public twins only, and nothing to answer privately.
        for answer in await mentions(lore, paths[0], user=OUTSIDER):
            assert private_values(answer.args) == []

        # 2. Thread follow-ups (no mention) in a channel thread the outsider started.
        await thread(lore, paths[1], user=OUTSIDER)

        # 3. The outsider's DMs.
        await dms(lore, paths[2], user=OUTSIDER, channel="D2")

        # 4. The outsider's /ask (ephemeral), and 5. Share of every such answer into the channel.
        await asks(lore, paths[3], user=OUTSIDER, name="ask")
        shown = await asks(lore, paths[4], user=OUTSIDER, name="toshare")
        for i, answer in enumerate(shown):
            [share] = [v for v in button_values(answer.args) if v.startswith("share:")]
            click = block_action_payload(
                "lore_share",
                share,
                OUTSIDER,
                "C1",
                "1700000000.000009",
                response_url=lore.slack.new_response_url(f"shared-{i}"),
                is_ephemeral=True,
            )
            await lore.slack.send_interactive(click)
        await lore.slack.wait_until(
            lambda: (
                len([c for c in lore.slack.calls_to("response_url") if c.name.startswith("shared-")])
                >= len(shown)
            ),
            60,
            "every share handled",
        )

        # 6. The member of `secret` asks in the channel: public content, and "Answer privately" on
        #    offer, since they could read what was left out; the outsider clicks it.
        for i, answer in enumerate(await mentions(lore, paths[5], user=SECRET)):
            [value] = private_values(answer.args)
            click = block_action_payload(
                "lore_answer_privately",
                value,
                OUTSIDER,
                "C1",
                answer.args["ts"],
                response_url=lore.slack.new_response_url(f"private-{i}"),
            )
            await lore.slack.send_interactive(click)

        def privately_answered() -> list:
            return [
                c
                for c in lore.slack.calls_to("chat.postEphemeral")
                if c.args.get("user") == OUTSIDER and button_values(c.args)
            ]

        await wait_for(
            lambda: len(privately_answered()) >= len(paths[5]), 60, "the outsider's private answers"
        )
        # Nothing restricted matches a VPN question: no button, even for the member of `secret`.
        [plain] = await mentions(lore, [("which VPN client do I install?", paths[0][0][1])], user=SECRET)
        assert private_values(plain.args) == []

        # The member of `secret`, in a DM: the markers, each with its restricted document cited
        # (every subject when embedded; with an owning worker, the ten Discord's test does not).
        firsts = canary.questions()[::5] if owner is None else canary.questions()[50::5]
        for (_, c), answer in zip(firsts, await dms(lore, firsts, user=SECRET, channel="D1"), strict=True):
            assert c.marker in block_texts(answer.args), c.subject
            assert c.restricted_path in json.dumps(answer.args["blocks"]), c.subject
        await lore.settle()
        await assert_no_leak(canary, lore.slack, caplog, owner)

        # 7. After a restart over the same data directory (the owner's too), the labels hold.
        again = await restarted(
            lore, owner, lambda: connect_slack(**canary_settings(canary, canary_template, owner))
        )
        half = len(paths[6]) // 2
        await mentions(again, paths[6][:half], user=OUTSIDER)
        await dms(again, paths[6][half:], user=OUTSIDER, channel="D3")
        [mine] = await dms(again, [paths[6][0]], user=SECRET, channel="D1")
        assert paths[6][0][1].marker in block_texts(mine.args)
        await again.say("lunch anyone?", user=OUTSIDER)  # not for Lore: a DEBUG line of its own
        await again.settle()
    await assert_no_leak(canary, again.slack, caplog, owner, log.getvalue())
    if owner is not None:  # the chat side at DEBUG, and every answer came from the owner
        assert any(r.levelno == logging.DEBUG and r.name.startswith("bot.") for r in caplog.records)
        assert owner.served(again.services, since=answered) >= sum(map(len, paths[:7])) + len(firsts)


@pytest.fixture
async def http_lore(make_http_lore, canary, canary_template, index_owner):
    return await make_http_lore(**canary_settings(canary, canary_template, index_owner))


async def signed_post(lore, path: str, body: str, content_type: str):
    headers = {"Content-Type": content_type, **sign_request(body, SIGNING_SECRET)}
    response = await lore.http.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def test_the_canary_never_leaks_over_signed_http_requests_with_lore_at_debug(
    http_lore, canary, caplog, index_owner
):
    lore, owner = http_lore, index_owner
    questions = spread(slack_questions(canary, owner), PATHS)[7]
    third = len(questions) // 3
    answered = owner.answered() if owner else 0
    with lore_logging_at_debug(lore.settings, caplog) as log:
        # Channel mentions by the member of `secret` (the button on offer), the outsider's
        # follow-ups in those threads, the outsider's "Answer privately" click, and DMs.
        stamps = []
        for q, _ in questions[:third]:
            ts = lore.next_ts()
            event = app_mention_event(f"<@{BOT_USER_ID}> {q}", SECRET, "C1", ts)
            await signed_post(lore, "/slack/events", json.dumps(event_callback(event)), "application/json")
            stamps.append(ts)
        answers = [await lore.wait_answer(ts, timeout=60) for ts in stamps]
        for (q, _), ts in zip(questions[third : 2 * third], stamps, strict=True):
            event = message_event(q, OUTSIDER, "C1", lore.next_ts(), thread_ts=ts)
            await signed_post(lore, "/slack/events", json.dumps(event_callback(event)), "application/json")
        for ts in stamps:
            await lore.slack.wait_until(lambda: len(lore.answers("C1", ts)) >= 2, 60, "a follow-up")  # noqa: B023
        [value] = private_values(answers[0].args)
        click = block_action_payload(
            "lore_answer_privately", value, OUTSIDER, "C1", answers[0].args["ts"], thread_ts=stamps[0]
        )
        body = urlencode({"payload": json.dumps(click)})
        await signed_post(lore, "/slack/interactions", body, "application/x-www-form-urlencoded")
        for n, (q, _) in enumerate(questions[2 * third :], start=1):
            event = message_event(q, OUTSIDER, "D2", lore.next_ts(), channel_type="im")
            await signed_post(lore, "/slack/events", json.dumps(event_callback(event)), "application/json")
            await lore.slack.wait_until(lambda: len(lore.answers("D2", None)) >= n, 60, "a DM answer")  # noqa: B023
        await wait_for(
            lambda: [c for c in lore.slack.calls_to("chat.postEphemeral") if button_values(c.args)],
            60,
            "the private answer",
        )
        # Chatter not for Lore: a DEBUG line of Lore's own, so the log checked below is DEBUG's.
        chatter = event_callback(message_event("lunch anyone?", OUTSIDER, "C1", lore.next_ts()))
        await signed_post(lore, "/slack/events", json.dumps(chatter), "application/json")
        await lore.settle()
        metrics = (await lore.http.get("/metrics")).text
    assert "lore_" in metrics and canary.leaks(metrics) == []
    assert any(r.levelno == logging.DEBUG and r.name.startswith("bot.") for r in caplog.records)
    await assert_no_leak(canary, lore.slack, caplog, owner, log.getvalue())
    if owner is not None:  # every answer came from the owner, the private one too
        assert owner.served(lore.services, since=answered) >= len(questions) + 1


async def test_the_model_never_reads_a_marker_for_an_outsider_in_a_thread_after_a_private_answer(
    connect_slack, fixed_llm, canary, canary_template
):
    # What an LLM reads it may repeat: with a model (a fixed reply, its prompts recorded), a thread
    # where the member of `secret` got a private answer gives the next people there no marker.
    fixed_llm.reply = "See the page about it [1]."
    lore = await connect_slack(llm=fixed_llm.settings(), **canary_settings(canary, canary_template))
    (question, c), (follow_up, _) = canary.questions()[0], canary.questions()[1]

    def prompts_since(start: int) -> str:
        return "\n".join(fixed_llm.prompts[start:])

    start = len(fixed_llm.prompts)
    ts = await lore.mention(question, user=SECRET)
    answer = await lore.wait_answer(ts)
    assert canary.exposed(prompts_since(start)) == []
    [value] = private_values(answer.args)

    start = len(fixed_llm.prompts)
    click = block_action_payload(
        "lore_answer_privately", value, SECRET, "C1", answer.args["ts"], thread_ts=ts
    )
    await lore.slack.send_interactive(click)
    await wait_for(lambda: [x for x in lore.slack.calls_to("chat.postEphemeral") if button_values(x.args)])
    assert c.marker in prompts_since(start)  # the member of `secret` got it, privately

    for n, user in enumerate((OUTSIDER, SECRET), start=2):  # follow-ups: the channel's audience
        start = len(fixed_llm.prompts)
        await lore.say(follow_up, user=user, thread_ts=ts)
        await lore.slack.wait_until(lambda: len(lore.answers("C1", ts)) >= n, 20, "a follow-up")  # noqa: B023
        assert canary.exposed(prompts_since(start)) == [], user
    start = len(fixed_llm.prompts)
    await lore.say(follow_up, user=OUTSIDER, channel="D2", channel_type="im")
    await lore.wait_answer(None, channel="D2")
    assert canary.exposed(prompts_since(start)) == []
    await lore.settle()
    assert canary.exposed("\n".join(seen_by_others(lore.slack))) == []
