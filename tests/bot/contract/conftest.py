"""The Outbox contract: one suite, every adapter's real outbox against its emulator.

To add a platform, add its harness factory to `HARNESSES`: an async context manager yielding an
`OutboxHarness`, which holds the real outbox, a target in a test channel, and `delivered()`, which
reads back from the emulator what a user would now see in that channel (Lore's messages, oldest
first, after every update). The `harness` fixture runs every test once per platform.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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


@asynccontextmanager
async def slack_harness() -> AsyncIterator[OutboxHarness]:
    """The real `SlackOutbox` on a Web API client pointed at the Slack emulator."""
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
                    texts += [e["text"] for e in block.get("elements", []) if isinstance(e.get("text"), str)]
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


@asynccontextmanager
async def discord_harness() -> AsyncIterator[OutboxHarness]:
    """The real `DiscordOutbox` on a discord.py client that only logged in (REST, no gateway), so
    nothing it does can lean on a cache the gateway would have filled."""
    import discord

    from bot.discord.outbox import DiscordOutbox
    from tests.emulators.discord_emu import (
        DEFAULT_BOT_ID,
        DiscordEmulator,
        make_guild,
        make_text_channel,
        make_user,
        message_create,
        patch_discord,
    )

    guild, channel, user = "1410000000000000001", "1410000000000000002", make_user(1_410_000_000_000_000_003)
    async with DiscordEmulator(
        guilds=[make_guild(guild, channels=[make_text_channel(channel, guild)])]
    ) as emu:
        with patch_discord(emu):
            client = discord.Client(intents=discord.Intents.none())
            await client.login("contract-token")
            parent = message_create("a question to answer in a thread", user, channel, guild)
            emu.add_history(channel, [parent])

            async def delivered() -> list[Delivered]:
                places = [channel] + [
                    c for c, info in emu.channels.items() if info.get("parent_id") == channel
                ]
                mine = [
                    m
                    for place in places
                    for m in emu.history.get(place, [])
                    if m["author"]["id"] == str(DEFAULT_BOT_ID)
                ]
                found = []
                for m in sorted(mine, key=lambda m: int(m["id"])):
                    texts = [m.get("content") or ""]
                    for e in m.get("embeds") or []:
                        texts += [e.get("title") or "", e.get("description") or ""]
                        texts.append((e.get("footer") or {}).get("text") or "")
                    ids = [c["custom_id"] for row in m.get("components") or [] for c in row["components"]]
                    feedback = any(i.startswith("fb:") for i in ids)
                    found.append(Delivered(m["id"], "\n".join(t for t in texts if t), feedback))
                return found

            try:
                yield OutboxHarness(
                    "discord",
                    DiscordOutbox(client),
                    Target(channel, user=user["id"]),
                    Target(channel, thread=parent["id"], user=user["id"]),
                    delivered,
                    lambda: emu.calls,
                )
            finally:
                await client.close()


@asynccontextmanager
async def web_harness() -> AsyncIterator[OutboxHarness]:
    """The web chat's `WebOutbox`; what a user sees is each message rendered as the page shows it."""
    from bot.web.chat import WebOutbox, reply_view

    outbox = WebOutbox()

    async def delivered() -> list[Delivered]:
        shown = []
        for message in outbox.messages:
            view = reply_view(message.reply)
            text = "\n".join([view["text"], *(s["title"] for s in view.get("sources", []))])
            if view["kind"] == "error":
                text += f" (reference {view['correlation_id']})"
            shown.append(Delivered(message.ref.id, text, bool(view.get("feedback"))))
        return shown

    yield OutboxHarness(
        "web",
        outbox,
        Target("conversation-1", user="U1"),
        Target("conversation-1", thread="conversation-1", user="U1"),
        delivered,
        lambda: list(outbox.messages),
    )


HARNESSES: dict[str, Callable[[], AbstractAsyncContextManager[OutboxHarness]]] = {
    "slack": slack_harness,
    "discord": discord_harness,
    "web": web_harness,
}


@pytest.fixture(params=list(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[OutboxHarness]:
    async with HARNESSES[request.param]() as h:
        yield h
