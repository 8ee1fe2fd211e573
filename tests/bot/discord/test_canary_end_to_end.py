"""Issue 19's canary on Discord, end to end: the real Knowledge (labelled index, filter inside the
search) behind Lore's real discord.py bot and the emulator. No marker of a restricted document
may reach a channel, a thread, someone else's DM or ephemeral reply, a Share, or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging

from bot.core.access import SHARE_REFUSED
from tests.bot.discord.conftest import ADMIN_ROLE, ALICE, BOB, DM_CHANNEL, answer_id_of, visible_text
from tests.conftest import write

MARKERS = [f"OTTER{i:02d}VELVET" for i in range(5)]
TOPICS = ["bonus pool", "salary bands", "layoff plan", "merger codename", "pay review"]
BOB_DM = "1400000000000000098"


async def test_canary_end_to_end_restricted_documents_never_leak_through_discord(
    connect_discord, tmp_path, caplog
):
    # At Lore's default level. (At DEBUG, llama_index's own retriever logs the top nodes' text:
    # config/logs.py must quiet it before this can check DEBUG too; the adapters are quiet.)
    caplog.set_level(logging.INFO)
    people = tmp_path / "people"
    for i, (topic, marker) in enumerate(zip(TOPICS, MARKERS, strict=True)):
        write(
            people, f"hr/doc{i}.md", f"# The {topic}\n\nThe {topic} for this year is recorded as {marker}.\n"
        )
    lore = await connect_discord(
        groups={"hr": [f"discord:role:{ADMIN_ROLE}"]},  # BOB holds the role
        extra_sources=[{"name": "people", "type": "directory", "path": str(people), "access": ["group:hr"]}],
    )
    knowledge = lore.services.knowledge
    assert (await asyncio.to_thread(knowledge.sync, "people")).error is None

    def leaked(messages) -> bool:
        return any(m in visible_text(msg) for msg in messages for m in MARKERS)

    # Channel questions, even from HR: public only.
    for topic in TOPICS:
        asked = await lore.mention(f"what is the {topic}?", user=BOB)
        answer = await lore.wait_answer(asked["id"])
        assert not leaked([answer])
    # Outsiders: a DM and an /ask.
    await lore.dm("what is the bonus pool?", user=ALICE)
    assert not leaked([await lore.wait_answer(DM_CHANNEL)])
    cmd = await lore.command("ask", {"question": "what are the salary bands?"}, user=ALICE)
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+")
    assert not leaked([lore.original(cmd["token"])])

    # HR in a DM (roles from the member lookup): the answer, with its citation.
    await lore.dm("what is the bonus pool?", user=BOB, channel=BOB_DM)
    mine = await lore.wait_answer(BOB_DM)
    assert MARKERS[0] in visible_text(mine) and "doc0.md" in json.dumps(mine)

    # HR's private /ask cannot be shared into the channel.
    cmd = await lore.command("ask", {"question": "what is the layoff plan?"}, user=BOB)
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+")
    private = lore.original(cmd["token"])
    share = await lore.click(f"share:{answer_id_of(private)}", private, user=BOB)
    [told] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{share['token']}")
    assert told.json["content"] == SHARE_REFUSED
    await lore.settle()

    # Everything anyone but BOB can see: every channel, thread and DM but his, ephemerals aside.
    seen = [m for channel, ms in lore.emu.history.items() if channel != BOB_DM for m in ms]
    assert seen and not leaked([m for m in seen if not lore.is_ephemeral(m)])
    assert not any(m in r.getMessage() for r in caplog.records for m in MARKERS)
