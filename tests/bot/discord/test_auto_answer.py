"""Auto-answer channels on Discord (bot/core/autoanswer.py): the real discord.py client against
the gateway and REST emulator. A forum's new post is a question; in a text channel Lore answers
a new question in a thread it starts on it; a moderator's ⏸️ pauses the channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.autoanswer import PAUSED_TEXT
from tests.bot.discord.conftest import (
    ADMIN_ROLE,
    ALICE,
    BOB,
    CAROL,
    GUILD_ID,
    RANDOM,
    SUPPORT,
    custom_ids,
    visible_text,
)
from tests.conftest import wait_for
from tests.emulators.discord_emu import (
    DiscordEmulator,
    forum_post,
    make_forum_channel,
    make_guild,
    make_member,
    make_role,
    make_text_channel,
    member_reaction_add,
    message_create,
    patch_discord,
)

FORUM = "1400000000000000020"


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    """The usual guild, plus a forum channel."""
    guild = make_guild(
        GUILD_ID,
        channels=[
            make_text_channel(SUPPORT, GUILD_ID, "support"),
            make_text_channel(RANDOM, GUILD_ID, "random"),
            make_forum_channel(FORUM, GUILD_ID, "help"),
        ],
        members=[make_member(ALICE), make_member(BOB, roles=[ADMIN_ROLE]), make_member(CAROL)],
        roles=[make_role("Lore admins", 0, role_id=ADMIN_ROLE)],
    )
    async with DiscordEmulator(guilds=[guild], heartbeat_interval_ms=500) as e:
        with patch_discord(e):
            yield e


def watching(*channels: str, **entry: Any) -> dict[str, Any]:
    return {"auto_answer": [{"channel": c} | entry for c in channels]}


async def post(lore: Any, title: str, content: str, user: dict[str, Any] = ALICE) -> str:
    thread, message = forum_post(FORUM, GUILD_ID, title, content, user)
    await lore.emu.dispatch("THREAD_CREATE", thread)
    await lore.emu.dispatch("MESSAGE_CREATE", message)
    return str(thread["id"])


async def test_a_new_forum_post_is_answered_inside_the_post(connect_discord):
    lore = await connect_discord(discord=watching(FORUM))
    # The question is in the title; the message only adds detail (a post needs no question mark).
    thread = await post(lore, "Setting up the VPN on a new laptop", "Just got my laptop today.")
    answer = await lore.wait_answer(thread)
    assert "WireGuard" in visible_text(answer) and "vpn" in visible_text(answer).lower()
    assert custom_ids(answer)  # the vote buttons
    assert not lore.emu.calls_to("POST", rf"/channels/{FORUM}/messages")  # nothing in the forum itself
    # An off-topic post gets silence.
    other = await post(lore, "Office dog", "What is the name of the office dog?")
    await lore.settle(1)
    assert lore.messages(other) == []


async def test_a_text_channel_question_gets_a_thread_and_chatter_does_not(connect_discord):
    lore = await connect_discord(discord=watching(SUPPORT))
    await lore.say("deploying now", channel=SUPPORT)
    await lore.say("thanks!", channel=SUPPORT)
    question = await lore.say("how do I set up the VPN on my laptop?", channel=SUPPORT)
    answer = await lore.wait_answer(question["id"])  # a thread started on the question
    assert "WireGuard" in visible_text(answer)
    await lore.say("how do I set up the VPN on my laptop?", channel=RANDOM)  # not watched
    await lore.settle(1)
    threads = lore.emu.calls_to("POST", r"/channels/\d+/messages/\d+/threads")
    assert [c.path.split("/")[-2] for c in threads] == [question["id"]]


async def test_a_reply_in_the_post_before_lore_answers_wins(connect_discord):
    lore = await connect_discord(discord=watching(FORUM, delay=1.5))
    thread = await post(lore, "VPN", "how do I set up the VPN on my laptop?")
    reply = message_create("Self Service, then WireGuard", BOB, thread, GUILD_ID, roles=[ADMIN_ROLE])
    await lore.emu.dispatch("MESSAGE_CREATE", reply)
    await lore.settle(2.5)
    assert lore.messages(thread) == []


async def test_a_moderators_pause_reaction_stops_auto_answers(connect_discord):
    lore = await connect_discord(discord=watching(FORUM, SUPPORT))
    first = await post(lore, "VPN", "how do I set up the VPN on my laptop?")
    await lore.wait_answer(first)
    # Alice is no moderator: her ⏸️ is just a reaction.
    await lore.emu.dispatch(
        "MESSAGE_REACTION_ADD",
        member_reaction_add("⏸️", lore.member(ALICE), SUPPORT, first, GUILD_ID, message_author_id=ALICE["id"]),
    )
    second = await post(lore, "Leave", "how many days of paid leave do we get?")
    await lore.wait_answer(second)
    # Bob has the Lore admins role: his ⏸️ on any message in the channel pauses it.
    await lore.emu.dispatch(
        "MESSAGE_REACTION_ADD",
        member_reaction_add("⏸️", lore.member(BOB), SUPPORT, first, GUILD_ID, message_author_id=ALICE["id"]),
    )
    await wait_for(
        lambda: any(PAUSED_TEXT in str(c.json) for c in lore.emu.calls_to("POST", r"/channels/\d+/messages")),
        10,
        "the pause confirmation in Bob's DMs",
    )
    question = await lore.say("what is the per diem in New York?", channel=SUPPORT)
    await lore.settle(1)
    assert lore.messages(question["id"]) == []
    # The forum is another channel: still answered.
    third = await post(lore, "Per diem", "what is the per diem in New York?")
    await lore.wait_answer(third)

    await lore.command("lore-resume", user=CAROL)  # a configured admin user
    await wait_for(lambda: lore.emu.originals, 10, "the resume confirmation")
    again = await lore.say("what is the per diem in New York?", channel=SUPPORT)
    await lore.wait_answer(again["id"])


async def test_throttles_per_person_and_per_channel(connect_discord):
    lore = await connect_discord(discord=watching(FORUM, user_per_hour=1, channel_per_hour=2))
    first = await post(lore, "VPN", "how do I set up the VPN on my laptop?")
    await lore.wait_answer(first)
    again = await post(lore, "Leave", "how many days of paid leave do we get?")
    await lore.settle(1)
    assert lore.messages(again) == []  # Alice's hour is used up
    other = await post(lore, "Per diem", "what is the per diem in New York?", user=CAROL)
    await lore.wait_answer(other)
    third = await post(lore, "Deploys", "when do production deploys happen?", user=BOB)
    await lore.settle(1)
    assert lore.messages(third) == []  # the channel's hour is used up


async def test_a_forum_post_lore_is_unsure_of_is_recorded_silently_for_the_gaps_page(connect_discord):
    from sqlalchemy import select

    from feedback.models import Interaction
    from feedback.reviews import QueueFilters, review_queue
    from feedback.schema import SILENT_NOTICE

    lore = await connect_discord(discord=watching(FORUM))
    thread = await post(lore, "Office dog", "What is the name of the office dog?")

    def rows() -> list[Any]:
        with lore.db.sessions() as session:
            return list(session.scalars(select(Interaction)))

    [row] = await wait_for(rows, what="the silent question recorded")
    await lore.settle(1)
    assert lore.messages(thread) == []
    assert (row.abstained, row.answer_text, row.notice) == (True, "", SILENT_NOTICE)
    assert (row.platform, row.workspace, row.channel, row.thread) == ("discord", GUILD_ID, FORUM, thread)
    assert "office dog" in row.question.lower()
    assert review_queue(lore.db.sessions, QueueFilters(vote="all")).rows == []


async def test_not_english_gets_a_short_note_when_asked_and_silence_when_not(connect_discord):
    from bot.core.autoanswer import ENGLISH_ONLY_TEXT

    lore = await connect_discord(discord=watching(FORUM))
    unasked = await post(lore, "VPN", "wie richte ich das VPN auf meinem Laptop ein?")
    await lore.mention("wie richte ich das VPN auf meinem Laptop ein?")

    def notes() -> list[Any]:
        return [
            c
            for c in lore.emu.calls_to("POST", r"/channels/\d+/messages")
            if ENGLISH_ONLY_TEXT in str(c.json)
        ]

    await wait_for(notes, what="the English-only note")
    await lore.settle(1)
    assert lore.messages(unasked) == [] and len(notes()) == 1
    assert not [m for m in lore.messages(SUPPORT) if "WireGuard" in visible_text(m)]
