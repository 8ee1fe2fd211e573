"""The Discord adapter: a discord.py `commands.Bot` whose cog acknowledges each event at once and
hands the work to the conversation core in background tasks.

The bot owns what STYLE.md gives adapters: translation (`bot.discord.translate`), acknowledging
in time (interactions are deferred before anything slow), and ids in button custom_ids. All
deciding, answering, splitting and recording is `ConversationService`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import discord
from discord.ext import commands

from bot.core.background import BackgroundTasks
from bot.core.conversation import ConversationService
from bot.core.ports import Surface
from bot.discord import translate, views
from bot.discord.cogs import LoreCog
from bot.discord.directory import DiscordDirectory, DiscordExperts, configured_roles
from bot.discord.outbox import NO_MENTIONS, DiscordFiles, DiscordOutbox, DiscordThreadReader
from config.settings import Settings

log = logging.getLogger(__name__)


class DiscordStartError(RuntimeError):
    """The adapter cannot start (a wrong token, a missing intent). The message is for the operator."""


# What Lore does in a server, and so the permissions its invite asks for (docs/discord.md): read the
# channel and its history (thread context, replies), post answers with their source embeds, start a
# public thread on a question and post in it, and offer slash commands.
PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    read_message_history=True,
    use_application_commands=True,
)
SCOPES = ("bot", "applications.commands")


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds Lore to a server with exactly `PERMISSIONS`."""
    return discord.utils.oauth_url(application_id, permissions=PERMISSIONS, scopes=SCOPES)


def lore_intents() -> discord.Intents:
    """What Lore needs and no more: guilds (channels and threads), guild messages and reactions
    (a ✅ accepting an expert's reply, bot/core/escalation.py; a moderator's ⏸️ / ▶️ on
    auto-answers), DMs, and the privileged Message Content intent (to read follow-ups in threads
    without a mention)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.guild_reactions = True
    intents.dm_messages = True
    intents.message_content = True
    return intents


# discord.py logs every REST body and gateway event at DEBUG: answers, and so passages a channel
# or a log reader may not read (issue 19), would reach the log. Lore's own debug lines never
# carry document text, so these stay at INFO even when Lore logs at DEBUG.
PAYLOAD_LOGGERS = ("discord.http", "discord.gateway", "discord.webhook", "discord.state", "discord.client")


def quiet_payload_loggers(names: tuple[str, ...] = PAYLOAD_LOGGERS) -> None:
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.INFO))


class LoreBot(commands.Bot):
    """Lore on Discord: build with `build_discord_bot`, then `start_session` (log in, sync the
    commands) and run with `bot.discord.run.run_discord`."""

    def __init__(self, settings: Settings, service: ConversationService, **options: Any) -> None:
        options.setdefault("allowed_mentions", NO_MENTIONS)  # also the default for anything else sent
        quiet_payload_loggers()
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # Lore has no voice
        super().__init__(
            command_prefix=commands.when_mentioned,  # unused: Lore has slash commands, not prefixes
            intents=lore_intents(),
            help_command=None,
            **options,
        )
        cfg = settings.discord
        self.settings = settings
        self.service = service
        self.outbox = DiscordOutbox(self, thread_archive_minutes=cfg.thread_archive_minutes)
        self.reader = DiscordThreadReader(
            self,
            lambda: str(self.user.id) if self.user else "",
            skip_texts=[translate.progress_content(settings.chat.progress_text)],
        )
        # Roles for DMs (a DM's payload has none), looked up only when [groups] names a role.
        self.directory = DiscordDirectory(self, configured_roles(settings.groups))
        self.surface = Surface(
            "discord",
            self.outbox,
            self.reader,
            frozenset(str(c) for c in cfg.channels),
            directory=self.directory,
            experts=DiscordExperts(self),
            files=DiscordFiles(),
        )
        self.buttons: views.ButtonHandler | None = None  # the cog, once set up
        self.synced: list[discord.app_commands.AppCommand] = []
        self.tasks = BackgroundTasks("Discord")

    async def setup_hook(self) -> None:
        # Buttons from any earlier run are routed by their custom_id (no per-message state).
        self.add_dynamic_items(*views.DYNAMIC_ITEMS)
        cog = LoreCog(self)
        await self.add_cog(cog)
        self.buttons = cog
        await self.sync_commands()

    async def sync_commands(self) -> None:
        """Register /ask and /reindex: in each of `discord.guild_ids` (instant, for development),
        else globally (Discord may take a while to show changes everywhere)."""
        guilds = self.settings.discord.guild_ids
        try:
            if guilds:
                for guild_id in guilds:
                    guild = discord.Object(guild_id)
                    self.tree.copy_global_to(guild=guild)
                    self.synced = await self.tree.sync(guild=guild)
            else:
                self.synced = await self.tree.sync()
            where = f"guilds {', '.join(map(str, guilds))}" if guilds else "globally"
            log.info("Discord: synced %s %s", ", ".join(f"/{c.name}" for c in self.synced), where)
        except discord.HTTPException as exc:
            # Mentions and DMs still work; say what is probably wrong.
            log.error(
                "Discord: could not sync the slash commands (%s %s). Was Lore invited with the "
                "applications.commands scope, to the guilds in discord.guild_ids?",
                exc.status,
                exc.text,
            )

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the cog's listener does all the answering."""

    async def start_session(self) -> None:
        """Log in with `discord.token` (REST: who am I, the application; then `setup_hook`), so a
        wrong token fails here, loudly, rather than in the gateway loop."""
        token = self.settings.discord.token
        if token is None:
            raise DiscordStartError("set discord.token (LORE_DISCORD__TOKEN)")
        try:
            await self.login(token.get_secret_value())
        except discord.LoginFailure as exc:
            await self.close()
            raise DiscordStartError(f"Discord rejected the bot token (discord.token): {exc}") from exc
        me = self.user
        log.info("Discord: logged in as %s (%s)", me, me.id if me else "?")
        if self.application_id:
            log.info("Discord: invite Lore to a server with %s", invite_url(self.application_id))

    # ---- background work -----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` after the event was acknowledged (kept until done, drained on shutdown)."""
        return self.tasks.spawn(coro, name)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Wait for in-flight work (answers being sent, votes being recorded)."""
        await self.tasks.drain(timeout)

    async def shutdown(self, timeout: float = 30) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Finish answers in flight (the gateway stays up meanwhile), then disconnect."""
        await self.drain(timeout)
        if not self.is_closed():
            await self.close()


def build_discord_bot(settings: Settings, service: ConversationService, **options: Any) -> LoreBot:
    """The adapter. `options` go to `commands.Bot` (tests pass `guild_ready_timeout`). Settings
    `discord.api_base`/`discord.gateway_url` point discord.py (process-wide) elsewhere."""
    cfg = settings.discord
    if cfg.api_base:
        discord.http.Route.BASE = cfg.api_base.rstrip("/")
    if cfg.gateway_url:
        import yarl

        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)
    return LoreBot(settings, service, **options)
