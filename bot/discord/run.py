"""Running the Discord adapter as one of `lore serve`'s runners: connect to the gateway (discord.py
heartbeats, reconnects and resumes on its own), serve until the stop event, finish the answers in
flight, disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from bot.discord.app import DiscordStartError, LoreBot

log = logging.getLogger(__name__)

INTENT_HELP = (
    "Discord refused the Message Content intent: enable it for the bot in the Developer Portal "
    "(Bot → Privileged Gateway Intents → Message Content Intent); see docs/discord.md (Discord app setup)"
)


async def run_discord(bot: LoreBot, stop: asyncio.Event, *, drain_timeout: float = 30) -> None:
    """Serve on the gateway until `stop` is set (call `bot.start_session()` first)."""
    if bot.user is None:
        await bot.start_session()
    gateway = asyncio.create_task(bot.connect(reconnect=True), name="discord-gateway")
    stopping = asyncio.create_task(stop.wait(), name="discord-stop")
    log.info("Discord: connecting to the gateway")
    try:
        await asyncio.wait({gateway, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if gateway.done():
            try:
                gateway.result()
            except discord.PrivilegedIntentsRequired as exc:
                raise DiscordStartError(INTENT_HELP) from exc
            if not stop.is_set():
                raise RuntimeError("the Discord gateway connection ended unexpectedly")
    finally:
        stopping.cancel()
        await bot.shutdown(drain_timeout)
        if not gateway.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway, 10)
        log.info("Discord disconnected")
