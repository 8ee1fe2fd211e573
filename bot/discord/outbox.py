"""The Discord side of the core's ports: `DiscordOutbox` and `DiscordThreadReader`.

Both work on REST alone (a logged-in `discord.Client`; no gateway cache is needed), so they run
the same in the bot and in the Outbox contract suite. Rate limits (429) and server errors are
retried by discord.py's HTTP client; what it finally refuses becomes a `DeliveryError`. Every
message sent or edited, in channels, DMs and interaction follow-ups, carries
`allowed_mentions=none`: an answer quoting "@everyone" from a document pings nobody.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import discord

from bot.core.files import read_limited
from bot.core.messages import Attachment, MessageRef, Progress, Reply, Target
from bot.core.ports import DeliveryError
from bot.core.summary import ThreadPost, ThreadUnreadable
from bot.discord import translate, views
from knowledge.answer import Turn

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()

# Discord JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
MISSING_ACCESS = 50001
CANNOT_DM = 50007
MISSING_PERMISSIONS = 50013
WRONG_CHANNEL_TYPE = 50024
INVALID_WEBHOOK_TOKEN = 50027
THREAD_EXISTS = 160004
_NO_THREAD_HERE = {MISSING_ACCESS, MISSING_PERMISSIONS, WRONG_CHANNEL_TYPE}


class _Bounded(OrderedDict[str, str]):
    """A small LRU map (thread names waiting for their thread, threads known to exist)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: str, value: str = "") -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class DiscordOutbox:
    """`Outbox` on Discord's REST API.

    - Channel targets post with the bot token; a target with `thread` set to a message id that is
      not yet a thread starts a public thread on that message first (Discord gives the thread the
      message's id), or replies in the channel when threads are not allowed there.
    - `interaction` targets (a slash command or button, already deferred by the adapter) use the
      interaction's follow-up webhook; the first follow-up replaces the "thinking…" placeholder.
    - `ephemeral` targets without an interaction (a rate-limit notice after a mention) go to the
      user's DMs, or to the channel if their DMs are closed. So do public posts the channel refuses
      (missing permissions), as `Target` asks.
    - A `Progress` first triggers the typing indicator, Lore's first visible reaction.
    """

    max_message_len = translate.MAX_CONTENT

    def __init__(self, client: discord.Client, *, thread_archive_minutes: int = 1440) -> None:
        self.client = client
        self.thread_archive_minutes = thread_archive_minutes
        self._names = _Bounded(1000)  # starter message id -> the thread name to use
        self._threads = _Bounded(5000)  # thread ids known to exist

    def name_thread(self, message_id: str, name: str) -> None:
        """The name for a thread Lore may start on `message_id` (the question's first line)."""
        self._names.put(message_id, name)

    # ---- Outbox ------------------------------------------------------------------------------

    async def send(self, target: Target, reply: Reply) -> MessageRef:
        rendered = translate.render(reply)  # an unknown reply fails here, before anything is sent
        try:
            if target.interaction:
                return await self._followup(target, rendered)
            if target.ephemeral:
                return await self._private(target, rendered)
            if isinstance(reply, Progress):
                await self._typing(target)
            try:
                channel, reference = await self._destination(target)
                message = await self._post(channel, rendered, reference)
            except discord.Forbidden as exc:
                if exc.code not in _NO_THREAD_HERE or not target.user:
                    raise
                # Lore cannot post here (channel permissions): the asker gets it in their DMs.
                log.info("cannot post in %s (%s); sending to the user's DMs", target.channel, exc.code)
                return await self._private(target, rendered)
            return MessageRef(target, str(channel), str(message.id))
        except discord.HTTPException as exc:
            raise _delivery_error(exc) from exc

    async def update(self, ref: MessageRef, reply: Reply) -> MessageRef:
        rendered = translate.render(reply)
        try:
            if ref.target.interaction and ref.id:
                try:
                    await self._webhook(ref.target.interaction).edit_message(
                        int(ref.id), **_edit_fields(rendered)
                    )
                    return ref
                except discord.HTTPException as exc:
                    # Interaction tokens last 15 minutes; a long /reindex outlives its token. Lore's
                    # own public message can still be edited with the bot token.
                    if ref.target.ephemeral or exc.code not in (INVALID_WEBHOOK_TOKEN, UNKNOWN_WEBHOOK):
                        raise
                    log.info("interaction token expired; editing message %s through the channel", ref.id)
            if not ref.id:
                return await self.send(ref.target, reply)
            message = self.client.get_partial_messageable(int(ref.channel)).get_partial_message(int(ref.id))
            await message.edit(**_edit_fields(rendered))
            return ref
        except discord.HTTPException as exc:
            raise _delivery_error(exc) from exc

    # ---- the ways a message goes out -----------------------------------------------------------

    def _webhook(self, token: str) -> discord.Webhook:
        """The interaction's follow-up webhook, from its token alone (so it needs no live
        `Interaction` object, like Slack's response_url)."""
        app_id = self.client.application_id
        if app_id is None:
            raise DeliveryError("the Discord client is not logged in (no application id)")
        hook = discord.Webhook.partial(app_id, token, client=self.client)
        hook.type = discord.WebhookType.application  # ephemeral follow-ups need an application webhook
        return hook

    async def _followup(self, target: Target, rendered: translate.Rendered) -> MessageRef:
        view = views.view_for(rendered.buttons)
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        message = await self._webhook(target.interaction or "").send(
            content=rendered.content,
            embeds=_embeds(rendered),
            ephemeral=target.ephemeral,
            allowed_mentions=NO_MENTIONS,
            wait=True,
            **extra,
        )
        return MessageRef(target, str(message.channel.id), str(message.id))

    async def _private(self, target: Target, rendered: translate.Rendered) -> MessageRef:
        """Discord has no ephemeral messages outside interactions: a DM is the private place."""
        if not target.user:
            raise DeliveryError("a private Discord message needs an interaction or the user it is for")
        try:
            dm = await self.client.create_dm(discord.Object(int(target.user)))
            message = await self._post(dm.id, rendered, None)
            return MessageRef(target, str(dm.id), str(message.id))
        except discord.Forbidden as exc:
            if exc.code != CANNOT_DM:
                raise
        log.info("user %s does not accept DMs; posting the notice in the channel", target.user)
        public = replace(target, ephemeral=False, reply_to=None)
        in_thread = target.thread and self._is_thread(target.thread)
        channel = int(target.thread) if target.thread and in_thread else int(target.channel)
        message = await self._post(channel, rendered, None)
        return MessageRef(public, str(channel), str(message.id))

    async def _typing(self, target: Target) -> None:
        where = target.thread if target.thread and self._is_thread(target.thread) else target.channel
        try:
            await self.client.http.send_typing(int(where))
        except discord.HTTPException as exc:  # cosmetic: the progress message follows anyway
            log.debug("typing indicator in %s failed: %s", where, exc)

    async def _destination(self, target: Target) -> tuple[int, discord.MessageReference | None]:
        """The channel to post in (starting the target's thread if needed), and the reply reference."""
        thread = target.thread
        if thread is None:
            return int(target.channel), _reference(target.reply_to, target.channel)
        if not self._is_thread(thread):
            try:
                await self.client.http.start_thread_with_message(
                    int(target.channel),
                    int(thread),
                    name=self._names.pop(thread, "") or "Lore",
                    auto_archive_duration=self.thread_archive_minutes,  # type: ignore[arg-type]  # a Literal in discord.py
                )
                log.info("started thread %s in %s", thread, target.channel)
            except discord.HTTPException as exc:
                if exc.code in _NO_THREAD_HERE:
                    log.info("cannot start a thread in %s (%s); replying instead", target.channel, exc.code)
                    return int(target.channel), _reference(thread, target.channel)
                if exc.code not in (THREAD_EXISTS, UNKNOWN_MESSAGE):  # already a thread: post in it
                    raise
            self._threads.put(thread)
        return int(thread), _reference(target.reply_to, thread)

    def _is_thread(self, channel_id: str) -> bool:
        if channel_id in self._threads:
            return True
        known = isinstance(self.client.get_channel(int(channel_id)), discord.Thread)
        if known:
            self._threads.put(channel_id)
        return known

    async def _post(
        self, channel_id: int, rendered: translate.Rendered, reference: discord.MessageReference | None
    ) -> discord.Message:
        channel = self.client.get_partial_messageable(channel_id)
        extra: dict[str, Any] = {}
        if (view := views.view_for(rendered.buttons)) is not None:
            extra["view"] = view
        if reference is not None:
            extra |= {"reference": reference, "mention_author": False}
        return await channel.send(
            content=rendered.content, embeds=_embeds(rendered), allowed_mentions=_mentions(rendered), **extra
        )


