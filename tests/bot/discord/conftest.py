"""Fixtures for the Discord adapter: Lore's real bot (discord.py `commands.Bot`) against the local
gateway + REST emulator, over the real `Knowledge` (extractive) and the real embedded task client.

    lore = await connect_discord()                 # logged in, commands synced, READY received
    dm = await lore.dm("how do I set up the VPN?")
    answer = await lore.wait_answer(lore.dm_channel)

What people do and what Lore posted needs the emulator alone (`DiscordPeople`, which `LoreDiscord`
extends): tests/ops drive a `lore serve` process with it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.bot.conftest import own_knowledge
from tests.conftest import wait_for
from tests.emulators.discord_emu import (
    DEFAULT_BOT_ID,
    FLAG_EPHEMERAL,
    DiscordEmulator,
    interaction_command,
    interaction_component,
    make_guild,
    make_member,
    make_role,
    make_text_channel,
    make_user,
    message_create,
    patch_discord,
)

BOT_ID = str(DEFAULT_BOT_ID)
TOKEN = "test-discord-token"
GUILD_ID = "1400000000000000001"
SUPPORT = "1400000000000000002"  # #support, where people @mention Lore
RANDOM = "1400000000000000003"  # #random, outside the allowlist when one is set
DM_CHANNEL = "1400000000000000004"
ADMIN_ROLE = "1400000000000000005"
ALICE = make_user(1_400_000_000_000_000_010, "alice")
BOB = make_user(1_400_000_000_000_000_011, "bob")  # has the admin role
CAROL = make_user(1_400_000_000_000_000_012, "carol")  # a configured admin user
HEARTBEAT_S = 0.5
CALLBACK = r"/interactions/\d+/[^/]+/callback"
WEBHOOK = rf"/webhooks/{BOT_ID}/[^/]+"
WEBHOOK_MESSAGE = rf"/webhooks/{BOT_ID}/[^/]+/messages/[^/]+"


def lore_user() -> dict[str, Any]:
    return make_user(DEFAULT_BOT_ID, "Lore", bot=True)


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    guild = make_guild(
        GUILD_ID,
        channels=[
            make_text_channel(SUPPORT, GUILD_ID, "support"),
            make_text_channel(RANDOM, GUILD_ID, "random"),
        ],
        members=[make_member(ALICE), make_member(BOB, roles=[ADMIN_ROLE]), make_member(CAROL)],
        roles=[make_role("Lore admins", 0, role_id=ADMIN_ROLE)],
    )
    async with DiscordEmulator(guilds=[guild], heartbeat_interval_ms=int(HEARTBEAT_S * 1000)) as e:
        with patch_discord(e):
            yield e


@dataclass
class DiscordPeople:
    """What people do in the Discord emulator, and what Lore posted there: all a test needs when
    Lore runs elsewhere (a `lore serve` process, tests/ops)."""

    emu: DiscordEmulator

    # ---- what users do ---------------------------------------------------------------------

    async def dm(
        self, text: str, *, user: dict[str, Any] = ALICE, channel: str = DM_CHANNEL
    ) -> dict[str, Any]:
        msg = message_create(text, user, channel)
        await self.emu.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def mention(
        self, text: str = "how do I set up the VPN?", *, user: dict[str, Any] = ALICE, channel: str = SUPPORT
    ) -> dict[str, Any]:
        roles = self.member(user)["roles"]
        msg = message_create(
            f"<@{BOT_ID}> {text}", user, channel, GUILD_ID, mentions=[lore_user()], roles=roles
        )
        await self.emu.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def say(self, text: str, *, user: dict[str, Any] = ALICE, channel: str = SUPPORT) -> dict[str, Any]:
        msg = message_create(text, user, channel, GUILD_ID, roles=self.member(user)["roles"])
        await self.emu.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def command(self, name: str, options: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        kw.setdefault("user", ALICE)
        kw.setdefault("guild_id", GUILD_ID)
        kw.setdefault("channel_id", SUPPORT)
        if kw["guild_id"] and "member" not in kw:
            kw["member"] = self.member(kw["user"])
        cmd = interaction_command(name, options, **kw)
        await self.emu.dispatch("INTERACTION_CREATE", cmd)
        return cmd

    async def click(
        self, custom_id: str, message: dict[str, Any], *, user: dict[str, Any] = ALICE
    ) -> dict[str, Any]:
        guild = message.get("guild_id")
        member = self.member(user) if guild else None
        click = interaction_component(custom_id, user, message["channel_id"], message, guild, member)
        await self.emu.dispatch("INTERACTION_CREATE", click)
        return click

    def member(self, user: dict[str, Any]) -> dict[str, Any]:
        roles = [ADMIN_ROLE] if user["id"] == BOB["id"] else []
        return make_member(user, roles=roles)

    # ---- what Lore did ---------------------------------------------------------------------

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Lore's messages in a channel (or thread), oldest first, as they look now (edits applied)."""
        return [m for m in self.emu.history.get(channel, []) if m["author"]["id"] == BOT_ID]

    def answers(self, channel: str) -> list[dict[str, Any]]:
        """Lore's messages in `channel` that end an answer (they carry the vote buttons)."""
        return [m for m in self.messages(channel) if custom_ids(m)]

    async def wait_answer(self, channel: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:  # noqa: ASYNC109
        await wait_for(
            lambda: len(self.answers(channel)) >= count, timeout, f"{count} answer(s) in {channel}"
        )
        return self.answers(channel)[count - 1]

    def posts(self, channel: str) -> list[Any]:
        return self.emu.calls_to("POST", rf"/channels/{channel}/messages")

    def followups(self, token: str) -> list[Any]:
        return self.emu.calls_to("POST", rf"/webhooks/{BOT_ID}/{re.escape(token)}")

    def edits(self, token: str) -> list[Any]:
        return self.emu.calls_to("PATCH", rf"/webhooks/{BOT_ID}/{re.escape(token)}/messages/[^/]+")

    def original(self, token: str) -> dict[str, Any]:
        """The message an interaction's deferred response became (its first follow-up fills it in)."""
        return self.emu.originals[token]

    def is_ephemeral(self, message: dict[str, Any]) -> bool:
        return bool(message["flags"] & FLAG_EPHEMERAL)


@dataclass
class LoreDiscord(DiscordPeople):
    """Lore's real Discord bot connected to the emulator, with helpers to drive it."""

    settings: Any
    services: Any
    bot: Any
    gateway: asyncio.Task[None] | None = None
    _db: Any = None
    closed: bool = False
    dm_channel: str = DM_CHANNEL
    sent: list[dict[str, Any]] = field(default_factory=list)

    # ---- the real feedback store -----------------------------------------------------------

    @property
    def db(self) -> Any:
        if self._db is None:
            from feedback.db import Database

            self._db = Database.from_settings(self.settings)
            self._db.ensure_schema()
        return self._db

    def user_hash(self, user: dict[str, Any]) -> str:
        from feedback.identity import load_key, pseudonymize

        return pseudonymize("discord", user["id"], load_key(self.settings))

    def current_vote(self, answer_id: str, user: dict[str, Any] = ALICE) -> Any:
        from feedback.store import current_vote

        return current_vote(self.db.sessions, answer_id, self.user_hash(user))

    def interaction(self, answer_id: str) -> Any:
        from sqlalchemy import select

        from feedback.models import Interaction

        with self.db.sessions() as session:
            return session.scalars(
                select(Interaction).where(Interaction.answer_id == answer_id)
            ).one_or_none()

    async def settle(self, seconds: float = 0.3) -> None:
        """Let background work that should NOT produce anything have its chance to."""
        await asyncio.sleep(seconds)
        await self.bot.drain(10)

    async def stop(self) -> None:
        """Shut the bot down as `lore discord` does (drain, close), then its services."""
        if self.closed:
            return
        self.closed = True
        await self.bot.shutdown(10)
        if self.gateway is not None:
            await asyncio.wait_for(self.gateway, 10)
        await self.services.aclose()
        if self._db is not None:
            self._db.dispose()


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row.get("components", [])]


