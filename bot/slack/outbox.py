"""The Slack side of the core's ports: `SlackOutbox`, `SlackThreadReader`, and the admin check."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.messages import MessageRef, Reply, Target
from bot.core.ports import DeliveryError
from bot.slack import translate
from config.settings import SlackSettings
from knowledge.answer import Turn

log = logging.getLogger(__name__)

# Refusals that mean "not here": a public post then goes to the user's DM with Lore instead.
_NOT_HERE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


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
            resp = await self.client.chat_postMessage(
                channel=target.channel,
                text=text,
                blocks=blocks,
                thread_ts=target.thread,
                unfurl_links=False,
                unfurl_media=False,
                link_names=False,
            )
        except SlackApiError as exc:
            if exc.response.get("error") not in _NOT_HERE or not target.user:
                raise
            log.info(
                "cannot post in %s (%s); sending to the user's DM", target.channel, exc.response["error"]
            )
            resp = await self.client.chat_postMessage(
                channel=target.user,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                link_names=False,
            )
        return MessageRef(target, str(resp["channel"]), str(resp["ts"]))

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
        return translate.thread_turns(
            messages, bot_user_id=self._bot_user_id(), before=before, skip_texts=self._skip
        )


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
