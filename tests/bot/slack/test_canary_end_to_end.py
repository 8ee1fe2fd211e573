"""Issue 19's canary, end to end: the real Knowledge (labelled index, filter inside the search)
behind the real Bolt app and the Slack emulator. Restricted documents carry unique markers; no
marker may reach a channel, someone else's private answer, a Share, or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging

from tests.bot.slack.conftest import USER, block_texts, button_values, share_click
from tests.conftest import wait_for, write
from tests.emulators.slack import slash_command_payload

HR = USER  # U1 is in HR; U2 is not
OUTSIDER = "U2"
MARKERS = [f"ZEBRA{i:02d}QUILL" for i in range(5)]
TOPICS = ["bonus pool", "salary bands", "layoff plan", "merger codename", "pay review"]


def restricted_corpus(root) -> None:
    for i, (topic, marker) in enumerate(zip(TOPICS, MARKERS, strict=True)):
        write(root, f"hr/doc{i}.md", f"# The {topic}\n\nThe {topic} for this year is recorded as {marker}.\n")


def everything(lore) -> str:
    """Every text Lore sent anywhere: posts, edits, ephemerals and response_url messages."""
    methods = ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url")
    return "\n".join(json.dumps(c.args) for m in methods for c in lore.slack.calls_to(m))


async def test_canary_end_to_end_restricted_documents_never_leak_through_slack(
    connect_slack, slack, tmp_path, caplog
):
    # At Lore's default level. (At DEBUG, llama_index's own retriever logs the top nodes' text:
    # config/logs.py must quiet it before this can check DEBUG too; the adapters are quiet.)
    caplog.set_level(logging.INFO)
    people = tmp_path / "people"
    restricted_corpus(people)
    slack.usergroups["S0HR"] = [HR]  # HR is in the HR user group
    lore = await connect_slack(
        groups={"hr": ["slack:group:S0HR"]},
        extra_sources=[{"name": "people", "type": "directory", "path": str(people), "access": ["group:hr"]}],
    )
    knowledge = lore.services.knowledge
    assert (await asyncio.to_thread(knowledge.sync, "people")).error is None

    # In a channel, even HR gets public content only, with "Answer privately" on offer.
    for topic in TOPICS:
        ts = await lore.mention(f"what is the {topic}?", user=HR)
        answer = await lore.wait_answer(ts)
        assert not any(m in block_texts(answer.args) for m in MARKERS)
    assert any(
        v.startswith("private:") for c in lore.slack.calls_to("chat.update") for v in button_values(c.args)
    )

    # An outsider's DM and /ask: nothing restricted.
    await lore.say("what is the bonus pool?", user=OUTSIDER, channel="D2", channel_type="im")
    await lore.wait_answer(None, channel="D2")
    url = lore.slack.new_response_url("ask-outsider")
    await lore.slack.send_slash_command(
        slash_command_payload("/ask", "what are the salary bands?", OUTSIDER, "C1", url)
    )
    await wait_for(
        lambda: [c for c in lore.slack.calls_to("response_url") if button_values(c.args)], what="/ask"
    )
    assert not any(m in everything(lore) for m in MARKERS)

    # HR's own DM gets the answer, with the right citation.
    await lore.say("what is the bonus pool?", user=HR, channel="D1", channel_type="im")
    dm = await lore.wait_answer(None, channel="D1")
    assert MARKERS[0] in block_texts(dm.args) and "doc0.md" in json.dumps(dm.args["blocks"])

    # HR's private /ask cannot be shared into the channel.
    url = lore.slack.new_response_url("ask-hr")
    command = slash_command_payload("/ask", "what is the layoff plan?", HR, "C1", url)
    await lore.slack.send_slash_command(command | {"trigger_id": "2222222222.3333333333.hr"})  # a new one

    def hr_answer():
        return [
            c for c in lore.slack.calls_to("response_url") if c.name == "ask-hr" and button_values(c.args)
        ]

    [shown] = await wait_for(hr_answer, what="HR's /ask answer")
    share = next(v for v in button_values(shown.args) if v.startswith("share:"))
    await lore.slack.send_interactive(share_click(lore.slack, share, name="share"))
    await wait_for(
        lambda: [c for c in lore.slack.calls_to("response_url") if c.name == "share"], what="refusal"
    )
    await lore.settle()
    posted = lore.slack.calls_to("chat.postMessage") + lore.slack.calls_to("chat.update")
    in_channel = [c for c in posted if c.args.get("channel") == "C1"]
    assert in_channel and not any(m in json.dumps(c.args) for c in in_channel for m in MARKERS)
    assert not any(m in r.getMessage() for r in caplog.records for m in MARKERS)
