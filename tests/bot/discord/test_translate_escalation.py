""" "Ask an expert" translation for Discord, pure, on recorded payloads (in
tests/emulators/payloads/discord/)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.core.messages import AnswerReply, ExpertRequest, ExpertsAsked, Ignored
from bot.discord import translate
from knowledge.answer import Answer

PAYLOADS = Path(__file__).parents[2] / "emulators" / "payloads" / "discord"
BOT = "1300000000000000001"
ROLE = "1400000000000000020"


def recorded(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def answer(**kw) -> Answer:
    fields = {
        "answer_id": "a1",
        "question": "q",
        "text": "Install WireGuard [1].",
        "abstained": False,
        "model": "m",
        "prompt_version": "v",
    }
    return Answer(**(fields | kw))


def test_a_recorded_reaction_in_a_thread_names_the_parent_channel():
    data = recorded("message_reaction_add")
    reaction = translate.reaction_from_payload(data, bot_id=BOT, thread_parent="1400000000000000002")
    assert reaction == translate.Reaction(
        "1400000000000000010", "1400000000000000002", "1400000000000000777", "✅"
    )
    assert translate.reaction_from_payload(data, bot_id=BOT).channel == "1400000000000000555"
    assert isinstance(translate.reaction_from_payload(data | {"user_id": BOT}, bot_id=BOT), Ignored)


def test_the_button_after_the_votes():
    rendered = translate.render(AnswerReply(answer(), "x", ask_expert=True))
    assert [b.custom_id for b in rendered.buttons] == ["fb:up:a1", "fb:down:a1", "expert:a1"]
    assert rendered.buttons[-1].label == "Ask an expert"
    assert not [
        b for b in translate.render(AnswerReply(answer(), "x")).buttons if b.custom_id.startswith("expert:")
    ]


def test_the_request_pings_the_role_only_and_neutralises_the_askers_words():
    request = ExpertRequest(
        f"discord:role:{ROLE}",
        "@everyone how do I **log in** <@&140000000000000099>?",
        asker="1400000000000000010",
        answer=answer(),
        link="https://discord.com/channels/1/2",
    )
    rendered = translate.render(request)
    assert rendered.content.startswith(f"<@&{ROLE}>: <@1400000000000000010> asked for an expert's help")
    assert rendered.ping_roles == [ROLE]
    quoted = rendered.content.splitlines()[1]
    assert quoted.startswith("> ") and "@everyone" not in quoted and "<@&140000000000000099>" not in quoted
    assert "\\*\\*log in\\*\\*" in quoted
    assert (
        rendered.embeds[0]["title"] == "Lore's answer"
        and "https://discord.com/channels/1/2" in rendered.content
    )


def test_a_channel_target_pings_nobody_and_a_withheld_answer_says_so():
    rendered = translate.render(
        ExpertRequest("discord:channel:1400000000000000022", "q?", asker="1", withheld=True)
    )
    assert rendered.ping_roles == [] and rendered.content.startswith("<#1400000000000000022>:")
    assert rendered.embeds == [{"type": "rich", "description": translate.WITHHELD}]


def test_the_asker_is_told_whom():
    assert translate.render(ExpertsAsked(f"discord:role:{ROLE}")).content.startswith(
        f"I've asked <@&{ROLE}>."
    )
    assert translate.thread_link("1", "2") == "https://discord.com/channels/1/2"
    assert translate.thread_link(None, "2") == "https://discord.com/channels/@me/2"
