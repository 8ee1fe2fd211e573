"""The Slack side of the core's ports: `SlackOutbox`, `SlackThreadReader`, and the admin check.

`chat.postMessage` is not idempotent: a 5xx or a dropped connection can come after Slack has
created the message, and a blind retry then leaves a second copy behind (a stray "Searching the
docs…" that is never edited). So posts are not retried by slack_sdk on those errors: each post
carries a random id in its message metadata, and after such an error the outbox looks for that
id in the channel or thread (`conversations.history` / `.replies`) and posts again only if it
is not there. A 429 is retried as before: a rate-limited call created nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.files import read_limited
from bot.core.messages import Attachment, MessageRef, Reply, Target
from bot.core.ports import DeliveryError
from bot.core.summary import ThreadPost, ThreadUnreadable
from bot.slack import translate
from config.settings import SlackSettings
from knowledge.answer import Turn

log = logging.getLogger(__name__)

# Refusals that mean "not here": a public post then goes to the user's DM with Lore instead.
_NOT_HERE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
POST_EVENT = "lore_post"  # the metadata event type that carries a post's own id
_LOOKBACK_S = 120  # how far back (by Slack's clock) a lost post is looked for


def retry_handlers(retries: int) -> list[AsyncRetryHandler]:
    """429 (honouring Retry-After), 5xx and connection errors are retried; nothing is dropped."""
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=retries),
        AsyncServerErrorRetryHandler(max_retry_count=retries),
        AsyncConnectionErrorRetryHandler(max_retry_count=retries),
    ]


def make_web_client(settings: SlackSettings) -> AsyncWebClient:
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    extra: dict[str, Any] = {"base_url": settings.api_url} if settings.api_url else {}
    return AsyncWebClient(token=token, retry_handlers=retry_handlers(settings.api_retries), **extra)


class SlackOutbox:
    """`Outbox` on the Web API: chat.postMessage / chat.update for public messages,
    chat.postEphemeral for private ones, and the response_url for commands and buttons."""

    max_message_len = translate.MAX_PART

    def __init__(self, client: AsyncWebClient, *, retries: int = 4) -> None:
        self.client = client
        self._retries = retries

    async def send(self, target: Target, reply: Reply) -> MessageRef:
        text, blocks = translate.render(reply)
        try:
            if target.interaction:
                await self._respond(
                    target.interaction, text, blocks, ephemeral=target.ephemeral, replace=False
                )
                return MessageRef(target, target.channel, "")
            if target.ephemeral:
                if not target.user:
                    raise DeliveryError("an ephemeral Slack message needs the user it is for")
                resp = await self.client.chat_postEphemeral(
                    channel=target.channel,
                    user=target.user,
                    text=text,
                    blocks=blocks,
                    thread_ts=target.thread,
                    link_names=False,
                )
                return MessageRef(target, target.channel, str(resp.get("message_ts") or ""))
            return await self._post(target, text, blocks)
        except SlackApiError as exc:
            raise _delivery_error(exc) from exc

    async def _post(self, target: Target, text: str, blocks: list[dict[str, Any]]) -> MessageRef:
        try:
            channel, ts = await self._post_once(target.channel, target.thread, text, blocks)
        except SlackApiError as exc:
            if exc.response.get("error") not in _NOT_HERE or not target.user:
                raise
            log.info(
                "cannot post in %s (%s); sending to the user's DM", target.channel, exc.response["error"]
            )
            channel, ts = await self._post_once(target.user, None, text, blocks)
        return MessageRef(target, channel, ts)

    async def _post_once(
        self, channel: str, thread: str | None, text: str, blocks: list[dict[str, Any]]
    ) -> tuple[str, str]:
        """chat.postMessage that leaves exactly one message, however its answer is lost."""
        post_id = uuid.uuid4().hex
        poster = self._poster()
        for attempt in range(self._retries + 1):
            try:
                resp = await poster.chat_postMessage(
                    channel=channel,
                    text=text,
                    blocks=blocks,
                    thread_ts=thread,
                    unfurl_links=False,
                    unfurl_media=False,
                    link_names=False,
                    metadata={"event_type": POST_EVENT, "event_payload": {"post_id": post_id}},
                )
                return str(resp["channel"]), str(resp["ts"])
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                if not _maybe_created(exc) or attempt == self._retries:
                    raise
                log.warning(
                    "chat.postMessage in %s failed (%s); checking whether it was posted", channel, exc
                )
                await asyncio.sleep(min(0.5 * 2**attempt, 8))
                if (ts := await self._find_post(channel, thread, post_id)) is not None:
                    log.info("the message was posted after all (%s); not posting it again", ts)
                    return channel, ts
        raise AssertionError("unreachable")  # the loop returns or raises

    def _poster(self) -> AsyncWebClient:
        """The client with its session, but without retrying 5xx and connection errors."""
        c = self.client
        return AsyncWebClient(
            token=c.token,
            base_url=c.base_url,
            timeout=c.timeout,
            ssl=c.ssl,
            proxy=c.proxy,
            session=c.session,
            headers=c.headers,
            logger=c.logger,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=self._retries)],
        )

    async def _find_post(self, channel: str, thread: str | None, post_id: str) -> str | None:
        """The ts of the message carrying `post_id`, if Slack has it; None if not (or unknown)."""
        args: dict[str, Any] = {
            "channel": channel,
            "oldest": f"{time.time() - _LOOKBACK_S:.6f}",
            "include_all_metadata": True,
            "limit": 200,
        }
        try:
            if thread:
                resp = await self.client.conversations_replies(ts=thread, **args)
            else:
                resp = await self.client.conversations_history(**args)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not look for the lost message in %s (%s); posting it again", channel, exc)
            return None
        for message in resp.get("messages") or []:
            metadata = message.get("metadata") or {}
            if (
                metadata.get("event_type") == POST_EVENT
                and (metadata.get("event_payload") or {}).get("post_id") == post_id
            ):
                return str(message["ts"])
        return None

    async def update(self, ref: MessageRef, reply: Reply) -> MessageRef:
        text, blocks = translate.render(reply)
        try:
            if ref.target.interaction:
                await self._respond(
                    ref.target.interaction, text, blocks, ephemeral=ref.target.ephemeral, replace=True
                )
                return ref
            if ref.target.ephemeral or not ref.id:
                # Slack cannot edit an ephemeral message through the Web API: send a fresh one.
                return await self.send(ref.target, reply)
            await self.client.chat_update(
                channel=ref.channel, ts=ref.id, text=text, blocks=blocks, link_names=False
            )
            return ref
        except SlackApiError as exc:
            raise _delivery_error(exc) from exc

    async def _respond(
        self, url: str, text: str, blocks: list[dict[str, Any]], *, ephemeral: bool, replace: bool
    ) -> None:
        hook = AsyncWebhookClient(url, retry_handlers=retry_handlers(self._retries))
        resp = await hook.send_dict(
            {
                "text": text,
                "blocks": blocks,
                "response_type": "ephemeral" if ephemeral else "in_channel",
                "replace_original": replace,
                "unfurl_links": False,
                "unfurl_media": False,
                "link_names": False,
            }
        )
        if resp.status_code != 200:
            raise DeliveryError(f"response_url answered {resp.status_code}: {resp.body[:200]}")

    async def delete_original(self, response_url: str) -> None:
        """Remove the message a button was clicked on (e.g. the ephemeral /ask answer once shared)."""
        hook = AsyncWebhookClient(response_url, retry_handlers=retry_handlers(self._retries))
        resp = await hook.send_dict({"delete_original": True})
        if resp.status_code != 200:
            log.warning("could not delete the original message: %s %s", resp.status_code, resp.body[:200])


def _maybe_created(exc: Exception) -> bool:
    """Could the failed call have created the message anyway? (A 5xx or a lost connection.)"""
    if isinstance(exc, SlackApiError):
        return int(getattr(exc.response, "status_code", 200)) >= 500
    return True


def _delivery_error(exc: SlackApiError) -> DeliveryError:
    error = str(exc.response.get("error") or "unknown_error")
    status = getattr(exc.response, "status_code", 200)
    return DeliveryError(f"Slack refused the message: {error}", retryable=status == 429 or status >= 500)


class SlackThreadReader:
    """`ThreadReader` over conversations.replies: the thread's latest turns before a message."""

    def __init__(
        self,
        client: AsyncWebClient,
        bot_user_id: Callable[[], str],
        *,
        skip_texts: Sequence[str] = (),
        max_pages: int = 5,
    ) -> None:
        self.client = client
        self._bot_user_id = bot_user_id
        self._skip = tuple(skip_texts)
        self._max_pages = max_pages

    async def history(self, channel: str, thread: str, *, before: str | None = None) -> list[Turn]:
        messages = await self._replies(channel, thread, before)
        return translate.thread_turns(
            messages, bot_user_id=self._bot_user_id(), before=before, skip_texts=self._skip
        )

    async def posts(self, channel: str, thread: str) -> list[ThreadPost]:
        """The whole thread, for a summary (`bot.core.summary.ThreadPosts`)."""
        try:
            messages = await self._replies(channel, thread, None)
        except SlackApiError as exc:
            if exc.response.get("error") in _NOT_HERE:
                raise ThreadUnreadable(str(exc.response.get("error"))) from exc
            raise
        return translate.thread_posts(messages, bot_user_id=self._bot_user_id(), skip_texts=self._skip)

    async def link(self, channel: str, thread: str, post_id: str) -> str:
        """The message's permalink (chat.getPermalink); "" when Slack gives none."""
        try:
            resp = await self.client.chat_getPermalink(channel=channel, message_ts=post_id)
        except SlackApiError as exc:
            log.warning("no permalink for a message in %s: %s", channel, exc.response.get("error"))
            return ""
        return str(resp.get("permalink") or "")

    async def _replies(self, channel: str, thread: str, before: str | None) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(self._max_pages):  # long threads: the newest turns matter, so read to the end
            args: dict[str, Any] = {"channel": channel, "ts": thread, "limit": 200}
            if before:
                args |= {"latest": before, "inclusive": False}
            if cursor:
                args["cursor"] = cursor
            resp = await self.client.conversations_replies(**args)
            messages.extend(resp.get("messages") or [])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not resp.get("has_more") or not cursor:
                break
        return messages

    async def repliers(self, channel: str, thread: str) -> list[str]:
        """Who replied in the thread (people only); one page is plenty for "anyone yet?"."""
        resp = await self.client.conversations_replies(channel=channel, ts=thread, limit=50)
        return translate.human_repliers(
            resp.get("messages") or [], bot_user_id=self._bot_user_id(), thread_ts=thread
        )


