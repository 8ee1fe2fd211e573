""" "Ask an expert" on Discord: Lore's real discord.py bot against the gateway and REST emulator,
with the real embedded task client writing to the real SQLite feedback log.

The round trip: the button under an answer, the click (deferred, ephemeral), Lore's post pinging
the expert role in the question's thread (and nobody else), the asker told, the expert's reply
captured, the asker's ✅ accepting it, the item in the review queue under the expert filter, and,
once approved, in the SFT and DPO exports.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from feedback.experts import expert_answers
from feedback.models import Escalation, ExpertAnswer
from tests.bot.discord.conftest import (
    ADMIN_ROLE,
    ALICE,
    BOB,
    CAROL,
    DM_CHANNEL,
    GUILD_ID,
    RANDOM,
    SUPPORT,
    custom_ids,
    embed_text,
    visible_text,
)
from tests.bot.experts import approve_and_export, queued
from tests.bot.fakes import AccessEngine, Doc
from tests.conftest import wait_for
from tests.emulators.discord_emu import (
    DiscordEmulator,
    make_guild,
    make_member,
    make_role,
    make_text_channel,
    make_thread,
    make_user,
    patch_discord,
    reaction_add,
)

EXPERT_ROLE = "1400000000000000020"
HR_ROLE = "1400000000000000021"
EXPERTS = "1400000000000000022"  # #experts: only the expert role may read it
VIEW_CHANNEL = 1 << 10
DANA = make_user(1_400_000_000_000_000_013, "dana")  # an expert
ERIN = make_user(1_400_000_000_000_000_014, "erin")  # chatty
EXPERT_ANSWER = "Use the WireGuard profile from Self Service, then sign in with your badge."


@pytest.fixture
async def emu():
    experts = make_text_channel(EXPERTS, GUILD_ID, "experts") | {
        "permission_overwrites": [
            {"id": GUILD_ID, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
            {"id": EXPERT_ROLE, "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},
        ]
    }
    guild = make_guild(
        GUILD_ID,
        channels=[
            make_text_channel(SUPPORT, GUILD_ID, "support"),
            make_text_channel(RANDOM, GUILD_ID),
            experts,
        ],
        members=[
            make_member(ALICE, roles=[HR_ROLE]),
            make_member(BOB, roles=[ADMIN_ROLE]),
            make_member(CAROL),
            make_member(DANA, roles=[EXPERT_ROLE]),
            make_member(ERIN),
        ],
        roles=[
            make_role("Lore admins", 0, role_id=ADMIN_ROLE),
            make_role("Experts", 0, role_id=EXPERT_ROLE),
            make_role("HR", 0, role_id=HR_ROLE),
        ],
    )
    async with DiscordEmulator(guilds=[guild], heartbeat_interval_ms=500) as e:
        with patch_discord(e):
            yield e


def rows(lore, model) -> list:
    with lore.db.sessions() as session:
        return list(session.scalars(select(model)))


def expert_button(message) -> str:
    [custom_id] = [c for c in custom_ids(message) if c.startswith("expert:")]
    return custom_id


async def test_round_trip_click_ping_expert_reply_accept_queue_and_export(connect_discord):
    lore = await connect_discord(
        escalation={"default": {"discord": f"discord:role:{EXPERT_ROLE}"}},
        datasets={"validation_fraction": 0},
    )
    question = await lore.mention()
    thread = question["id"]
    answer = await lore.wait_answer(thread)
    custom_id = expert_button(answer)
    answer_id = custom_id.split(":")[1]

    click = await lore.click(custom_id, answer)
    [asked] = await wait_for(
        lambda: [m for m in lore.messages(thread) if m["content"].startswith(f"<@&{EXPERT_ROLE}>")],
        what="the post to the experts",
    )
    assert asked["content"].startswith(f"<@&{EXPERT_ROLE}>: <@{ALICE['id']}> asked for an expert's help")
    assert "> how do I set up the VPN?" in asked["content"]
    assert f"https://discord.com/channels/{GUILD_ID}/{thread}" in asked["content"]
    assert "Lore's answer" in embed_text(asked)
    [post] = [
        c
        for c in lore.emu.calls_to("POST", rf"/channels/{thread}/messages")
        if c.json.get("content", "").startswith("<@&")
    ]
    mentions = post.json["allowed_mentions"]
    assert [str(r) for r in mentions["roles"]] == [EXPERT_ROLE] and mentions[
        "parse"
    ] == []  # the expert role, and nobody else
    [told] = await wait_for(lambda: lore.followups(click["token"]), what="the asker told")
    assert told.json["content"].startswith(f"I've asked <@&{EXPERT_ROLE}>")
    assert lore.is_ephemeral(lore.original(click["token"]))
    [escalation] = await wait_for(lambda: rows(lore, Escalation), what="the escalation row")
    assert (escalation.answer_id, escalation.routed_by, escalation.answer_shown) == (
        answer_id,
        "default",
        True,
    )
    assert escalation.thread == thread and escalation.user_hash == lore.user_hash(ALICE)

    chatter = await lore.say("same problem here, any news?", user=ERIN, channel=thread)
    reply = await lore.say(EXPERT_ANSWER, user=DANA, channel=thread)
    [captured] = await wait_for(lambda: expert_answers(lore.db.sessions, answer_id), what="the expert answer")
    assert (captured.text, captured.from_expert, captured.accepted) == (EXPERT_ANSWER, True, False)
    assert len(lore.answers(thread)) == 1  # Lore answered neither the chatter nor the expert

    await lore.emu.dispatch("MESSAGE_REACTION_ADD", reaction_add("✅", ERIN, thread, chatter["id"], GUILD_ID))
    await lore.emu.dispatch("MESSAGE_REACTION_ADD", reaction_add("✅", ALICE, thread, reply["id"], GUILD_ID))
    await wait_for(lambda: expert_answers(lore.db.sessions, answer_id)[0].accepted, what="the acceptance")
    await lore.settle()
    [stored] = rows(lore, ExpertAnswer)  # the chatter, ✅ by someone neither asker nor expert: not kept
    assert stored.reply_id == f"discord:{SUPPORT}:{reply['id']}" and stored.accepted_by == lore.user_hash(
        ALICE
    )

    assert queued(lore.db, answer_id, "accepted")
    approve_and_export(
        lore.db, lore.settings, answer_id, EXPERT_ANSWER, lore.interaction(answer_id).answer_text
    )


DOCS = [
    Doc("handbook", "it/vpn.md", "Install WireGuard for the VPN from Self Service."),
    Doc("hr", "salary-bands.md", "Salary bands for engineers are set by HR. CANARY-ESC-9", ("group:hr",)),
]


async def test_a_restricted_answer_goes_to_the_expert_channel_as_the_question_only(connect_discord):
    """A DM answer from an HR-only document; HR questions go to #experts, which only the expert
    role reads (not HR): the post there carries the question, not the answer. An expert's reply in
    a thread on that post is captured for the DM's answer."""
    lore = await connect_discord(
        engine=lambda _kn: AccessEngine(DOCS),
        groups={"hr": [f"discord:role:{HR_ROLE}"]},
        escalation={
            "default": {"discord": f"discord:role:{EXPERT_ROLE}"},
            "routes": [{"sources": ["hr"], "discord": f"discord:channel:{EXPERTS}"}],
        },
    )
    await lore.dm("what are the salary bands?")
    answer = await lore.wait_answer(DM_CHANNEL)
    assert "CANARY-ESC-9" in visible_text(answer)
    click = await lore.click(expert_button(answer), answer)

    [asked] = await wait_for(lambda: lore.messages(EXPERTS), what="the post in #experts")
    assert "> what are the salary bands?" in asked["content"] and "CANARY-ESC-9" not in visible_text(asked)
    assert "not shown here" in embed_text(asked) and "discord.com/channels" not in asked["content"]
    [told] = await wait_for(lambda: lore.followups(click["token"]), what="the asker told")
    assert (
        told.json["content"] == f"I've asked <#{EXPERTS}>. Their answers help Lore answer better next time."
    )
    [escalation] = await wait_for(lambda: rows(lore, Escalation), what="the escalation row")
    assert (escalation.routed_by, escalation.answer_shown) == ("source:hr", False)

    # Dana (who can read #experts) answers in a thread on Lore's post; Erin (who can't) is ignored.
    starter = make_thread(EXPERTS, GUILD_ID, "salary bands", thread_id=asked["id"], owner_id=DANA["id"])
    lore.emu.add_channel(starter)
    await lore.emu.dispatch("THREAD_CREATE", starter | {"newly_created": True})
    await lore.say("Ask HR, they keep them.", user=ERIN, channel=asked["id"])
    await lore.say("Bands are on the HR portal.", user=DANA, channel=asked["id"])
    [captured] = await wait_for(lambda: rows(lore, ExpertAnswer), what="the channel expert's answer")
    assert captured.from_expert and captured.answer_id == escalation.answer_id
    assert captured.text == "Bands are on the HR portal."
    await lore.settle()
    assert len(rows(lore, ExpertAnswer)) == 1


async def test_a_role_cannot_be_brought_into_a_dm_and_no_button_without_discord_experts(connect_discord):
    lore = await connect_discord(escalation={"default": {"discord": f"discord:role:{EXPERT_ROLE}"}})
    await lore.dm("how do I set up the VPN?")
    answer = await lore.wait_answer(DM_CHANNEL)
    click = await lore.click(expert_button(answer), answer)
    [told] = await wait_for(lambda: lore.followups(click["token"]), what="the refusal")
    assert told.json["content"].startswith("I can't bring experts into a direct message")
    await lore.settle()
    assert rows(lore, Escalation) == []
    await lore.stop()

    slack_only = await connect_discord(escalation={"default": {"slack": "slack:group:S0EXP"}})
    await slack_only.dm("how do I set up the VPN?")
    again = await slack_only.wait_answer(DM_CHANNEL, count=2)
    assert not [c for c in custom_ids(again) if c.startswith("expert:")]
