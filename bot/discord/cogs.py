"""Lore's listeners and slash commands. Each one acknowledges Discord first (interactions are
deferred or answered with the form at once, well inside the 3 s Discord allows), translates, and
spawns the core's work in the background, where it never blocks the gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.conversation import VoteInput
from bot.core.messages import Ignored, Notice, Target
from bot.discord import translate, views
from bot.discord.outbox import NO_MENTIONS

if TYPE_CHECKING:
    from bot.core.conversation import ConversationService
    from bot.core.ports import Surface
    from bot.discord.outbox import DiscordOutbox, DiscordThreadReader
    from config.settings import Settings

log = logging.getLogger(__name__)

SUMMARIZE = "Summarize this thread"
NO_THREAD = "That message isn't in a thread, so there is nothing to summarize."
ALREADY_ACKNOWLEDGED = 40060
UNKNOWN_INTERACTION = 10062

Interaction = discord.Interaction[Any]


async def acknowledge(interaction: Interaction, *, ephemeral: bool, thinking: bool = True) -> bool:
    """Defer `interaction` (Discord shows "Lore is thinking…", or nothing for a button with
    `thinking=False`). False when it was already acknowledged: the same interaction delivered
    again after a resume, which the first delivery is handling."""
    try:
        await interaction.response.defer(ephemeral=ephemeral, thinking=thinking)
        return True
    except discord.InteractionResponded:
        return False
    except discord.HTTPException as exc:
        if exc.code in (ALREADY_ACKNOWLEDGED, UNKNOWN_INTERACTION):
            # Answered by an earlier delivery of the same interaction, or more than 3 s late.
            log.warning("interaction %s could not be acknowledged (%s); skipped", interaction.id, exc.text)
            return False
        raise


def roles_of(interaction: Interaction) -> list[str]:
    """The member's role ids from the interaction (without @everyone); none in a DM."""
    user = interaction.user
    return [str(r.id) for r in user.roles if not r.is_default()] if isinstance(user, discord.Member) else []


def where(interaction: Interaction) -> tuple[str, str | None]:
    """(channel, thread) of an interaction; a thread's channel is its parent, as for messages."""
    channel = interaction.channel
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return str(channel.parent_id), str(channel.id)
    return str(interaction.channel_id or ""), None


class CogHost(Protocol):
    """What the cog uses of its bot (`bot.discord.app.LoreBot`), so the two need not import each other."""

    settings: Settings
    service: ConversationService
    surface: Surface
    outbox: DiscordOutbox
    reader: DiscordThreadReader

    @property
    def tree(self) -> app_commands.CommandTree[Any]: ...

    @property
    def user(self) -> discord.ClientUser | None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def get_channel(self, id: int, /) -> Any: ...


