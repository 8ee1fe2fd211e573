"""The canary's questions asked in the Slack emulator, and what Lore sent there that people other
than the member of `secret` may see. Shared by the embedded canary (tests/bot/slack/, Lore in the
test process) and the multi-process one (tests/ops/, Lore in a `lore serve` process): both drive
Lore through `SlackPeople`, the emulator alone.
"""

from __future__ import annotations

import json
from typing import Any

from tests.bot.slack.conftest import SlackPeople, button_values
from tests.canary.corpus import Canary
from tests.emulators.slack import Call, SlackEmulator

Question = tuple[str, Canary]


def private_values(args: dict[str, Any]) -> list[str]:
    """The "Answer privately" button's value on an answer (none: nothing was left out)."""
    return [v for v in button_values(args) if v.startswith("private:")]


def seen_by_others(
    slack: SlackEmulator, member: str, member_dm: str, member_urls: str = "secret"
) -> list[str]:
    """Everything Slack received from Lore that someone other than `member` may see: every call
    but those in `member`'s DM, ephemerals for `member`, and response_urls whose name starts with
    `member_urls` (the test names those it hands to `member`)."""
    out = []
    for call in slack.calls:
        if call.args.get("channel") == member_dm or (
            call.method == "chat.postEphemeral" and call.args.get("user") == member
        ):
            continue
        if call.method == "response_url" and call.name.startswith(member_urls):
            continue
        out.append(f"{call.method} {json.dumps(call.args)}")
    return out


async def mentions(
    people: SlackPeople, questions: list[Question], *, user: str, channel: str = "C1"
) -> list[Call]:
    """Ask each question with an @mention at the top of `channel`; their answers, in order."""
    stamps = [await people.mention(q, user=user, channel=channel) for q, _ in questions]
    return [await people.wait_answer(ts, channel, timeout=60) for ts in stamps]


async def thread(
    people: SlackPeople, questions: list[Question], *, user: str, channel: str = "C1"
) -> list[Call]:
    """The first question as an @mention, the others as follow-ups (no mention) in its thread;
    every answer in that thread, in order."""
    first = await people.mention(questions[0][0], user=user, channel=channel)
    await people.wait_answer(first, channel, timeout=60)
    for n, (q, _) in enumerate(questions[1:], start=2):
        await people.say(q, user=user, channel=channel, thread_ts=first)
        await people.slack.wait_until(
            lambda: len(people.answers(channel, first)) >= n,  # noqa: B023
            60,
            "a follow-up's answer",
        )
    return people.answers(channel, first)


async def dms(people: SlackPeople, questions: list[Question], *, user: str, channel: str) -> list[Call]:
    """Ask each question in a DM, one after the other (a DM is one conversation)."""
    answers = []
    for q, _ in questions:
        before = len(people.answers(channel, None))
        await people.say(q, user=user, channel=channel, channel_type="im")
        await people.slack.wait_until(lambda: len(people.answers(channel, None)) > before, 60, "a DM answer")  # noqa: B023
        answers.append(people.answers(channel, None)[before])
    return answers