def _mentions(rendered: translate.Rendered) -> discord.AllowedMentions:
    """Nobody, except the expert role Lore is asking (bot/core/escalation.py)."""
    if not rendered.ping_roles:
        return NO_MENTIONS
    roles = [discord.Object(int(r)) for r in rendered.ping_roles]
    return discord.AllowedMentions(everyone=False, users=False, roles=roles, replied_user=False)


def _embeds(rendered: translate.Rendered) -> list[discord.Embed]:
    return [discord.Embed.from_dict(e) for e in rendered.embeds]  # type: ignore[arg-type]  # API dicts


def _edit_fields(rendered: translate.Rendered) -> dict[str, Any]:
    """An edit replaces everything: content, embeds and buttons (cleared when there are none)."""
    return {
        "content": rendered.content,
        "embeds": _embeds(rendered),
        "view": views.view_for(rendered.buttons),
        "allowed_mentions": NO_MENTIONS,
    }


def _reference(message_id: str | None, channel_id: str) -> discord.MessageReference | None:
    if not message_id:
        return None
    return discord.MessageReference(
        message_id=int(message_id), channel_id=int(channel_id), fail_if_not_exists=False
    )


def _delivery_error(exc: discord.HTTPException) -> DeliveryError:
    return DeliveryError(
        f"Discord refused the message: {exc.status} (code {exc.code}) {exc.text}"[:300],
        retryable=exc.status == 429 or exc.status >= 500,
    )


