"""Threads Lore never joined, "Summarize this thread" (a message context-menu command), and
files with a question: Lore's real discord.py bot against the gateway + REST emulator."""

from __future__ import annotations

import pytest

from tests.bot.discord.conftest import (
    ALICE,
    BOB,
    BOT_ID,
    GUILD_ID,
    SUPPORT,
    lore_user,
    visible_text,
)
from tests.conftest import wait_for
from tests.emulators.discord_emu import (
    interaction_message_command,
    make_thread,
    message_create,
)
from tests.emulators.openai_chat import FixedLLM

SUMMARIZE = "Summarize this thread"


@pytest.fixture
async def fixed_llm():
    async with FixedLLM() as llm:
        yield llm


async def people_thread(lore, starter_text, replies):
    """A thread BOB started on his #support message, and the replies people wrote in it, all
    before Lore was mentioned: (starter, thread id, replies)."""
    starter = message_create(starter_text, BOB, SUPPORT, GUILD_ID)
    lore.emu.add_history(SUPPORT, [starter])
    thread = make_thread(SUPPORT, GUILD_ID, "question", thread_id=starter["id"], owner_id=BOB["id"])
    lore.emu.add_channel(thread)
    await lore.emu.dispatch("THREAD_CREATE", thread | {"newly_created": True})
    posted = [message_create(text, user, thread["id"], GUILD_ID) for user, text in replies]
    lore.emu.add_history(thread["id"], posted)
    await lore.settle(0.1)
    return starter, thread["id"], posted


async def test_a_mention_mid_thread_answers_the_threads_opening_question(connect_discord):
    lore = await connect_discord()
    starter, thread, _ = await people_thread(
        lore, "How do I set up the VPN on my new laptop?", [(ALICE, "no idea, sorry")]
    )
    await lore.mention("any idea?", channel=thread)
    answer = await lore.wait_answer(thread)
    assert "WireGuard" in visible_text(answer)
    # The starter message, read from the parent channel, is the thread's question.
    assert lore.emu.calls_to("GET", rf"/channels/{SUPPORT}/messages/{starter['id']}")


async def run_summary(lore, target, channel):
    cmd = interaction_message_command(
        SUMMARIZE, target, user=ALICE, member=lore.member(ALICE), guild_id=GUILD_ID, channel_id=channel
    )
    await lore.emu.dispatch("INTERACTION_CREATE", cmd)
    # Deferred at once (an empty @original); the summary fills it in.
    await wait_for(lambda: lore.emu.originals.get(cmd["token"], {}).get("content"), 30, "the summary")
    return cmd, lore.original(cmd["token"])


REPLIES = [
    (ALICE, "Friday deploys need approval from the on-call lead"),
    (BOB, "who is on call this week?"),
    (ALICE, "lunch is at noon today"),
    (ALICE, "Dana is the on-call lead, ask her to approve the Friday deploy"),
]


async def test_the_context_menu_command_is_registered_as_a_message_command(connect_discord):
    lore = await connect_discord()
    commands = {c["name"]: c for c in lore.emu.commands[None]}
    assert commands[SUMMARIZE]["type"] == 3  # MESSAGE: right-click a message -> Apps


async def test_summarize_in_a_thread_extractive_is_ephemeral_with_jump_links(connect_discord):
    lore = await connect_discord()
    starter, thread, posted = await people_thread(
        lore, "Can I ship the billing fix to production on Friday? @everyone", REPLIES
    )
    cmd, summary = await run_summary(lore, posted[1], thread)
    assert lore.is_ephemeral(summary)  # only the person who asked sees it
    text = summary["content"]
    assert "from 5 messages" in text
    assert f"[#1](https://discord.com/channels/{GUILD_ID}/{SUPPORT}/{starter['id']})" in text
    assert f"https://discord.com/channels/{GUILD_ID}/{thread}/{posted[2]['id']}" not in text  # lunch
    assert "Dana is the on-call lead" in text
    [callback] = lore.emu.calls_to("POST", rf"/interactions/{cmd['id']}/[^/]+/callback")
    assert callback.json["type"] == 5  # deferred at once
    # Quoting "@everyone" pings nobody.
    sent = lore.emu.calls_to("POST", rf"/webhooks/{BOT_ID}/[^/]+") + lore.emu.calls_to(
        "PATCH", rf"/webhooks/{BOT_ID}/[^/]+/messages/[^/]+"
    )
    assert sent and all(c.json["allowed_mentions"]["parse"] == [] for c in sent)


