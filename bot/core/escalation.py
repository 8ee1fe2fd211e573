""" "Ask an expert": hand a question to people, and keep what they answer.

Every answer and abstention carries an "Ask an expert" button when `[escalation]` names experts
for the platform. A click:

1. finds the experts (`ExpertRouter`): the first `[[escalation.routes]]` entry naming a source
   the answer cited, else one naming the channel, else `escalation.default`;
2. posts the question there (`ExpertRequest`): a user group or role is mentioned in the
   question's own thread; a channel gets a new post with a link to the thread. Lore's answer goes
   along only if everyone who reads that place may read every passage it used (the same check as
   "Share in channel"); otherwise only the question and the link do;
3. tells whoever clicked, privately, whom it asked (`ExpertsAsked`), and records the escalation
   through the workers' spool (`TaskClient.record_escalation`), like votes.

Then Lore watches the question's thread (and, for a channel, the thread under its post) for
`chat.thread_ttl` seconds and stops answering there unless mentioned, so it never talks over the
experts. A reply by a member of the target (`ExpertDirectory.is_expert`) is recorded as an expert
answer; a ✅ reaction by the asker or an expert marks a reply accepted (and records it, if an
expert did not write it). Anything else said in the thread is chatter and is never recorded.

What Lore keeps between the answer and the click (the answer, where it was asked, who asked)
lives in the `StateStore` for `chat.answer_ttl`; the log only ever holds pseudonymous ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.access import AccessRules
from bot.core.messages import (
    ExpertRequest,
    ExpertsAsked,
    IncomingMessage,
    Notice,
    Target,
)
from bot.core.ports import StateStore, Surface
from config.settings import EscalationSettings
from feedback.schema import EscalationRecord, ExpertReplyRecord
from knowledge.answer import Answer
from workers.ports import TaskClient

log = logging.getLogger(__name__)

UserHasher = Callable[[str, str], str]
TargetKind = Literal["group", "role", "channel"]

# ✅ as Slack names it in reaction events, and as Discord sends it (the emoji itself).
ACCEPT_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark", "✅", "✔️"})

EXPIRED = "That answer is too old to ask an expert about now. Ask me again, then ask an expert."
NO_EXPERTS = "No experts are set up for this question. Ask a Lore admin to configure [escalation]."
FROM_DM = "I can't bring experts into a direct message. Ask me in a channel, then click Ask an expert there."


@dataclass(frozen=True)
class Route:
    target: str  # the configured target, e.g. "slack:group:S0HR"
    routed_by: str  # "source:<name>", "channel" or "default"

    @property
    def kind(self) -> TargetKind:
        return target_kind(self.target)[0]

    @property
    def id(self) -> str:
        return target_kind(self.target)[1]


def target_kind(target: str) -> tuple[TargetKind, str]:
    """`slack:group:S1` -> ("group", "S1"); `discord:role:5` -> ("role", "5"); channels alike."""
    _platform, kind, ident = target.split(":", 2)
    if kind not in ("group", "role", "channel"):
        raise ValueError(f"not an expert target: {target!r}")
    return kind, ident  # type: ignore[return-value]


class ExpertRouter:
    """Where a question's experts are, from `[escalation]` (built once)."""

    def __init__(self, settings: EscalationSettings) -> None:
        self.settings = settings

    def enabled(self, platform: str) -> bool:
        targets = [self.settings.default, *self.settings.routes]
        return any(getattr(t, platform, None) for t in targets)

    def route(self, platform: str, channel: str, sources: Sequence[str]) -> Route | None:
        """The first route for a cited source (in citation order), else for the channel, else
        the default; None when nothing names experts on this platform."""
        for source in dict.fromkeys(sources):
            for r in self.settings.routes:
                target = getattr(r, platform, None)
                if target and source in r.sources:
                    return Route(target, f"source:{source}")
        for r in self.settings.routes:
            target = getattr(r, platform, None)
            if target and f"{platform}:{channel}" in r.channels:
                return Route(target, "channel")
        default = getattr(self.settings.default, platform, None)
        return Route(default, "default") if default else None


def _watch_key(platform: str, channel: str, thread: str) -> str:
    return f"expert:thread:{platform}:{channel}:{thread}"


def _message_key(platform: str, channel: str, message_id: str) -> str:
    return f"expert:message:{platform}:{channel}:{message_id}"