class DiscordThreadReader:
    """`ThreadReader` over channel history: a thread's latest messages before one, plus its
    starter message (which lives in the parent channel, under the thread's own id)."""

    def __init__(
        self,
        client: discord.Client,
        bot_id: Callable[[], str],
        *,
        skip_texts: Sequence[str] = (),
        limit: int = 50,
    ) -> None:
        self.client = client
        self._bot_id = bot_id
        self._skip = tuple(skip_texts)
        self.limit = limit

    async def history(self, channel: str, thread: str, *, before: str | None = None) -> list[Turn]:
        http = self.client.http
        messages: list[Any] = list(
            await http.logs_from(int(thread), self.limit, before=int(before) if before else None)
        )
        # The start of the thread always: a mention mid-thread answers the thread's question.
        messages += await self._starter(channel, thread)
        return translate.thread_turns(messages, bot_id=self._bot_id(), before=before, skip_texts=self._skip)

    async def repliers(self, channel: str, thread: str) -> list[str]:
        """Who replied in the thread (people only); a question without a thread yet has none."""
        try:
            messages = await self.client.http.logs_from(int(thread), 50)
        except discord.NotFound:
            return []
        return translate.human_repliers(list(messages), bot_id=self._bot_id(), starter=thread)

    async def _starter(self, channel: str, thread: str) -> list[Any]:
        """The message a thread was started on, which lives in the parent channel under the
        thread's own id (none for a thread started without one, or when it was deleted)."""
        if thread == channel:
            return []
        with contextlib.suppress(discord.NotFound, discord.Forbidden):
            return [await self.client.http.get_message(int(channel), int(thread))]
        return []

    async def posts(self, channel: str, thread: str, *, pages: int = 3) -> list[ThreadPost]:
        """The thread from its start, for a summary (`bot.core.summary.ThreadPosts`)."""
        http = self.client.http
        messages: list[Any] = await self._starter(channel, thread)
        after = 0
        for _ in range(pages):  # oldest first, 100 at a time
            try:
                page = list(await http.logs_from(int(thread), 100, after=after))
            except discord.Forbidden as exc:
                raise ThreadUnreadable(exc.text) from exc
            messages += page
            if len(page) < 100:
                break
            after = max(int(m["id"]) for m in page)
        return translate.thread_posts(messages, bot_id=self._bot_id(), skip_texts=self._skip)

    async def link(self, channel: str, thread: str, post_id: str) -> str:
        """The message's jump URL (the starter message sits in the parent channel)."""
        found = self.client.get_channel(int(channel))
        guild = getattr(found, "guild", None)
        where = channel if post_id == thread else thread
        return translate.jump_url(str(guild.id) if guild is not None else None, where, post_id)


class DiscordFiles:
    """`FileFetcher` for Discord: an attachment's CDN url (no credentials needed), only on
    Discord's CDN hosts (or the REST API's, e.g. a test emulator), read no further than the limit."""

    def __init__(self, timeout: float = 30) -> None:
        self.timeout = timeout

    async def fetch(self, file: Attachment, max_bytes: int) -> bytes:
        hosts = {"cdn.discordapp.com", "media.discordapp.net", urlsplit(discord.http.Route.BASE).hostname}
        parts = urlsplit(file.url)
        if parts.scheme not in ("https", "http") or parts.hostname not in hosts:
            raise ValueError(f"not a Discord attachment URL (host {parts.hostname!r})")
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
            session.get(file.url, allow_redirects=False) as resp,
        ):
            resp.raise_for_status()
            return await read_limited(resp.content.iter_chunked(64 * 1024), file.name, max_bytes)
