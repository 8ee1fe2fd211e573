"""`ConversationService`: the platform-neutral core every chat adapter drives.

An adapter acknowledges its platform, translates the payload, and hands the core an
`IncomingMessage` (or a vote, a share, a /reindex) together with a `Surface` (its outbox and
thread reader). The core decides whether to answer, de-duplicates deliveries, applies rate
limits, shows progress, builds bounded thread context, runs the blocking answer engine on worker
threads, sends the answer (split to the outbox's size), and records the interaction and votes
through the workers. Every failure reaches the user as a short message with a correlation id,
and the log as a traceback with the same id.

Every question is answered for an audience (`bot.core.access`): the asker's own rights where only
they read the answer, the channel's where everyone there does. What the core keeps between
requests (answers for Share, questions for "Answer privately") is re-checked or recomputed for
whoever clicks, so nothing restricted reaches someone through a button, a cache or a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, cast

from bot import metrics
from bot.core import render
from bot.core.access import AccessRules, Decision
from bot.core.autoanswer import (
    ENGLISH_ONLY_TEXT,
    NOT_MODERATOR_TEXT,
    NOT_WATCHED_TEXT,
    OFFER_TEXT,
    PAUSED_TEXT,
    RESUMED_TEXT,
    AutoAnswers,
    Watch,
)
from bot.core.context import bounded_context
from bot.core.escalation import Escalations
from bot.core.files import FileText, read_files
from bot.core.messages import (
    AnswerReply,
    ErrorReply,
    IncomingMessage,
    MessageRef,
    Notice,
    Progress,
    SummaryReply,
    Target,
)
from bot.core.ports import AnswerEngine, StateStore, Surface
from bot.core.ratelimit import RateLimiter, make_rate_limiter
from bot.core.split import split_text
from bot.core.summary import CANNOT_READ, Summarizer, ThreadPosts, ThreadUnreadable, summarize_thread
from bot.core.threads import join_thread
from config.logs import correlation_id
from config.settings import ChatSettings
from feedback.schema import VOTE_REASONS, InteractionRecord, VoteReason, VoteRecord, silent
from knowledge.answer import Answer, Turn
from knowledge.language import LanguageGuess
from knowledge.language import guess as guess_language
from workers.ports import SyncHandle, SyncStatus, TaskClient

log = logging.getLogger(__name__)

T = TypeVar("T")
Status = Literal["answered", "ignored", "duplicate", "rate_limited", "failed", "refused", "done"]
UserHasher = Callable[[str, str], str]  # (platform, raw user id) -> pseudonymous id


@dataclass(frozen=True)
class Outcome:
    """What the core did with one request (for logs, tests and benchmarks)."""

    status: Status
    correlation_id: str
    reason: str = ""
    answer_id: str | None = None
    ref: MessageRef | None = None


@dataclass(frozen=True)
class VoteInput:
    """A vote as an adapter parsed it. `key` identifies the click (e.g. the platform's action id)
    so that a redelivered click records nothing new."""

    platform: str
    user: str
    answer_id: str
    value: Literal["up", "down"]
    reason: str | None = None
    correction: str | None = None
    key: str | None = None


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def _correlated() -> Iterator[str]:
    """A fresh correlation id on every log line (and record) of one request."""
    cid = new_correlation_id()
    token = correlation_id.set(cid)
    try:
        yield cid
    finally:
        correlation_id.reset(token)


NOT_ADDRESSED = "not addressed to Lore"
ASKER = "asker:"  # a thread key's value after an auto-answer: whose follow-ups Lore answers


def thread_key(platform: str, channel: str, thread: str) -> str:
    return f"thread:{platform}:{channel}:{thread}"


class ConversationService:
    def __init__(
        self,
        engine: AnswerEngine,
        tasks: TaskClient,
        settings: ChatSettings,
        *,
        state: StateStore,
        user_hash: UserHasher,
        sources: Sequence[str] = (),
        reindex_timeout: float = 3 * 3600,
        limiter: RateLimiter | None = None,
        access: AccessRules | None = None,
        escalation: Escalations | None = None,
        auto: AutoAnswers | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.engine = engine
        self.tasks = tasks
        self.settings = settings
        self.state = state
        self.sources = list(sources)
        self.reindex_timeout = reindex_timeout
        # Who may read what, and which sources each channel answers from (built once from settings).
        self.access = access or AccessRules.none()
        self._user_hash = user_hash
        self.escalation = escalation  # "Ask an expert" (bot/core/escalation.py); None: off
        self.summarizer = summarizer  # Knowledge.summarize, for "Summarize this thread"
        # Per person and channel; pass one on Redis (`make_rate_limiter`) to share it between processes.
        self._limiter = limiter or make_rate_limiter(settings)
        # Auto-answer channels (bot/core/autoanswer.py); None when lore.toml lists none.
        self.auto = auto
        # The answer engine (embedding + LLM) blocks: it runs here, never on the event loop.
        self._executor = ThreadPoolExecutor(settings.answer_workers, thread_name_prefix="lore-answer")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._limiter.close()

    # ---- messages ----------------------------------------------------------------------------

    async def should_respond(self, msg: IncomingMessage, surface: Surface) -> str | None:
        """None when Lore should answer `msg`, else the reason it stays quiet."""
        if msg.author_is_bot:
            return "a bot's message"
        if msg.is_edit:
            return "an edit"
        if surface.allowed_channels and not msg.is_direct and msg.channel not in surface.allowed_channels:
            return "channel not in the allowlist"
        if msg.is_direct or msg.mentions_bot:
            return None
        if msg.thread:
            kept = await self.state.get(thread_key(msg.platform, msg.channel, msg.thread))
            # A follow-up in a thread Lore answered in; after an auto-answer, only the asker's.
            if kept is not None and (not kept.startswith(ASKER) or kept[len(ASKER) :] == msg.author):
                return None
        return NOT_ADDRESSED

    async def handle_message(self, msg: IncomingMessage, surface: Surface) -> Outcome:
        """Answer `msg` if it is for Lore. Never raises: failures become an error reply."""
        with _correlated() as cid:
            if self.escalation is not None and await self.escalation.observe(msg, surface):
                return Outcome("ignored", cid, "a thread handed to experts")
            reason = await self.should_respond(msg, surface)
            watch = self.auto.watch(msg) if self.auto is not None and reason == NOT_ADDRESSED else None
            if watch is not None:
                try:
                    return await self._auto_answer(msg, surface, watch, cid)
                except Exception:
                    # Nobody asked: a failure is logged, never posted into the channel.
                    log.exception("auto-answering failed")
                    return Outcome("failed", cid)
            if reason is not None:
                log.debug("ignoring %s message %s: %s", msg.platform, msg.message_id, reason)
                return Outcome("ignored", cid, reason)
            if not await self._first_delivery(msg):
                log.info("duplicate delivery of %s message %s ignored", msg.platform, msg.message_id)
                return Outcome("duplicate", cid)
            target = Target(msg.channel, thread=msg.reply_thread, user=msg.author, reply_to=msg.reply_to)
            if not await self._in_english(msg, surface, target):
                return Outcome("ignored", cid, "not English")
            history = None
            if (
                msg.thread
                and msg.mentions_bot
                and not msg.is_direct
                and not await self.state.seen(thread_key(msg.platform, msg.channel, msg.thread))
            ):
                msg, history = await self._join_thread(msg, surface)
            return await self._respond(msg, surface, target, private=msg.is_direct, history=history)

    async def _join_thread(
        self, msg: IncomingMessage, surface: Surface
    ) -> tuple[IncomingMessage, list[Turn]]:
        """Mentioned in a thread Lore never joined: read it from the start and answer the
        thread's question, not just the mention's line (`bot/core/threads.py`)."""
        turns = await self._history(msg, surface)
        joined = join_thread(msg.text, turns, max_tokens=self.settings.context_tokens)
        if joined.opening:
            log.info("mentioned mid-thread: answering the thread's opening question with the mention")
        return replace(msg, text=joined.question), turns

    async def ask(self, msg: IncomingMessage, surface: Surface, target: Target) -> Outcome:
        """A command-style question (`/ask`): always addressed to Lore, answered at `target`
        (usually ephemeral, with a "Share in channel" button). The command's id (Slack's
        trigger_id, Discord's interaction id) is `msg.message_id`: the same command delivered
        again (a replayed request) is answered once."""
        with _correlated() as cid:
            if msg.message_id and not await self._first_delivery(msg):
                log.info("duplicate delivery of %s command %s ignored", msg.platform, msg.message_id)
                return Outcome("duplicate", cid)
            if surface.allowed_channels and not msg.is_direct and msg.channel not in surface.allowed_channels:
                await self._notify(surface, target, "Lore isn't enabled in this channel. Try a DM with Lore.")
                return Outcome("ignored", cid, "channel not in the allowlist")
            if not await self._in_english(msg, surface, target):
                return Outcome("ignored", cid, "not English")
            return await self._respond(
                msg,
                surface,
                target,
                private=target.ephemeral or msg.is_direct,
                shareable=target.ephemeral,
                usage=render.USAGE_ASK,
            )

    async def _in_english(self, msg: IncomingMessage, surface: Surface, target: Target) -> bool:
        """A question asked of Lore in another language gets a short note instead of a poor answer."""
        if not msg.text.strip():
            return True
        found = await self._language(msg.text)
        if found.english:
            return True
        log.info(
            "%s message %s is not in English (%s); saying so", msg.platform, msg.message_id, found.reason
        )
        await self._notify(surface, target, ENGLISH_ONLY_TEXT)
        return False

    async def _language(self, text: str) -> LanguageGuess:
        try:
            return await self.run_blocking(guess_language, text)
        except Exception:
            log.warning("language detection failed; taking the text for English", exc_info=True)
            return LanguageGuess(True, "ENGLISH", "detection failed")

    async def _auto_answer(self, msg: IncomingMessage, surface: Surface, watch: Watch, cid: str) -> Outcome:
        """A new message in an auto-answer channel: answered only when it is a question and Lore
        has a cited, confident answer (bot/core/autoanswer.py); otherwise silence, or an offer."""
        auto = self.auto
        assert auto is not None

        def quiet(reason: str) -> Outcome:
            log.info("auto-answer: %s message %s left alone: %s", msg.platform, msg.message_id, reason)
            return Outcome("ignored", cid, reason)

        if surface.allowed_channels and msg.channel not in surface.allowed_channels:
            return quiet("channel not in the allowlist")
        if await auto.paused(msg.platform, msg.channel):
            return quiet("paused")
        if not msg.text.strip():
            return quiet("no text")
        if not await self._first_delivery(msg):
            return Outcome("duplicate", cid)
        if not watch.forum_post and not await self.run_blocking(auto.is_question, msg.text):
            return quiet("not a question")
        if not (await self._language(msg.text)).english:
            return quiet("not English")  # nobody asked Lore: no "English only" note either
        scope = await auto.full(msg, watch)
        if scope is not None:
            log.info(
                "auto-answer: %s message %s left alone: the %s's hourly budget is spent",
                msg.platform,
                msg.message_id,
                scope,
            )
            return Outcome("rate_limited", cid, f"auto-answer {scope} budget")
        try:
            access = await self.access.decide(msg, surface, private=False)
            if access.refusal is not None or (
                not auto.external_allowed
                and await self.access.is_external(surface, msg.channel, msg.shared_channel)
            ):
                return quiet("a channel shared with another organisation")
            if watch.settings.delay:
                await asyncio.sleep(watch.settings.delay)
            answer = await self.run_blocking(
                functools.partial(
                    self.engine.answer,
                    msg.text,
                    (),
                    audience=access.audience,
                    wider=access.wider,
                    sources=access.sources,
                )
            )
            if await auto.human_replied(msg, surface):
                return quiet("a person replied first")
            target = Target(msg.channel, thread=msg.reply_thread, user=msg.author, reply_to=msg.reply_to)
            if not auto.useful(answer, watch):
                if watch.settings.on_unsure != "offer":
                    # Nothing is posted, but the question is kept for the Gaps page, marked as
                    # never shown (feedback.schema.silent): not an answer anywhere else.
                    await self._record_answer(silent(answer), cid, msg, target, [])
                    return quiet(f"not confident (confidence {answer.confidence})")
                await auto.count(msg, watch)
                offered = answer.model_copy(update={"text": OFFER_TEXT, "citations": []})
                if self.escalation is not None and self.escalation.enabled(surface):
                    # The offer line with the "Ask an expert" button; experts get the real answer.
                    await self.escalation.keep(answer, msg, target)
                    ref = await self._deliver(surface, target, None, offered, ask_expert=True)
                else:
                    ref = await surface.outbox.send(target, auto.offer(msg))
                # Recorded as what was posted, an abstention: the Gaps page sees the question, and
                # an escalation from the offer has its interaction (the queue, expert answers).
                recorded = offered.model_copy(update={"abstained": True})
                await self._record_answer(recorded, cid, msg, target, [])
                return Outcome("ignored", cid, "offered an expert", ref=ref)
            await auto.count(msg, watch)
            if target.thread:  # follow-ups from the asker (not the whole channel) need no mention
                key = thread_key(msg.platform, target.channel, target.thread)
                await self.state.put(key, f"{ASKER}{msg.author}", self.settings.thread_ttl)
            offer = access.wider is not None and answer.withheld > 0
            if offer:
                await self._keep_question(answer.answer_id, msg, [])
            ref = await self._deliver(surface, target, None, answer, answer_privately=offer)
            metrics.answered(msg.platform, answer, answer.timings.total_ms / 1000)
            log.info(
                "auto-answered %s with %s (%d sources)",
                msg.message_id,
                answer.answer_id,
                len(answer.citations),
            )
        except Exception:
            # Nobody asked: a failure is logged, never posted into the channel.
            log.exception("auto-answering failed")
            metrics.failed(msg.platform)
            return Outcome("failed", cid)
        await self._record_answer(answer, cid, msg, target, [])
        return Outcome("answered", cid, answer_id=answer.answer_id, ref=ref)

    async def set_auto_paused(
        self,
        platform: str,
        channel: str,
        user: str,
        *,
        paused: bool,
        is_moderator: bool,
        surface: Surface,
        target: Target,
        command: bool = True,
    ) -> Outcome:
        """A moderator's /lore-pause or /lore-resume (`command`), or ⏸️/▶️ on a message, confirmed
        privately at `target`. A reaction from anyone else, or outside an auto-answer channel, is
        just a reaction: it gets no reply."""
        with _correlated() as cid:
            watched = self.auto is not None and (platform, channel) in self.auto.channels
            if not watched:
                if command:
                    await self._notify(surface, target, NOT_WATCHED_TEXT)
                return Outcome("ignored", cid, "not an auto-answer channel")
            if not is_moderator:
                if command:
                    log.warning(
                        "refused /lore-pause or /lore-resume in %s from %s user %s", channel, platform, user
                    )
                    await self._notify(surface, target, NOT_MODERATOR_TEXT)
                return Outcome("refused", cid, "not a moderator")
            assert self.auto is not None
            await self.auto.set_paused(platform, channel, paused)
            log.info(
                "auto-answers %s in %s %s by %s", "paused" if paused else "resumed", platform, channel, user
            )
            await self._notify(surface, target, PAUSED_TEXT if paused else RESUMED_TEXT)
            return Outcome("done", cid, "paused" if paused else "resumed")

    async def answer_privately(
        self,
        answer_id: str,
        user: str,
        principals: frozenset[str],
        surface: Surface,
        target: Target,
        *,
        key: str | None = None,
    ) -> Outcome:
        """The "Answer privately" button on a channel answer that left something out: the same
        question, answered at `target` (private to `user`) with the clicker's own rights, whoever
        asked first. `principals` are the clicker's, from the click's payload (the directory adds
        the rest). `key` identifies the click, so that a redelivered click is answered once."""
        private = replace(target, user=user, ephemeral=True, reply_to=None)
        with _correlated() as cid:
            stored = await self.state.get(f"question:{answer_id}")
            if stored is None:
                await self._notify(surface, private, render.QUESTION_EXPIRED)
                return Outcome("ignored", cid, "question expired")
            if key and not await self.state.first_time(
                f"private:{surface.platform}:{user}:{key}", self.settings.dedupe_ttl
            ):
                log.info("duplicate delivery of the private-answer click %s ignored", key)
                return Outcome("duplicate", cid)
            asked = json.loads(stored)
            msg = IncomingMessage(
                platform=surface.platform,
                channel=str(asked["channel"]),
                message_id=f"private:{answer_id}:{user}",
                author=user,
                text=str(asked["question"]),
                workspace=asked.get("workspace"),
                mentions_bot=True,
                principals=principals,
            )
            turns = [Turn.model_validate(t) for t in asked.get("turns", [])]
            log.info("answering %s privately for the person who clicked", answer_id)
            return await self._respond(msg, surface, private, private=True, history=turns)

    async def _first_delivery(self, msg: IncomingMessage) -> bool:
        ttl = self.settings.dedupe_ttl
        if msg.delivery_id and not await self.state.first_time(
            f"delivery:{msg.platform}:{msg.delivery_id}", ttl
        ):
            return False
        # The same message can also arrive as two events (Slack: app_mention and message).
        return await self.state.first_time(f"message:{msg.platform}:{msg.channel}:{msg.message_id}", ttl)

    async def _respond(
        self,
        msg: IncomingMessage,
        surface: Surface,
        target: Target,
        *,
        private: bool,
        shareable: bool = False,
        usage: str = render.HELLO,
        history: list[Turn] | None = None,
    ) -> Outcome:
        """Answer `msg` at `target`. `private`: only the asker sees it (their own rights apply);
        else everyone in the channel does (the channel's). `history` replaces the thread's."""
        cid = correlation_id.get() or new_correlation_id()
        if not msg.text.strip():  # just "@Lore": say how to ask rather than nothing
            await self._notify(surface, target, usage)
            return Outcome("ignored", cid, "no question")
        decision = await self._limiter.check(f"{msg.platform}:{msg.author}", f"{msg.platform}:{msg.channel}")
        if not decision.allowed:
            log.info("rate limited (%s) %s in %s", decision.scope, msg.author, msg.channel)
            await self._notify(
                surface,
                replace(target, user=msg.author, ephemeral=True),
                render.rate_limited_text(decision.scope, decision.retry_after_s),
            )
            return Outcome("rate_limited", cid, decision.scope)
        ref: MessageRef | None = None
        started = time.monotonic()
        try:
            access = await self.access.decide(msg, surface, private=private)
            log.info(
                "answering %s %s in %s%s for %s",
                msg.platform,
                "DM" if msg.is_direct else "private question" if access.private else "message",
                msg.channel,
                f" (thread {msg.thread})" if msg.thread else "",
                access.log_text(),
            )
            if access.refusal is not None:
                log.info("refused to answer in %s %s (a shared channel)", msg.platform, msg.channel)
                await self._notify(surface, target, access.refusal)
                return Outcome("refused", cid, "shared channel")
            if target.thread and not target.ephemeral:
                await self.remember_thread(msg.platform, target.channel, target.thread)
            progress = surface.outbox.send(target, Progress(self.settings.progress_text))
            reading = self._history(msg, surface) if history is None else _ready(history)
            ref, read, (files, unread) = await asyncio.gather(progress, reading, self._files(msg, surface))
            turns = bounded_context(
                read, max_turns=self.settings.context_turns, max_tokens=self.settings.context_tokens
            )
            answer = await self.run_blocking(
                functools.partial(
                    self.engine.answer,
                    msg.text,
                    turns,
                    audience=access.audience,
                    wider=access.wider,
                    sources=access.sources,
                    **({"attachments": [f.as_dict() for f in files]} if files else {}),
                )
            )
            if unread:  # said in the reply, never silently dropped
                answer.notice = " ".join([*unread, *([answer.notice] if answer.notice else [])])
            offer = access.wider is not None and not access.private and answer.withheld > 0
            # Before delivery: a button can be clicked as soon as the answer shows.
            if shareable:
                await self._keep_answer(answer, msg.author, access)
            if offer:
                await self._keep_question(answer.answer_id, msg, turns)
            ask_expert = self.escalation is not None and self.escalation.enabled(surface)
            if ask_expert and self.escalation is not None:
                await self.escalation.keep(answer, msg, target)
            ref = await self._deliver(
                surface,
                target,
                ref,
                answer,
                shareable=shareable,
                answer_privately=offer,
                ask_expert=ask_expert,
            )
            metrics.answered(msg.platform, answer, time.monotonic() - started)
            log.info(
                "answered %s in %.0f ms (%s, %d sources, %d withheld from %s)",
                answer.answer_id,
                answer.timings.total_ms,
                answer.model,
                len(answer.citations),
                answer.withheld,
                access.audience.key,
            )
        except Exception:
            log.exception("answering failed")
            metrics.failed(msg.platform)
            await self._report_error(surface, target, ref, cid)
            return Outcome("failed", cid, ref=ref)
        await self._record_answer(answer, cid, msg, target, turns, private=access.private)
        return Outcome("answered", cid, answer_id=answer.answer_id, ref=ref)

    async def _keep_answer(self, answer: Answer, user: str, access: Decision) -> None:
        """An ephemeral answer, for its Share button: who it was given to, with which rights."""
        kept = {"answer": answer.model_dump(mode="json"), "user": user, "audience": access.audience.key}
        await self.state.put(f"answer:{answer.answer_id}", json.dumps(kept), self.settings.answer_ttl)

    async def _keep_question(self, answer_id: str, msg: IncomingMessage, turns: Sequence[Turn]) -> None:
        """A channel answer's question, for its "Answer privately" button. Only what the channel
        already shows (the question and the thread's turns); the answer is made anew per click."""
        asked = {
            "question": msg.text,
            "channel": msg.channel,
            "workspace": msg.workspace,
            "turns": [t.model_dump() for t in turns],
        }
        await self.state.put(f"question:{answer_id}", json.dumps(asked), self.settings.answer_ttl)

    async def _files(self, msg: IncomingMessage, surface: Surface) -> tuple[list[FileText], list[str]]:
        """The question's attachments: texts to answer with, and what Lore could not use."""
        if not msg.files:
            return [], []
        return await read_files(msg.files, surface.files, self.settings.attachment_max_bytes)

    async def _history(self, msg: IncomingMessage, surface: Surface) -> list[Turn]:
        if not msg.thread or surface.threads is None or self.settings.context_turns == 0:
            return []
        try:
            return await surface.threads.history(msg.channel, msg.thread, before=msg.message_id)
        except Exception:
            # Context makes follow-ups better; without it Lore still answers the question itself.
            log.warning(
                "could not read thread %s in %s; answering without context",
                msg.thread,
                msg.channel,
                exc_info=True,
            )
            return []

    async def _record_answer(
        self,
        answer: Answer,
        cid: str,
        msg: IncomingMessage,
        target: Target,
        context: Sequence[Turn],
        *,
        private: bool = False,
    ) -> None:
        """`private`: only the asker saw it (a DM, an ephemeral `/ask` or "Answer privately"): no
        thread is recorded, since the answer was never posted in one (the gaps digest relies on
        this: a recorded thread means everyone in the channel saw the question)."""
        await self._record(
            InteractionRecord(
                answer=answer,
                correlation_id=cid,
                platform=msg.platform,
                workspace=msg.workspace,
                channel=msg.channel,
                thread=None if private or target.ephemeral else target.thread,
                user_hash=self._user_hash(msg.platform, msg.author),
                context=list(context),
            )
        )

    async def _deliver(
        self,
        surface: Surface,
        target: Target,
        ref: MessageRef | None,
        answer: Answer,
        *,
        shareable: bool = False,
        shared_by: str | None = None,
        answer_privately: bool = False,
        ask_expert: bool = False,
    ) -> MessageRef:
        """The answer in as many messages as the outbox needs; the first replaces `ref`."""
        parts = split_text(answer.text, surface.outbox.max_message_len) or ["…"]
        first: MessageRef | None = None
        for i, text in enumerate(parts, 1):
            reply = AnswerReply(
                answer,
                text,
                i,
                len(parts),
                shareable=shareable,
                shared_by=shared_by,
                answer_privately=answer_privately,
                ask_expert=ask_expert,
            )
            if i == 1 and ref is not None:
                first = await surface.outbox.update(ref, reply)
            else:
                sent = await surface.outbox.send(target, reply)
                first = first or sent
        assert first is not None
        return first

    async def _report_error(self, surface: Surface, target: Target, ref: MessageRef | None, cid: str) -> None:
        reply = ErrorReply(cid, render.error_text(cid))
        try:
            if ref is not None:
                try:
                    await surface.outbox.update(ref, reply)
                    return
                except Exception:
                    log.warning(
                        "could not replace the progress message with the error; sending it", exc_info=True
                    )
            await surface.outbox.send(target, reply)
        except Exception:
            log.exception("could not tell the user about the failure either")

    async def _notify(self, surface: Surface, target: Target, text: str) -> MessageRef | None:
        try:
            return await surface.outbox.send(target, Notice(text))
        except Exception:
            log.exception("could not send a notice")
            return None

    async def remember_thread(self, platform: str, channel: str, thread: str) -> None:
        """Follow-ups in this thread get answers without a mention."""
        await self.state.put(thread_key(platform, channel, thread), "1", self.settings.thread_ttl)

    # ---- "Summarize this thread" -----------------------------------------------------------

    async def summarize_thread(
        self,
        channel: str,
        thread: str,
        reader: ThreadPosts,
        surface: Surface,
        target: Target,
        *,
        key: str | None = None,
    ) -> Outcome:
        """Summarize a thread for the person who asked, at `target` (ephemeral: see
        `bot/core/summary.py`). `key` identifies the request, so a redelivered one runs once."""
        with _correlated() as cid:
            if key and not await self.state.first_time(
                f"summary:{surface.platform}:{key}", self.settings.dedupe_ttl
            ):
                return Outcome("duplicate", cid)
            if surface.allowed_channels and channel not in surface.allowed_channels:
                await self._notify(surface, target, "Lore isn't enabled in this channel.")
                return Outcome("ignored", cid, "channel not in the allowlist")
            if self.summarizer is None:
                await self._notify(surface, target, "Thread summaries aren't available here.")
                return Outcome("ignored", cid, "no summarizer")
            # A summary costs what an answer does (an LLM call): the same limits apply.
            user = target.user or ""
            decision = await self._limiter.check(
                f"{surface.platform}:{user}", f"{surface.platform}:{channel}"
            )
            if not decision.allowed:
                await self._notify(
                    surface, target, render.rate_limited_text(decision.scope, decision.retry_after_s)
                )
                return Outcome("rate_limited", cid, decision.scope)
            try:
                log.info("summarizing %s thread %s in %s", surface.platform, thread, channel)
                text = await summarize_thread(
                    channel,
                    thread,
                    reader,
                    self.summarizer,
                    self.run_blocking,
                    max_tokens=self.settings.summary_tokens,
                    key_count=self.settings.summary_key_messages,
                )
                ref = await surface.outbox.send(target, SummaryReply(text))
            except ThreadUnreadable as exc:
                log.info("cannot read thread %s in %s: %s", thread, channel, exc)
                await self._notify(surface, target, CANNOT_READ)
                return Outcome("refused", cid, "thread unreadable")
            except Exception:
                log.exception("summarizing thread %s failed", thread)
                await self._report_error(surface, target, None, cid)
                return Outcome("failed", cid)
            return Outcome("done", cid, ref=ref)

    # ---- blocking work and recording ---------------------------------------------------------

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the answer threads, with this task's context (the correlation id in logs)."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(ctx.run, fn, *args))

    async def _record(self, record: InteractionRecord) -> None:
        try:
            await asyncio.to_thread(self.tasks.record_interaction, record)
        except Exception:
            # The user has the answer; the TaskClient promises not to lose records it accepted.
            log.exception("could not hand interaction %s to the workers", record.answer_id)

    # ---- votes and sharing -------------------------------------------------------------------

    async def vote(
        self, vote: VoteInput, surface: Surface, target: Target, *, notify: bool = True
    ) -> VoteRecord | None:
        """Record a vote through the workers and thank the user privately at `target`.

        `notify=False` records silently, for an adapter that has already answered the click
        another way (Discord answers a 👎 by opening the feedback form, which thanks later)."""
        with _correlated() as cid:
            try:
                record = self._vote_record(vote)
                await asyncio.to_thread(self.tasks.record_vote, record)
                metrics.voted(vote.platform, vote.value)
                log.info("%s vote on %s recorded (%s)", vote.value, vote.answer_id, record.vote_id)
            except Exception:
                log.exception("recording a vote failed")
                if notify:
                    await self._notify(surface, target, render.error_text(cid))
                return None
            if not notify:
                return record
            thanks = render.THANKS_UP if vote.value == "up" else render.THANKS_DOWN
            await self._notify(
                surface, target, render.THANKS_DETAILS if record.reason or record.correction else thanks
            )
            return record

    def _vote_record(self, vote: VoteInput) -> VoteRecord:
        reason = cast("VoteReason | None", vote.reason if vote.reason in VOTE_REASONS else None)
        if vote.reason is not None and reason is None:
            log.warning("unknown vote reason %r dropped", vote.reason)
        user_hash = self._user_hash(vote.platform, vote.user)
        record = VoteRecord(
            answer_id=vote.answer_id,
            user_hash=user_hash,
            platform=vote.platform,
            value=vote.value,
            reason=reason,
            correction=(vote.correction or "").strip()[:4000] or None,
        )
        if vote.key:  # the same click delivered twice is the same vote
            record.vote_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{vote.platform}:{vote.key}:{user_hash}").hex
        return record

    async def share(
        self, answer_id: str, user: str, surface: Surface, target: Target, *, direct: bool = False
    ) -> Outcome:
        """Post an ephemeral answer (from /ask) publicly at `target`, credited to `user`. Problems
        are told to `user` privately, through the same interaction handle when there is one.

        Only the person it was given to may share it, and only where everyone may read every
        passage it used: a restricted answer is not posted, and `user` is told why. `direct`:
        the target is their own DM with Lore, where they alone read it."""
        private = replace(target, user=user, ephemeral=True, reply_to=None)
        with _correlated() as cid:
            try:
                cached = await self.state.get(f"answer:{answer_id}")
                kept = json.loads(cached) if cached is not None else None
                if kept is None or "answer" not in kept or kept.get("user") != user:
                    if kept is not None:
                        log.warning("answer %s given to someone else; not shared by %s", answer_id, user)
                    await self._notify(surface, private, render.ANSWER_EXPIRED)
                    return Outcome("ignored", cid, "answer expired")
                answer = Answer.model_validate(kept["answer"])
                refusal = None
                if not direct:
                    refusal = await self.access.share_refusal(
                        surface.platform, target.channel, [c.access for c in answer.chunks], surface
                    )
                if refusal is not None:
                    log.info(
                        "answer %s (audience %s) not shared in %s: the channel may not read all of it",
                        answer_id,
                        kept.get("audience"),
                        target.channel,
                    )
                    await self._notify(surface, private, refusal)
                    return Outcome("refused", cid, "restricted")
                ref = await self._deliver(surface, target, None, answer, shared_by=user)
                if not ref.target.ephemeral and (target.thread or ref.id):
                    await self.remember_thread(surface.platform, ref.channel, target.thread or ref.id)
                log.info("answer %s shared in %s", answer_id, ref.channel)
                return Outcome("answered", cid, answer_id=answer_id, ref=ref)
            except Exception:
                log.exception("sharing answer %s failed", answer_id)
                await self._report_error(surface, private, None, cid)
                return Outcome("failed", cid)

    # ---- /reindex ----------------------------------------------------------------------------

    async def reindex(
        self,
        source: str | None,
        *,
        platform: str,
        user: str,
        is_admin: bool,
        surface: Surface,
        target: Target,
        private: Target | None = None,
        poll_every: float | None = None,
    ) -> Outcome:
        """Queue a sync (or join the running one) for admins, with progress edited in place at
        `target` and a summary at the end. Anyone else gets a refusal at `private` (default: an
        ephemeral message to `user` beside `target`), which is logged."""
        private = private or replace(target, user=user, ephemeral=True)
        with _correlated() as cid:
            try:
                if not is_admin:
                    log.warning(
                        "refused /reindex %s from non-admin %s user %s", source or "(all)", platform, user
                    )
                    await self._notify(surface, private, render.REINDEX_REFUSED)
                    return Outcome("refused", cid, "not an admin")
                names = [source] if source else list(self.sources)
                unknown = [n for n in names if n not in self.sources]
                if unknown or not names:
                    known = ", ".join(self.sources) or "none configured"
                    what = f"Unknown source {unknown[0]!r}." if unknown else "No sources are configured."
                    await self._notify(surface, private, f"{what} Known sources: {known}.")
                    return Outcome("refused", cid, "unknown source")
                log.info("/reindex %s requested by %s user %s", ", ".join(names), platform, user)
                return await self._run_reindex(names, platform, user, surface, target, poll_every, cid)
            except Exception:
                log.exception("/reindex failed")
                await self._report_error(surface, private, None, cid)
                return Outcome("failed", cid)

    async def _run_reindex(
        self,
        names: list[str],
        platform: str,
        user: str,
        surface: Surface,
        target: Target,
        poll_every: float | None,
        cid: str,
    ) -> Outcome:
        requested_by = self._user_hash(platform, user)
        handles: list[SyncHandle] = []
        for name in names:
            handles.append(await asyncio.to_thread(self.tasks.request_sync, name, requested_by=requested_by))
        joined = [h.source for h in handles if h.joined]
        ref = await surface.outbox.send(target, Notice(render.reindex_started_text(names, joined)))
        every = poll_every if poll_every is not None else self.settings.progress_every
        deadline = time.monotonic() + self.reindex_timeout
        shown = ""
        while True:
            status = await asyncio.to_thread(self.tasks.sync_status)
            finished = {h.source: r for h in handles if (r := _finished(h, status)) is not None}
            if len(finished) == len(handles):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the sync of {', '.join(names)} did not finish in {self.reindex_timeout:.0f} s"
                )
            progress = {h.source: _progress(h, status) for h in handles if h.source not in finished}
            text = render.reindex_progress_text(progress)
            if text != shown:
                ref = await surface.outbox.update(ref, Notice(text))
                shown = text
            await asyncio.sleep(every)
        ref = await surface.outbox.update(ref, Notice(render.reindex_summary_text(finished)))
        log.info("/reindex of %s finished", ", ".join(names))
        return Outcome("done", cid, ref=ref)


async def _ready(value: T) -> T:
    return value


def _progress(handle: SyncHandle, status: SyncStatus) -> dict[str, Any] | None:
    """Live progress of the sync `handle` stands for; None while it waits in the queue."""
    running = status.running.get(handle.source)
    if running is not None:
        return running
    last = status.last.get(handle.source) or {}
    if last.get("task_id") == handle.task_id and last.get("state") == "retrying":
        return {"phase": "retrying after an error"}
    return None


def _finished(handle: SyncHandle, status: SyncStatus) -> dict[str, Any] | None:
    """The result of the sync `handle` stands for, once it has ended (done or failed), else None.
    A "retrying" result is not the end: the workers run it again under the same task id."""
    last = status.last.get(handle.source)
    if last and last.get("task_id") == handle.task_id and last.get("state", "done") in ("done", "failed"):
        return dict(last)
    return None
