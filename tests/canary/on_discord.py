"""The canary's questions asked in the Discord emulator, and what Lore sent there that people other
than the member of `secret` may see. Shared by the embedded canary (tests/bot/discord/, Lore in
the test process) and the multi-process one (tests/ops/, Lore in a `lore serve` process): both
drive Lore through `DiscordPeople`, the emulator alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from tests.bot.discord.conftest import SUPPORT, DiscordPeople, custom_ids
from tests.canary.corpus import Canary
from tests.emulators.discord_emu import DiscordEmulator

Question = tuple[str, Canary]
Message = dict[str, Any]


def private_ids(message: Message) -> list[str]:
    """The "Answer privately" button's custom_id on an answer (none: nothing was left out)."""
    return [c for c in custom_ids(message) if c.startswith("private:")]


def seen_by_others(emu: DiscordEmulator, member_dm: str, member_tokens: Iterable[str] = ()) -> list[str]:
    """Every request Lore made to Discord, but those in the member's DM and those answering the
    member's own interactions (their ephemeral replies, by interaction token)."""
    tokens = set(member_tokens)
    out = []
    for call in emu.calls:
        if member_dm in call.path or any(token in call.path for token in tokens):
            continue
        out.append(f"{call.method} {call.path} {json.dumps(call.json)} {json.dumps(call.files)}")
    return out


async def mentions(
    people: DiscordPeople, questions: list[Question], *, user: Message, channel: str = SUPPORT
) -> list[Message]:
    """Ask each question with an @mention in `channel`; their answers (each in its own thread)."""
    asked = [await people.mention(q, user=user, channel=channel) for q, _ in questions]
    return [await people.wait_answer(a["id"], timeout=60) for a in asked]


async def thread(
    people: DiscordPeople, questions: list[Question], *, user: Message, channel: str = SUPPORT
) -> list[Message]:
    """The first question as an @mention, the others as follow-ups (no mention) in the thread
    Lore answered it in; every answer in that thread, in order."""
    [first] = await mentions(people, questions[:1], user=user, channel=channel)
    thread_id = first["channel_id"]
    for n, (q, _) in enumerate(questions[1:], start=2):
        await people.say(q, user=user, channel=thread_id)
        await people.wait_answer(thread_id, count=n, timeout=60)
    return people.answers(thread_id)


async def dms(
    people: DiscordPeople, questions: list[Question], *, user: Message, channel: str
) -> list[Message]:
    """Ask each question in a DM, one after the other (a DM is one conversation)."""
    answers = []
    for q, _ in questions:
        before = len(people.answers(channel))
        await people.dm(q, user=user, channel=channel)
        answers.append(await people.wait_answer(channel, count=before + 1, timeout=60))
    return answers


async def interaction_reply(people: DiscordPeople, token: str) -> Message:
    """The message a deferred interaction response became, once Lore has filled it in."""
    await people.emu.wait_for("PATCH", rf"/webhooks/\d+/{re.escape(token)}/messages/\S+", timeout=60)
    return people.original(token)