class SlackFiles:
    """`FileFetcher` for Slack: url_private with the bot token, sent only to Slack's file host
    (or the configured API's, e.g. a test emulator), and read no further than the size limit."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        api_host = urlsplit(client.base_url).hostname or ""
        self._hosts = {"files.slack.com", api_host}

    async def fetch(self, file: Attachment, max_bytes: int) -> bytes:
        host = urlsplit(file.url).hostname or ""
        if urlsplit(file.url).scheme not in ("https", "http") or host not in self._hosts:
            raise ValueError(f"not a Slack file URL (host {host!r})")
        headers = {"Authorization": f"Bearer {self.client.token}"}
        timeout = aiohttp.ClientTimeout(total=self.client.timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(file.url, headers=headers, allow_redirects=False) as resp,
        ):
            resp.raise_for_status()
            if "text/html" in resp.headers.get("Content-Type", "") and not file.mimetype.startswith(
                "text/html"
            ):
                # Slack answers a bad token or a missing scope with its sign-in page
                raise ValueError("Slack answered with a web page, not the file (files:read missing?)")
            return await read_limited(resp.content.iter_chunked(64 * 1024), file.name, max_bytes)


class SlackAdmins:
    """Who may /reindex: the configured user ids, else workspace admins and owners per users.info
    (cached for `ttl` seconds; a failed lookup is not cached and counts as "no")."""

    def __init__(
        self,
        client: AsyncWebClient,
        admin_users: Sequence[str],
        *,
        ttl: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.configured = frozenset(admin_users)
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, bool]] = {}

    async def is_admin(self, user: str) -> bool:
        if user in self.configured:
            return True
        cached = self._cache.get(user)
        if cached and cached[0] > self._clock():
            return cached[1]
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
        except SlackApiError as exc:
            log.warning(
                "users.info for %s failed (%s); treating as not an admin", user, exc.response.get("error")
            )
            return False
        allowed = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
        if self.ttl > 0:
            self._cache[user] = (self._clock() + self.ttl, allowed)
        return allowed
