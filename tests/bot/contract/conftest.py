"""The Outbox contract: one suite, every adapter's real outbox against its emulator.

To add a platform, add its name to `PLATFORMS` and a branch in `outbox_factory` that yields an
`OutboxHarness`: the real outbox, a target in a test channel, and `delivered()`, which reads
back from the emulator what a user would now see in that channel (Lore's messages, oldest
first, after every update).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.core.messages import Target
from bot.core.ports import Outbox


@dataclass(frozen=True)
class Delivered:
    id: str
    text: str  # everything visible in the message (body, notices, sources)
    has_feedback: bool  # shows the 👍/👎 controls


@dataclass
class OutboxHarness:
    platform: str
    outbox: Outbox
    target: Target  # a channel message
    thread_target: Target  # a reply in a thread (or the platform's equivalent)
    delivered: Callable[[], Awaitable[list[Delivered]]]
    raw_calls: Callable[[], list[Any]]  # what reached the emulator, for platform-specific asserts


PLATFORMS = ["slack"]


@pytest.fixture(params=PLATFORMS)
async def outbox_factory(request: pytest.FixtureRequest) -> AsyncIterator[OutboxHarness]:
    if request.param == "slack":
        from slack_sdk.web.async_client import AsyncWebClient

        from bot.slack.outbox import SlackOutbox
        from tests.emulators.slack import BOT_TOKEN, BOT_USER_ID, SlackEmulator

        async with SlackEmulator() as slack:
            client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
            parent = slack.next_ts()

            async def delivered() -> list[Delivered]:
                found = []
                for m in slack.messages.get("CCONTRACT", []):
                    if m.get("user") != BOT_USER_ID:
                        continue
                    texts = []
                    for block in m.get("blocks") or []:
                        if "text" in block:
                            texts.append(block["text"]["text"])
                        texts += [
                            e["text"] for e in block.get("elements", []) if isinstance(e.get("text"), str)
                        ]
                    actions = [b for b in m.get("blocks") or [] if b["type"] == "actions"]
                    found.append(Delivered(m["ts"], "\n".join(texts) or m.get("text", ""), bool(actions)))
                return found

            yield OutboxHarness(
                "slack",
                SlackOutbox(client),
                Target("CCONTRACT", user="U1"),
                Target("CCONTRACT", thread=parent, user="U1"),
                delivered,
                lambda: slack.calls,
            )
    else:  # pragma: no cover - a platform listed without a harness
        raise AssertionError(f"no outbox harness for {request.param}")
