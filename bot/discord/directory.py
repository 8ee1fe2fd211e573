"""`DiscordDirectory`: a Discord user's roles where the payload has none (a DM).

Guild messages and interactions carry the member's roles (`member.roles`), and translation turns
them into `discord:role:<id>` principals. A DM carries no member, so someone who is in HR by a
role would get only public answers in a DM. The directory asks each server Lore is in for the
member (`GET /guilds/{id}/members/{user}`, which needs no privileged intent), keeps only the
roles `[groups]` names, and caches the result. Discord has no channels shared with another
organisation: `is_external` is always false.

`DiscordExperts` is the `ExpertDirectory` of "Ask an expert": a role's members, or whoever can
read a channel (its permissions for the member, overwrites included), looked up the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import discord

from bot.discord import translate

log = logging.getLogger(__name__)

ROLE_PREFIX = "discord:role:"
CACHE_SECONDS = 300.0


def configured_roles(groups: dict[str, list[str]]) -> frozenset[str]:
    """The role ids `[groups]` names: the only roles that can change what someone may read."""
    return frozenset(m[len(ROLE_PREFIX) :] for ms in groups.values() for m in ms if m.startswith(ROLE_PREFIX))


class DiscordDirectory:
    """`Directory` over discord.py's REST client, cached for `ttl` seconds."""

    def __init__(
        self,
        client: discord.Client,
        roles: Iterable[str],
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.roles = frozenset(roles)
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def principals(self, user: str) -> frozenset[str]:
        if not self.roles or not user.isdigit():
            return frozenset()  # no role is named in [groups]: nothing to look up
        hit = self._cache.get(user)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        found: set[str] = set()
        for guild in self.client.guilds:
            try:
                member = await guild.fetch_member(int(user))
            except discord.NotFound:
                continue  # not in this server
            found |= {f"{ROLE_PREFIX}{r.id}" for r in member.roles if str(r.id) in self.roles}
        result = frozenset(found)
        if self.ttl > 0:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[user] = (self._clock() + self.ttl, result)
        return result

    async def is_external(self, channel: str) -> bool:
        return False


class DiscordExperts:
    """`ExpertDirectory` over discord.py: membership from `GET /guilds/{id}/members/{user}`
    (cached for `ttl` seconds), roles and channel permissions from the guild cache."""

    def __init__(
        self,
        client: discord.Client,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self._clock = clock
        self._members: dict[tuple[int, str], tuple[float, discord.Member | None]] = {}

    async def is_expert(self, user: str, target: str) -> bool:
        kind, _, ident = target.removeprefix("discord:").partition(":")
        if not user.isdigit() or not ident.isdigit():
            return False
        if kind == "role":
            for guild in self.client.guilds:
                if guild.get_role(int(ident)) is None:
                    continue
                member = await self._member(guild, user)
                return member is not None and any(r.id == int(ident) for r in member.roles)
            return False
        if kind == "channel":
            channel = self.client.get_channel(int(ident))
            if not isinstance(channel, discord.abc.GuildChannel):
                return False
            member = await self._member(channel.guild, user)
            return member is not None and channel.permissions_for(member).read_messages
        return False

    async def permalink(self, channel: str, thread: str, workspace: str | None) -> str | None:
        return translate.thread_link(workspace, thread)

    async def _member(self, guild: discord.Guild, user: str) -> discord.Member | None:
        key = (guild.id, user)
        hit = self._members.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        try:
            member: discord.Member | None = await guild.fetch_member(int(user))
        except discord.NotFound:
            member = None
        if self.ttl > 0:
            if len(self._members) > 50_000:
                self._members.clear()
            self._members[key] = (self._clock() + self.ttl, member)
        return member