class LoreCog(commands.Cog):
    def __init__(self, bot: CogHost) -> None:
        self.bot = bot
        self.service = bot.service
        self.settings = bot.settings.discord
        # A message context-menu command (right-click a message → Apps); cogs cannot declare
        # those with a decorator, so it is added to the tree here, before the commands sync.
        self.summarize_menu = app_commands.ContextMenu(name=SUMMARIZE, callback=self.summarize)
        bot.tree.add_command(self.summarize_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.summarize_menu.name, type=self.summarize_menu.type)

    # ---- messages ------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.id == me.id:
            return  # Discord echoes Lore's own posts
        channel = message.channel
        parent = str(channel.parent_id) if isinstance(channel, discord.Thread) and channel.parent_id else None
        role = message.guild.self_role if message.guild is not None else None
        msg = translate.message_from_payload(
            translate.payload_of(message),
            bot_id=str(me.id),
            bot_role_ids=[str(role.id)] if role is not None else [],
            thread_parent=parent,
            answer_in=self.settings.answer_in,
        )
        if isinstance(msg, Ignored):
            log.debug("Discord message %s ignored: %s", message.id, msg.reason)
            return
        if isinstance(channel, discord.Thread) and channel.id == message.id and _in_forum(channel):
            msg = replace(msg, text=translate.forum_post_text(channel.name, msg.text))  # a new forum post
        if msg.reply_thread == msg.message_id and not msg.thread:  # a thread Lore may start on it
            self.bot.outbox.name_thread(msg.message_id, translate.thread_name(msg.text))
        answering = self.service.handle_message(msg, self.bot.surface)
        self.bot.spawn(answering, f"discord-message-{msg.message_id}")

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """A reaction: maybe a moderator's ⏸️ / ▶️, maybe a ✅ on an expert's reply."""
        await self._pause_on_reaction(payload)
        await self._expert_on_reaction(payload)

    async def _pause_on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        """⏸️ or ▶️ by a moderator on any message pauses or resumes auto-answers in its channel."""
        paused = translate.pause_emoji(payload.emoji.name)
        member = payload.member
        me = self.bot.user
        if paused is None or member is None or payload.guild_id is None or (me and member.id == me.id):
            return
        thread = self.bot.get_channel(payload.channel_id)
        parent = thread.parent_id if isinstance(thread, discord.Thread) and thread.parent_id else None
        channel = str(parent or payload.channel_id)
        moderator = translate.is_admin(
            member.id,
            [r.id for r in member.roles],
            member.guild_permissions.value,
            admin_users=self.settings.admin_users,
            admin_roles=self.settings.admin_roles,
        )
        user = str(member.id)
        self.bot.spawn(
            self.service.set_auto_paused(
                "discord",
                channel,
                user,
                paused=paused,
                is_moderator=moderator,
                surface=self.bot.surface,
                target=Target(channel, user=user, ephemeral=True),  # a DM: Discord has no ephemeral posts
                command=False,
            ),
            f"discord-pause-{payload.message_id}",
        )

    # ---- slash commands ------------------------------------------------------------------

    @app_commands.command(name="lore-pause", description="Moderators: pause Lore's unasked answers here")
    async def lore_pause(self, interaction: Interaction) -> None:
        await self._pause(interaction, paused=True)

    @app_commands.command(name="lore-resume", description="Moderators: resume Lore's unasked answers here")
    async def lore_resume(self, interaction: Interaction) -> None:
        await self._pause(interaction, paused=False)

    async def _pause(self, interaction: Interaction, *, paused: bool) -> None:
        if not await acknowledge(interaction, ephemeral=True):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        self.bot.spawn(
            self.service.set_auto_paused(
                "discord",
                channel,
                user,
                paused=paused,
                is_moderator=self.is_admin(interaction),
                surface=self.bot.surface,
                target=Target(channel, thread, user, ephemeral=True, interaction=interaction.token),
            ),
            f"discord-pause-{interaction.id}",
        )

    @app_commands.command(name="ask", description="Ask Lore about the docs; only you see the answer")
    @app_commands.describe(question="What do you want to know?")
    async def ask(self, interaction: Interaction, question: app_commands.Range[str, 1, 1000]) -> None:
        if not await acknowledge(interaction, ephemeral=True):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        msg = translate.ask_message(
            interaction_id=str(interaction.id),
            question=question,
            user=user,
            channel=channel,
            thread=thread,
            guild=str(interaction.guild_id) if interaction.guild_id else None,
            roles=roles_of(interaction),
        )
        target = Target(channel, thread, user, ephemeral=True, interaction=interaction.token)
        self.bot.spawn(self.service.ask(msg, self.bot.surface, target), f"discord-ask-{interaction.id}")

    async def summarize(self, interaction: Interaction, message: discord.Message) -> None:
        """ "Summarize this thread" on a message in a thread, or on the message a thread was
        started from. Only the person who asked sees the summary (`bot/core/summary.py`)."""
        if not await acknowledge(interaction, ephemeral=True):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        if thread is None and message.thread is not None:
            thread = str(message.id)  # the thread started on this channel message
        target = Target(channel, thread, user, ephemeral=True, interaction=interaction.token)
        if thread is None:
            await self.bot.outbox.send(target, Notice(NO_THREAD))
            return
        self.bot.spawn(
            self.service.summarize_thread(
                channel, thread, self.bot.reader, self.bot.surface, target, key=f"menu:{interaction.id}"
            ),
            f"discord-summary-{interaction.id}",
        )

    @app_commands.command(name="reindex", description="Refresh Lore's index from the docs (Lore admins)")
    @app_commands.describe(source="One source to refresh; every source when left out")
    async def reindex(self, interaction: Interaction, source: str | None = None) -> None:
        admin = self.is_admin(interaction)
        # Admins see progress in the channel; anyone else only their own refusal.
        if not await acknowledge(interaction, ephemeral=not admin):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        token = interaction.token
        self.bot.spawn(
            self.service.reindex(
                source,
                platform="discord",
                user=user,
                is_admin=admin,
                surface=self.bot.surface,
                target=Target(channel, thread, user, interaction=token),
                private=Target(channel, thread, user, ephemeral=True, interaction=token),
            ),
            f"discord-reindex-{interaction.id}",
        )

    @reindex.autocomplete("source")
    async def _source_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = [s for s in self.service.sources if current.lower() in s.lower()]
        return [app_commands.Choice(name=s, value=s) for s in names[:25]]

    def is_admin(self, interaction: Interaction) -> bool:
        user = interaction.user
        roles = [r.id for r in user.roles] if isinstance(user, discord.Member) else []
        return translate.is_admin(
            user.id,
            roles,
            interaction.permissions.value,
            admin_users=self.settings.admin_users,
            admin_roles=self.settings.admin_roles,
        )

    # ---- buttons and the feedback form ---------------------------------------------------

    async def on_vote(self, interaction: Interaction, kind: Literal["up", "down"], answer_id: str) -> None:
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        vote = VoteInput("discord", user, answer_id, kind, key=f"click:{interaction.id}")
        private = Target(channel, thread, user, ephemeral=True, interaction=interaction.token)
        if kind == "down":
            try:
                # The form is the answer to the click; the vote is recorded meanwhile, and the
                # form's submission (a later, fuller vote) brings the thank-you.
                await interaction.response.send_modal(views.FeedbackModal(answer_id))
            except discord.InteractionResponded:
                return
            except discord.HTTPException as exc:
                if exc.code in (ALREADY_ACKNOWLEDGED, UNKNOWN_INTERACTION):
                    return
                log.exception("could not open the feedback form; recording the 👎 alone")
            else:
                self.bot.spawn(
                    self.service.vote(vote, self.bot.surface, private, notify=False),
                    f"discord-vote-{answer_id}",
                )
                return
        if not await acknowledge(interaction, ephemeral=True):
            return
        self.bot.spawn(self.service.vote(vote, self.bot.surface, private), f"discord-vote-{answer_id}")

    @commands.Cog.listener()
    async def on_interaction(self, interaction: Interaction) -> None:
        """Feedback form submissions, recognised by their custom_id (`fb:form:<answer_id>`), so a
        form opened before a restart still counts."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        form = translate.parse_feedback_form(cast(Mapping[str, Any], interaction.data or {}))
        if isinstance(form, Ignored):
            return
        if not await acknowledge(interaction, ephemeral=True):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        vote = VoteInput(
            "discord",
            user,
            form.answer_id,
            "down",
            reason=form.reason,
            correction=form.correction,
            key=f"form:{interaction.id}",
        )
        private = Target(channel, thread, user, ephemeral=True, interaction=interaction.token)
        self.bot.spawn(self.service.vote(vote, self.bot.surface, private), f"discord-form-{form.answer_id}")

    async def on_share(self, interaction: Interaction, answer_id: str) -> None:
        if not await acknowledge(interaction, ephemeral=False, thinking=False):
            return
        self.bot.spawn(self._share(interaction, answer_id), f"discord-share-{answer_id}")

    async def on_answer_privately(self, interaction: Interaction, answer_id: str) -> None:
        """The same question, answered to the clicker alone (an ephemeral reply to the click),
        with their own rights: their id and roles from this interaction."""
        if not await acknowledge(interaction, ephemeral=True):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        target = Target(channel, thread, user, ephemeral=True, interaction=interaction.token)
        principals = translate.principals_of(user, roles_of(interaction) if interaction.guild_id else ())
        self.bot.spawn(
            self.service.answer_privately(
                answer_id, user, principals, self.bot.surface, target, key=f"click:{interaction.id}"
            ),
            f"discord-private-{answer_id}",
        )

    # ---- "Ask an expert" (bot/core/escalation.py) ------------------------------------------

    async def on_ask_expert(self, interaction: Interaction, answer_id: str) -> None:
        """Lore asks the experts; the clicker is told whom, in an ephemeral reply to the click."""
        escalation = self.service.escalation
        if escalation is None or not await acknowledge(interaction, ephemeral=True):
            return
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        private = Target(channel, thread, user, ephemeral=True, interaction=interaction.token)
        self.bot.spawn(
            escalation.escalate(answer_id, user, self.bot.surface, private, key=f"click:{interaction.id}"),
            f"discord-expert-{answer_id}",
        )

    async def _expert_on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        me = self.bot.user
        escalation = self.service.escalation
        if me is None or escalation is None:
            return
        channel = self.bot.get_channel(payload.channel_id)  # a thread's parent, from the cache
        parent = str(channel.parent_id) if isinstance(channel, discord.Thread) and channel.parent_id else None
        data = {
            "user_id": payload.user_id,
            "channel_id": payload.channel_id,
            "message_id": payload.message_id,
            "emoji": {"name": payload.emoji.name},
        }
        reaction = translate.reaction_from_payload(data, bot_id=str(me.id), thread_parent=parent)
        if isinstance(reaction, Ignored):
            return
        self.bot.spawn(
            escalation.reaction(
                self.bot.surface, reaction.channel, reaction.message_id, reaction.user, reaction.emoji
            ),
            f"discord-reaction-{reaction.message_id}",
        )

    async def _share(self, interaction: Interaction, answer_id: str) -> None:
        channel, thread = where(interaction)
        user = str(interaction.user.id)
        # A public follow-up: it reaches the channel even where Lore could not post by itself.
        target = Target(channel, thread, user, interaction=interaction.token)
        direct = interaction.guild_id is None  # their own DM with Lore
        outcome = await self.service.share(answer_id, user, self.bot.surface, target, direct=direct)
        message = interaction.message
        if outcome.status == "answered" and message is not None and message.flags.ephemeral:
            try:  # the private copy keeps its vote buttons but cannot be shared twice
                await interaction.edit_original_response(
                    view=views.view_for(translate.answer_buttons(answer_id)), allowed_mentions=NO_MENTIONS
                )
            except discord.HTTPException:
                log.warning("could not remove the Share button from the private answer", exc_info=True)


def _in_forum(thread: discord.Thread) -> bool:
    """A post in a forum (or media) channel, where every new post is a question."""
    parent = thread.parent
    return isinstance(parent, discord.ForumChannel)
