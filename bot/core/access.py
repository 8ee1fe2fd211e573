"""Whose rights an answer is given with, decided once per question (issue 19, knowledge/access.py).

A private answer (a DM, an ephemeral `/ask`, the web console, "Answer privately") is read by the
asker alone: it gets their person audience, from the payload's principals and whatever the
platform's `Directory` adds (Slack user groups and email). An answer in a channel, a group DM or
a thread in them is read by everyone there: it gets the channel's audience, and the asker's own
audience only as `wider`, so the engine can count what it had to leave out. A channel shared
with another organisation gets public content only, or no answer at all.

When the directory fails, the payload's principals are all Lore knows: fewer rights, never more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.core.messages import IncomingMessage
from bot.core.ports import Surface
from config.settings import Settings
from knowledge.access import PUBLIC_AUDIENCE, AccessPolicy, Audience

log = logging.getLogger(__name__)

EXTERNAL_REFUSED = (
    "Sorry, I don't answer in channels shared with other organisations. "
    "Ask me in a direct message or in one of your own workspace's channels."
)
SHARE_REFUSED = (
    "I can't share this answer here: it uses documents that not everyone in this channel may read. "
    "It stays visible to you only."
)
SHARE_EXTERNAL_REFUSED = (
    "I can't share answers into a channel shared with other organisations. It stays visible to you only."
)


@dataclass(frozen=True)
class Decision:
    """What a question is answered with: `audience` (who reads the answer), `wider` (the asker's
    own audience, for a channel answer: the engine counts what it withheld), `sources` (channel
    scoping; None = every source). `refusal` is set when Lore must not answer there at all."""

    audience: Audience
    wider: Audience | None = None
    sources: tuple[str, ...] | None = None
    refusal: str | None = None
    private: bool = False

    def log_text(self) -> str:
        """For logs: the audience's label and key, never anything from a document."""
        wider = f", wider {self.wider.label} ({self.wider.key})" if self.wider else ""
        scope = f", sources {','.join(self.sources)}" if self.sources else ""
        return f"audience {self.audience.label} ({self.audience.key}){wider}{scope}"


@dataclass(frozen=True)
class AccessRules:
    """The access settings the core needs, built once from `Settings` (bot/services.py)."""

    policy: AccessPolicy
    # (platform, channel) -> the only sources that channel answers from
    channel_sources: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    external_channels: Literal["public", "refuse", "auto"] = "public"

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessRules:
        scopes: dict[tuple[str, str], tuple[str, ...]] = {}
        for platform, entries in (
            ("slack", settings.slack.channel_sources),
            ("discord", settings.discord.channel_sources),
        ):
            for entry in entries:
                scopes[(platform, entry.channel)] = tuple(entry.sources)
        return cls(AccessPolicy(settings), scopes, settings.slack.external_channels)

    @classmethod
    def none(cls) -> AccessRules:
        """No groups, no rules, no scoping: everyone reads public content (tests, tools)."""
        return cls(AccessPolicy(Settings.model_construct(groups={}, sources=[])))

    # ---- the decision ---------------------------------------------------------------------

    def sources_for(self, platform: str, channel: str, *, is_direct: bool) -> tuple[str, ...] | None:
        if is_direct:
            return None
        return self.channel_sources.get((platform, channel))

    async def person(self, msg: IncomingMessage, surface: Surface) -> Audience:
        """The asker's own audience: the payload's principals and the directory's, or (an admin's
        "view as" in the web console, checked by that adapter) the principal viewed as."""
        if msg.view_as:
            return self.policy.principal(msg.view_as)
        principals = set(msg.principals)
        if surface.directory is not None and msg.author:
            try:
                principals |= await surface.directory.principals(msg.author)
            except Exception as exc:
                log.warning(
                    "could not look up %s user %s in the directory (%s); answering with the "
                    "payload's principals only",
                    msg.platform,
                    msg.author,
                    exc,
                )
        return self.policy.person(principals)

    async def is_external(self, surface: Surface, channel: str, payload: bool | None = None) -> bool:
        """Shared with another organisation? Yes if the payload (`payload`) or the directory says
        so. When the directory cannot tell, the payload's word counts, and without one: assume
        shared (public only)."""
        if payload:
            return True
        if surface.directory is None:
            return False
        try:
            return await surface.directory.is_external(channel)
        except Exception as exc:
            log.warning(
                "could not tell whether %s channel %s is shared (%s); %s",
                surface.platform,
                channel,
                exc,
                "the payload says it is not" if payload is not None else "treating it as shared",
            )
            return payload is None

    async def decide(self, msg: IncomingMessage, surface: Surface, *, private: bool) -> Decision:
        """The audience for `msg`. `private`: only the asker will see the answer (a DM, an
        ephemeral `/ask`)."""
        sources = self.sources_for(msg.platform, msg.channel, is_direct=msg.is_direct)
        if msg.is_direct or msg.view_as:
            # A view is compared with everything lore.toml hands out, so the console can say
            # what that person doesn't see.
            wider = self.policy.everything() if msg.view_as else None
            return Decision(await self.person(msg, surface), wider=wider, sources=sources, private=True)
        if await self.is_external(surface, msg.channel, msg.shared_channel):
            # Even an ephemeral /ask: a shared channel is public-only, whoever asks.
            if self.external_channels == "refuse":
                return Decision(PUBLIC_AUDIENCE, refusal=EXTERNAL_REFUSED, private=private)
            return Decision(PUBLIC_AUDIENCE, sources=sources, private=private)
        if private:
            return Decision(await self.person(msg, surface), sources=sources, private=True)
        channel = self.policy.channel(msg.platform, msg.channel)
        return Decision(channel, wider=await self.person(msg, surface), sources=sources)

    async def share_refusal(
        self, platform: str, channel: str, access_lists: Sequence[Sequence[str]], surface: Surface
    ) -> str | None:
        """Why an answer built from chunks with these access lists may not be posted in `channel`
        (None: it may). Everyone there reads it, so the channel's audience must read every chunk."""
        if await self.is_external(surface, channel):
            if self.external_channels == "refuse":
                return SHARE_EXTERNAL_REFUSED
            audience = PUBLIC_AUDIENCE
        else:
            audience = self.policy.channel(platform, channel)
        if all(audience.can_read(access) for access in access_lists):
            return None
        return SHARE_REFUSED
