"""`SlackDirectory`: who a Slack user is beyond the payload, and which channels are shared.

A payload says only `slack:U…`. Groups in `lore.toml` may also name Slack user groups
(`slack:group:S…`, resolved with `usergroups.users.list`, needs usergroups:read) and emails
(`email:…`, from `users.info` profile.email, needs users:read.email; without the scope Slack
leaves the field out and Lore simply knows no email). A channel shared with another organisation
(`conversations.info`: is_ext_shared) gets public answers only.

It is also the `ExpertDirectory` of "Ask an expert": who belongs to an expert target (a user
group's members, or a channel's: `conversations.members`, needs channels:read/groups:read) and
a thread's permalink (`chat.getPermalink`).

Everything is cached for `slack.directory_cache_seconds`. A failed call raises (the core then
answers with the payload's principals only, or treats the channel as shared) and is not cached,
so the next question tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import translate

log = logging.getLogger(__name__)

GROUP_PREFIX = "slack:group:"


def configured_user_groups(groups: dict[str, list[str]]) -> list[str]:
    """The Slack user group ids (S…) that `[groups]` members name: the only ones worth asking about."""
    members = (m for ms in groups.values() for m in ms)
    return sorted({m[len(GROUP_PREFIX) :] for m in members if m.startswith(GROUP_PREFIX)})


def names_emails(groups: dict[str, list[str]]) -> bool:
    """Whether any `[groups]` member is an email (else users.info is not worth a call)."""
    return any(m.startswith("email:") for ms in groups.values() for m in ms)


class _Cache:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl, self._clock = ttl, clock
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        hit = self._items.get(key)
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl > 0:
            if len(self._items) > 50_000:  # bounded: drop what has expired, then everything
                now = self._clock()
                self._items = {k: v for k, v in self._items.items() if v[0] > now}
                if len(self._items) > 50_000:
                    self._items.clear()
            self._items[key] = (self._clock() + self.ttl, value)


class SlackDirectory:
    """`Directory` on the Web API, cached for `ttl` seconds."""

    def __init__(
        self,
        client: AsyncWebClient,
        user_groups: Iterable[str] = (),
        *,
        emails: bool = True,
        ttl: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.user_groups = tuple(user_groups)
        self.emails = emails
        self._cache = _Cache(ttl, clock)

    async def principals(self, user: str) -> frozenset[str]:
        """`slack:group:S…` for each configured user group `user` is in, and their `email:…`."""
        found: set[str] = set()
        members = await asyncio.gather(*(self._members(group) for group in self.user_groups))
        found |= {f"{GROUP_PREFIX}{g}" for g, m in zip(self.user_groups, members, strict=True) if user in m}
        email = await self._email(user) if self.emails else None
        if email:
            found.add(email)
        return frozenset(found)

    async def is_external(self, channel: str) -> bool:
        if translate.is_direct_channel(channel):
            return False  # a DM with Lore is private to the asker (a person audience anyway)
        key = f"channel:{channel}"
        cached = self._cache.get(key)
        if cached is not None:
            return bool(cached)
        info = await self.client.conversations_info(channel=channel)
        external = translate.is_external_channel(info.get("channel") or {})
        self._cache.put(key, external)
        if external:
            log.info("Slack channel %s is shared with another organisation: public answers only", channel)
        return external

    # ---- experts (bot/core/escalation.py) -------------------------------------------------

    async def is_expert(self, user: str, target: str) -> bool:
        kind, _, ident = target.removeprefix("slack:").partition(":")
        if kind == "group":
            return user in await self._members(ident)
        if kind == "channel":
            return user in await self._channel_members(ident)
        return False

    async def permalink(self, channel: str, thread: str, workspace: str | None) -> str | None:
        resp = await self.client.chat_getPermalink(channel=channel, message_ts=thread)
        url = str(resp.get("permalink") or "")
        return url if url.startswith("https://") or url.startswith("http://") else None

    async def _channel_members(self, channel: str) -> frozenset[str]:
        key = f"members:{channel}"
        cached = self._cache.get(key)
        if cached is not None:
            return frozenset(cached)
        members: set[str] = set()
        cursor = None
        for _page in range(100):  # 100 pages of 1,000: a bound, not a limit anyone meets
            resp = await self.client.conversations_members(channel=channel, limit=1000, cursor=cursor)
            members.update(str(u) for u in resp.get("members") or [])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        self._cache.put(key, frozenset(members))
        return frozenset(members)

    async def _members(self, group: str) -> frozenset[str]:
        key = f"group:{group}"
        cached = self._cache.get(key)
        if cached is not None:
            return frozenset(cached)
        resp = await self.client.usergroups_users_list(usergroup=group)
        members = frozenset(str(u) for u in resp.get("users") or [])
        self._cache.put(key, members)
        return members

    async def _email(self, user: str) -> str | None:
        key = f"email:{user}"
        cached = self._cache.get(key)
        if cached is not None:
            return str(cached) or None
        info = (await self.client.users_info(user=user)).get("user") or {}
        email = translate.email_principal(info)
        self._cache.put(key, email or "")
        return email