async def test_summarize_on_the_message_a_thread_started_from(connect_discord, fixed_llm):
    fixed_llm.reply = "- Friday deploys need the on-call lead's approval [2]\n- Dana is on call [5]"
    lore = await connect_discord(llm=fixed_llm.settings())
    starter, thread, posted = await people_thread(lore, "Can I deploy the billing fix on Friday?", REPLIES)
    _cmd, summary = await run_summary(lore, starter, SUPPORT)
    text = summary["content"]
    assert "summary**, from 5 messages" in text
    assert f"[#2](https://discord.com/channels/{GUILD_ID}/{thread}/{posted[0]['id']})" in text
    assert f"[#5](https://discord.com/channels/{GUILD_ID}/{thread}/{posted[3]['id']})" in text
    assert "[1] Can I deploy the billing fix on Friday?" in fixed_llm.prompts[0]


async def test_summarize_on_a_message_without_a_thread_says_so(connect_discord):
    lore = await connect_discord()
    lonely = message_create("just a message", BOB, SUPPORT, GUILD_ID)
    lore.emu.add_history(SUPPORT, [lonely])
    _cmd, reply = await run_summary(lore, lonely, SUPPORT)
    assert "isn't in a thread" in reply["content"] and lore.is_ephemeral(reply)


async def test_files_with_a_mention_text_used_image_refused(connect_discord):
    lore = await connect_discord()
    note = b"The staff car park opens at 06:30 and closes at 22:00 on weekdays."
    files = [
        lore.emu.attach(SUPPORT, "parking.txt", note, "text/plain; charset=utf-8"),
        lore.emu.attach(SUPPORT, "photo.png", b"\x89PNG\r\n\x1a\n", "image/png"),
    ]
    msg = message_create(
        f"<@{BOT_ID}> when does the staff car park open?",
        ALICE,
        SUPPORT,
        GUILD_ID,
        mentions=[lore_user()],
    ) | {"attachments": files}
    await lore.emu.dispatch("MESSAGE_CREATE", msg)
    answer = await lore.wait_answer(msg["id"])
    text = visible_text(answer)
    assert "06:30" in text and "parking.txt" in text
    assert "I can't read images, so I didn't look at photo.png." in text
    downloads = [c for c in lore.emu.calls if c.path.startswith("/attachments/")]
    assert len(downloads) == 1 and downloads[0].path.endswith("/parking.txt")


async def test_an_oversize_attachment_is_refused(connect_discord):
    lore = await connect_discord(chat={"attachment_max_bytes": 2000})
    big = lore.emu.attach(SUPPORT, "dump.log", b"x", "text/plain", size=3_000_000)
    msg = message_create(
        f"<@{BOT_ID}> how do I set up the VPN?", ALICE, SUPPORT, GUILD_ID, mentions=[lore_user()]
    ) | {"attachments": [big]}
    await lore.emu.dispatch("MESSAGE_CREATE", msg)
    text = visible_text(await lore.wait_answer(msg["id"]))
    assert "dump.log (3.0 MB) is over the 2 KB I read" in text and "WireGuard" in text


async def test_a_summary_where_lore_may_not_read_history_says_so(connect_discord):
    lore = await connect_discord()
    _starter, thread, posted = await people_thread(lore, "Can I deploy on Friday?", REPLIES)
    lore.emu.fail_next("GET", rf"/channels/{thread}/messages", 403, code=50001)
    _cmd, reply = await run_summary(lore, posted[0], thread)
    assert reply["content"] == "I can't read this thread: add Lore to the channel, then try again."