def answer_id_of(message: dict[str, Any]) -> str:
    return custom_ids(message)[0].split(":")[2]


def embed_text(message: dict[str, Any]) -> str:
    out = []
    for e in message.get("embeds") or []:
        out += [e.get("title") or "", e.get("description") or "", (e.get("footer") or {}).get("text", "")]
    return "\n".join(t for t in out if t)


def visible_text(message: dict[str, Any]) -> str:
    return "\n".join(t for t in (message.get("content") or "", embed_text(message)) if t)


@pytest.fixture
async def connect_discord(
    emu: DiscordEmulator, lore_settings: Any, embedder: Any
) -> AsyncIterator[Callable[..., Any]]:
    """`await connect_discord(engine=None, discord={...}, chat={...})` -> LoreDiscord, connected.

    Calling it again after `lore.stop()` is a restart: a new process's worth of objects (bot,
    Knowledge, task client, state) over the same data directory and feedback database."""
    from bot.discord.app import build_discord_bot
    from bot.services import build_services

    opened: list[LoreDiscord] = []

    async def connect(
        *, engine: Callable[[Any], Any] | None = None, discord: dict[str, Any] | None = None, **over: Any
    ) -> LoreDiscord:
        cfg = {"token": TOKEN, "admin_users": [int(CAROL["id"])], "admin_roles": [int(ADMIN_ROLE)]}
        settings = lore_settings(discord=cfg | (discord or {}), **over)
        kn = own_knowledge(settings, embedder)
        services = build_services(settings, knowledge=kn, engine=engine(kn) if engine else kn)
        bot = build_discord_bot(settings, services.conversation, guild_ready_timeout=0.05)
        lore = LoreDiscord(emu, settings, services, bot)
        opened.append(lore)
        await bot.start_session()
        lore.gateway = asyncio.create_task(bot.connect(reconnect=True))
        ready = asyncio.create_task(bot.wait_until_ready())
        await asyncio.wait({lore.gateway, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if lore.gateway.done():
            lore.gateway.result()
        assert ready.done(), "the bot did not become ready"
        return lore

    yield connect
    for lore in opened:
        await lore.stop()