def reply_id(platform: str, channel: str, message_id: str) -> str:
    return f"{platform}:{channel}:{message_id}"


class Escalations:
    """The core's half of "Ask an expert"; adapters call `escalate` on a click and `reaction` on
    a reaction, and `ConversationService.handle_message` calls `observe` on every message."""

    def __init__(
        self,
        router: ExpertRouter,
        tasks: TaskClient,
        state: StateStore,
        user_hash: UserHasher,
        access: AccessRules,
        *,
        keep_ttl: float,
        watch_ttl: float,
    ) -> None:
        self.router = router
        self.tasks = tasks
        self.state = state
        self.access = access
        self._user_hash = user_hash
        self.keep_ttl = keep_ttl
        self.watch_ttl = watch_ttl

    def enabled(self, surface: Surface) -> bool:
        return surface.experts is not None and self.router.enabled(surface.platform)

    async def keep(self, answer: Answer, msg: IncomingMessage, target: Target) -> None:
        """What a later click needs: the answer and where it was asked (raw ids stay in the
        state store, never in the log)."""
        kept = {
            "answer": answer.model_dump(mode="json"),
            "platform": msg.platform,
            "workspace": msg.workspace,
            "channel": msg.channel,
            "thread": None if target.ephemeral else target.thread,
            "direct": msg.is_direct,
            "asker": msg.author,
        }
        await self.state.put(f"expert:answer:{answer.answer_id}", json.dumps(kept), self.keep_ttl)

    # ---- the click --------------------------------------------------------------------------

    async def escalate(
        self, answer_id: str, user: str, surface: Surface, private: Target, *, key: str | None = None
    ) -> str:
        """Ask the experts about `answer_id` for `user`, who is told at `private`. Returns what
        happened: "asked", "already", "duplicate", "expired", "unrouted", "refused" or "failed"."""
        click = f"expert:click:{surface.platform}:{user}:{key}"
        if key and not await self.state.first_time(click, self.keep_ttl):
            log.info("duplicate delivery of the Ask-an-expert click %s ignored", key)
            return "duplicate"
        try:
            return await self._escalate(answer_id, user, surface, private)
        except Exception:
            log.exception("asking an expert about %s failed", answer_id)
            await _notify(surface, private, Notice("Sorry, I couldn't reach the experts. Please try again."))
            return "failed"

    async def _escalate(self, answer_id: str, user: str, surface: Surface, private: Target) -> str:
        stored = await self.state.get(f"expert:answer:{answer_id}")
        if stored is None or surface.experts is None:
            await _notify(surface, private, Notice(EXPIRED))
            return "expired"
        kept = json.loads(stored)
        answer = Answer.model_validate(kept["answer"])
        platform, channel, thread = surface.platform, str(kept["channel"]), kept.get("thread")
        route = self.router.route(platform, channel, [c.source for c in answer.citations])
        if route is None:
            await _notify(surface, private, Notice(NO_EXPERTS))
            return "unrouted"
        if route.kind != "channel" and kept.get("direct"):
            await _notify(surface, private, Notice(FROM_DM))
            return "refused"
        asked = f"expert:asked:{answer_id}"
        if not await self.state.first_time(asked, self.watch_ttl):
            await _notify(surface, private, ExpertsAsked(route.target, already=True))
            return "already"
        # A user group or role is asked in the question's own thread (a private /ask answer has
        # none: a new post in its channel); a channel gets a new post there.
        where = Target(route.id) if route.kind == "channel" else Target(channel, thread)
        try:
            link = None
            if thread and not kept.get("direct"):
                link = await surface.experts.permalink(channel, thread, kept.get("workspace"))
            refusal = await self.access.share_refusal(
                platform, where.channel, [c.access for c in answer.chunks], surface
            )
            shown = refusal is None
            if not shown:
                log.info(
                    "answer %s withheld from the experts in %s: its audience may not read all of it",
                    answer_id,
                    where.channel,
                )
            request = ExpertRequest(
                route.target,
                answer.question,
                asker=user,
                answer=answer if shown else None,
                withheld=not shown,
                link=link,
            )
            ref = await surface.outbox.send(where, request)
        except Exception:
            await self.state.put(asked, "failed", 1)  # nobody was asked: a later click may try again
            raise
        watch = {"answer_id": answer_id, "target": route.target, "askers": sorted({user, str(kept["asker"])})}
        threads = {(ref.channel, where.thread or ref.id)}
        if thread and not kept.get("direct"):
            threads.add((channel, thread))
        for c, t in threads:
            if t:
                await self.state.put(_watch_key(platform, c, t), json.dumps(watch), self.watch_ttl)
        record = EscalationRecord(
            answer_id=answer_id,
            platform=platform,
            workspace=kept.get("workspace"),
            channel=channel,
            thread=thread,
            user_hash=self._user_hash(platform, user),
            target=route.target,
            routed_by=route.routed_by,
            answer_shown=shown,
            posted_channel=ref.channel,
            posted_message=ref.id or None,
        )
        await asyncio.to_thread(self.tasks.record_escalation, record)
        log.info("asked %s about %s (%s)", route.target, answer_id, route.routed_by)
        await _notify(surface, private, ExpertsAsked(route.target))
        return "asked"

    # ---- the thread -------------------------------------------------------------------------

    async def observe(self, msg: IncomingMessage, surface: Surface) -> bool:
        """A message in a thread Lore handed to experts: record it if an expert wrote it, and
        keep it a while in case someone accepts it with ✅. True: Lore leaves it to the people
        there (it answers only when mentioned)."""
        if not msg.thread or msg.author_is_bot or msg.is_edit or not self.enabled(surface):
            return False
        stored = await self.state.get(_watch_key(msg.platform, msg.channel, msg.thread))
        if stored is None:
            return False
        watch = json.loads(stored)
        kept = {"watch": watch, "author": msg.author, "text": msg.text, "thread": msg.thread}
        await self.state.put(
            _message_key(msg.platform, msg.channel, msg.message_id), json.dumps(kept), self.watch_ttl
        )
        if msg.text.strip() and await self._is_expert(surface, msg.author, watch["target"]):
            await self._record_reply(msg.platform, msg.channel, msg.message_id, kept, from_expert=True)
        return not msg.mentions_bot

    async def reaction(self, surface: Surface, channel: str, message_id: str, user: str, emoji: str) -> bool:
        """A reaction on a message in a watched thread: a ✅ by the asker or an expert accepts
        the reply. True when an acceptance was recorded."""
        if emoji not in ACCEPT_REACTIONS or not self.enabled(surface):
            return False
        stored = await self.state.get(_message_key(surface.platform, channel, message_id))
        if stored is None:
            return False
        kept = json.loads(stored)
        watch = kept["watch"]
        if user not in watch["askers"] and not await self._is_expert(surface, user, watch["target"]):
            log.info("a ✅ on %s by someone neither asker nor expert: ignored", message_id)
            return False
        if not str(kept.get("text") or "").strip():
            return False
        from_expert = await self._is_expert(surface, str(kept["author"]), watch["target"])
        await self._record_reply(
            surface.platform, channel, message_id, kept, from_expert=from_expert, accepted_by=user
        )
        return True

    async def _is_expert(self, surface: Surface, user: str, target: str) -> bool:
        assert surface.experts is not None
        try:
            return await surface.experts.is_expert(user, target)
        except Exception as exc:
            # Unknown is not an expert: a reply that mattered can still be accepted with ✅.
            log.warning("could not tell whether %s belongs to %s (%s)", user, target, exc)
            return False

    async def _record_reply(
        self,
        platform: str,
        channel: str,
        message_id: str,
        kept: dict[str, Any],
        *,
        from_expert: bool,
        accepted_by: str | None = None,
    ) -> None:
        record = ExpertReplyRecord(
            reply_id=reply_id(platform, channel, message_id),
            answer_id=str(kept["watch"]["answer_id"]),
            platform=platform,
            channel=channel,
            thread=kept.get("thread"),
            message_id=message_id,
            author_hash=self._user_hash(platform, str(kept["author"])),
            from_expert=from_expert,
            text=str(kept["text"])[:20_000],
            accepted=accepted_by is not None,
            accepted_by=self._user_hash(platform, accepted_by) if accepted_by else None,
        )
        await asyncio.to_thread(self.tasks.record_expert_reply, record)
        log.info(
            "%s reply %s recorded for %s",
            "accepted" if record.accepted else "expert",
            record.reply_id,
            record.answer_id,
        )


async def _notify(surface: Surface, target: Target, reply: Notice | ExpertsAsked) -> None:
    try:
        await surface.outbox.send(target, reply)
    except Exception:
        log.exception("could not tell the asker")
