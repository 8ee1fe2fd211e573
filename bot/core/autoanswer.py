"""Auto-answer channels: where Lore answers new questions that nobody addressed to it.

A help channel (`[[slack.auto_answer]]`, `[[discord.auto_answer]]`) is full of people, and Lore
speaking there unasked must be worth it. So, for a new top-level message (a Discord forum's
new post counts; replies in threads never do):

- not when a moderator paused the channel (⏸️ or `/lore-pause`; kept in the `StateStore`, so a
  pause outlives a restart where the store does), nor in a channel shared with another
  organisation unless `slack.external_channels = "auto"`;
- only a question (`knowledge.questions`: cues, then a classifier; a forum post always is one),
  in English (`knowledge.language`: elsewhere Lore stays silent, since nobody asked it);
- only within the channel's and the person's hourly budget of auto-answers;
- only with a cited answer above the confidence threshold (the engine's abstention, and
  `min_confidence` when set), and only if no other person has replied in the thread by then
  (after `delay` seconds). Otherwise silence, or with `on_unsure = "offer"` one short line
  offering an expert: with escalation configured, it carries the "Ask an expert" button
  (the core sends it with the unsure answer kept for the experts); otherwise `offer`'s plain line.

It never says "I couldn't find this" to someone who did not ask. `ConversationService` drives
these steps; this module holds the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from bot.core.messages import IncomingMessage, Notice, Reply
from bot.core.ports import ReplyReader, StateStore, Surface
from bot.core.ratelimit import Budget, Windows
from config.settings import AutoAnswer, Settings
from knowledge.answer import Answer

log = logging.getLogger(__name__)

HOUR = 3600
PAUSE_TTL = 10 * 365 * 24 * HOUR  # "until resumed"
PAUSE_EMOJI = "⏸️"
RESUME_EMOJI = "▶️"

OFFER_TEXT = "I couldn't find a confident answer to this in the docs. Someone on the team may know."
PAUSED_TEXT = f"Auto-answers are paused in this channel. {RESUME_EMOJI} or /lore-resume turns them back on."
RESUMED_TEXT = (
    f"Auto-answers are back on in this channel. {PAUSE_EMOJI} on any message or /lore-pause pauses them."
)
NOT_WATCHED_TEXT = "Lore doesn't answer unasked in this channel, so there is nothing to pause."
NOT_MODERATOR_TEXT = "Only Lore admins and channel moderators can pause or resume auto-answers."
ENGLISH_ONLY_TEXT = (
    "Sorry, I can only answer questions in English: my search and answers work in English only."
)

Detect = Callable[[str], bool]  # blocking: is this text a question?


@dataclass(frozen=True)
class Watch:
    """One auto-answer channel, as the core uses it."""

    platform: str
    channel: str
    settings: AutoAnswer
    forum_post: bool = False  # a Discord forum's new post: a question by definition


def _pause_key(platform: str, channel: str) -> str:
    return f"autoanswer:paused:{platform}:{channel}"


class AutoAnswers:
    """The auto-answer channels and their policy, built once (`from_settings`)."""

    def __init__(
        self,
        channels: Mapping[tuple[str, str], AutoAnswer],
        state: StateStore,
        *,
        windows: Windows | None = None,
        detect: Detect | None = None,
        external: Literal["public", "refuse", "auto"] = "public",
        offer: Callable[[IncomingMessage], Reply] | None = None,
    ) -> None:
        self.channels = dict(channels)
        self.state = state
        self.windows = windows or Windows()
        self._detect = detect
        self.external_allowed = external == "auto"
        # The hook for "Ask an expert": a reply for an unsure auto-answer with on_unsure = "offer".
        self.offer: Callable[[IncomingMessage], Reply] = offer or (lambda msg: Notice(OFFER_TEXT))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        state: StateStore,
        *,
        windows: Windows | None = None,
        detect: Detect | None = None,
    ) -> AutoAnswers | None:
        channels: dict[tuple[str, str], AutoAnswer] = {}
        for entry in settings.slack.auto_answer:
            channels[("slack", entry.channel)] = entry
        for discord_entry in settings.discord.auto_answer:
            channels[("discord", discord_entry.channel)] = discord_entry
        if not channels:
            return None
        return cls(channels, state, windows=windows, detect=detect, external=settings.slack.external_channels)

    # ---- which messages --------------------------------------------------------------------

    def watch(self, msg: IncomingMessage) -> Watch | None:
        """The channel's settings when `msg` is a new top-level message of an auto-answer channel."""
        if msg.is_direct or msg.author_is_bot or msg.is_edit:
            return None
        found = self.channels.get((msg.platform, msg.channel))
        if found is None:
            return None
        if msg.thread is None:
            return Watch(msg.platform, msg.channel, found)
        if msg.thread == msg.message_id:  # a forum post's first message has the post's (thread's) id
            return Watch(msg.platform, msg.channel, found, forum_post=True)
        return None

    def is_question(self, text: str) -> bool:
        """Blocking (it may embed the text)."""
        if self._detect is None:
            from knowledge.questions import cues

            found = cues(text)
            return found.words >= 2 and found.question_mark  # no model: the plainest cue only
        return self._detect(text)

    # ---- pausing ---------------------------------------------------------------------------

    async def paused(self, platform: str, channel: str) -> bool:
        return await self.state.get(_pause_key(platform, channel)) == "1"

    async def set_paused(self, platform: str, channel: str, paused: bool) -> None:
        await self.state.put(_pause_key(platform, channel), "1" if paused else "0", PAUSE_TTL)

    # ---- throttles ---------------------------------------------------------------------------

    def _budgets(self, msg: IncomingMessage, watch: Watch) -> tuple[Budget, Budget]:
        cfg = watch.settings
        return (
            Budget(f"auto:channel:{msg.platform}:{msg.channel}", cfg.channel_per_hour, HOUR),
            Budget(f"auto:user:{msg.platform}:{msg.channel}:{msg.author}", cfg.user_per_hour, HOUR),
        )

    async def full(self, msg: IncomingMessage, watch: Watch) -> str | None:
        """ "channel" or "user" when that hourly budget of auto-answers is spent, else None."""
        refused = await self.windows.full(*self._budgets(msg, watch))
        return None if refused is None else refused.budget.key.split(":")[1]

    async def count(self, msg: IncomingMessage, watch: Watch) -> None:
        """One auto-answer posted (answers and offers count; silence does not)."""
        await self.windows.count(*self._budgets(msg, watch))

    # ---- after answering ---------------------------------------------------------------------

    @staticmethod
    def useful(answer: Answer, watch: Watch) -> bool:
        """A cited answer above the threshold (and the channel's `min_confidence`)."""
        if answer.abstained or not answer.citations:
            return False
        floor = watch.settings.min_confidence
        return floor is None or (answer.confidence is not None and answer.confidence >= floor)

    @staticmethod
    async def human_replied(msg: IncomingMessage, surface: Surface) -> bool:
        """Has someone other than the asker (and other than bots) replied in the question's thread?
        If the thread cannot be read, Lore assumes not: the question is still unanswered."""
        reader = surface.threads
        thread = msg.reply_thread or msg.message_id
        if not isinstance(reader, ReplyReader):
            return False
        try:
            people = await reader.repliers(msg.channel, thread)
        except Exception as exc:
            log.info("could not read thread %s in %s (%s); assuming no reply yet", thread, msg.channel, exc)
            return False
        return any(p != msg.author for p in people)
