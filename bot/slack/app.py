"""The Slack adapter: a slack-bolt `AsyncApp` whose listeners ack at once and hand the work to
the conversation core in background tasks.

Listeners own only what STYLE.md gives adapters: translation (`bot.slack.translate`), acking in
time, and ids in button values. Everything else is `ConversationService`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.middleware.request_verification.async_request_verification import (
    AsyncRequestVerification,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.background import BackgroundTasks
from bot.core.conversation import ConversationService, VoteInput
from bot.core.messages import Ignored, Target
from bot.core.ports import Surface
from bot.slack import translate
from bot.slack.directory import SlackDirectory, configured_user_groups, names_emails
from bot.slack.outbox import SlackAdmins, SlackFiles, SlackOutbox, SlackThreadReader, make_web_client
from config.settings import Settings

log = logging.getLogger(__name__)


class SlackStartError(RuntimeError):
    """The adapter cannot start (e.g. the token is wrong). The message is for the operator."""


# slack_sdk and Bolt log every request and response body at DEBUG: answers, and so passages a
# channel or a log reader may not read (issue 19), would reach the log. Lore's own debug lines
# never carry document text, so these stay at INFO even when Lore logs at DEBUG.
PAYLOAD_LOGGERS = ("slack_sdk", "slack_bolt")


def quiet_payload_loggers(names: tuple[str, ...] = PAYLOAD_LOGGERS) -> None:
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.INFO))


class QuietRequestVerification(AsyncRequestVerification):
    """Bolt's signature check (HTTP mode), but a rejected request is logged without its body:
    Bolt logs the whole body of every forged request at INFO, i.e. whatever anyone sends."""

    def _debug_log_error(self, signature: str, timestamp: str, body: str) -> None:
        log.info(
            "rejected a Slack request with a missing, wrong or stale signature (%d bytes, timestamp %r)",
            len(body),
            timestamp[:20],
        )


class SlackAdapter:
    """Owns the Bolt app, the outbox and the background tasks of one Slack workspace."""

    def __init__(
        self,
        settings: Settings,
        service: ConversationService,
        *,
        client: AsyncWebClient | None = None,
    ) -> None:
        slack = settings.slack
        quiet_payload_loggers()
        self.settings = settings
        self.service = service
        self.client = client or make_web_client(slack)
        secret = slack.signing_secret.get_secret_value() if slack.signing_secret else None
        self.app = AsyncApp(
            client=self.client,
            signing_secret=secret,
            # Socket Mode requests are not signed; HTTP mode always verifies, before anything else
            # (`before_authorize` runs where Bolt's own check would).
            request_verification_enabled=False,
            before_authorize=QuietRequestVerification(secret) if secret is not None else None,
            process_before_response=False,
            ignoring_self_events_enabled=True,
            logger=logging.getLogger("slack_bolt"),
        )
        self.bot_user_id = ""  # from auth.test in start(), or Bolt's context on the first request
        self.outbox = SlackOutbox(self.client, retries=slack.api_retries)
        self.reader = SlackThreadReader(
            self.client, lambda: self.bot_user_id, skip_texts=[settings.chat.progress_text]
        )
        self.directory = SlackDirectory(
            self.client,
            configured_user_groups(settings.groups),
            emails=names_emails(settings.groups),
            ttl=slack.directory_cache_seconds,
        )
        self.surface = Surface(
            "slack",
            self.outbox,
            self.reader,
            frozenset(slack.channels),
            directory=self.directory,
            experts=self.directory,
            files=SlackFiles(self.client),
        )
        self.admins = SlackAdmins(self.client, slack.admin_users, ttl=slack.admin_cache_seconds)
        self.tasks = BackgroundTasks("Slack")
        self._session: aiohttp.ClientSession | None = None
        self._register()

    async def start(self) -> None:
        """Check the bot token once at start-up (auth.test), so a wrong token fails loudly here
        rather than on every event, and learn Lore's own user id."""
        try:
            identity = await self.client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error")
            raise SlackStartError(f"Slack rejected the bot token (slack.bot_token): {error}") from exc
        self.bot_user_id = str(identity.get("user_id") or "")
        log.info("Slack: signed in as %s in %s", identity.get("user"), identity.get("team"))
        if self.client.session is None:
            # One pooled session: Web API calls reuse connections (no TLS handshake per message).
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.client.timeout))
            self.client.session = self._session

    async def close(self) -> None:
        if self._session is not None:
            self.client.session = None
            await self._session.close()
            self._session = None

    # ---- background work -----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` after the ack (kept until done, drained on shutdown)."""
        return self.tasks.spawn(coro, name)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Wait for in-flight work (answers being sent, votes being recorded)."""
        await self.tasks.drain(timeout)

    def _learn(self, context: AsyncBoltContext) -> None:
        if context.bot_user_id and not self.bot_user_id:
            self.bot_user_id = context.bot_user_id

    # ---- listeners -----------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.event("app_mention")(self._on_event)
        app.event("message")(self._on_event)
        app.action(translate.ACTION_UP)(self._on_vote)
        app.action(translate.ACTION_DOWN)(self._on_vote)
        app.action(translate.ACTION_SHARE)(self._on_share)
        app.action(translate.ACTION_PRIVATE)(self._on_answer_privately)
        app.action(translate.ACTION_EXPERT)(self._on_ask_expert)
        app.event("reaction_added")(self._on_reaction)  # ✅ on an expert's reply; ⏸️ / ▶️ by a moderator
        app.view(translate.FEEDBACK_VIEW)(self._on_feedback_form)
        app.shortcut(translate.SUMMARIZE_CALLBACK)(self._on_summarize)
        app.command("/ask")(self._on_ask)
        app.command("/reindex")(self._on_reindex)
        app.command("/lore-pause")(self._on_pause_command)
        app.command("/lore-resume")(self._on_pause_command)

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        # Bolt acks Events API requests before running this listener.
        self._learn(context)
        msg = translate.message_from_event(body, self.bot_user_id)
        if isinstance(msg, Ignored):
            log.debug("Slack event ignored: %s", msg.reason)
            return
        self.spawn(self.service.handle_message(msg, self.surface), f"slack-message-{msg.message_id}")

    async def _on_vote(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        self._learn(context)
        clicked = translate.button_action(body)
        if clicked is None:
            log.warning("a feedback button without a Lore value: %s", body.get("actions"))
            return
        action, click = clicked
        where = translate.action_context(body)
        private = Target(
            where.channel, where.thread, where.user, ephemeral=True, interaction=where.response_url
        )
        vote = VoteInput(
            "slack", where.user, action.answer_id, "up" if action.kind == "up" else "down", key=click
        )
        self.spawn(self.service.vote(vote, self.surface, private), f"slack-vote-{action.answer_id}")
        if action.kind == "down":
            # The trigger id expires in 3 s, so the form opens here, not in the background.
            view = translate.feedback_modal(action.answer_id, where.channel, where.thread)
            try:
                await self.client.views_open(trigger_id=body["trigger_id"], view=view)
            except Exception:
                log.exception("could not open the feedback form")

    async def _on_feedback_form(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        form = translate.parse_feedback_view(view)
        if isinstance(form, Ignored):
            await ack()
            log.warning("feedback form ignored: %s", form.reason)
            return
        if form.reason is None:
            await ack(response_action="errors", errors={"reason": "Pick the closest reason."})
            return
        await ack()
        user = str((body.get("user") or {}).get("id") or "")
        vote = VoteInput(
            "slack",
            user,
            form.answer_id,
            "down",
            reason=form.reason,
            correction=form.correction,
            key=f"view:{view.get('id')}",
        )
        private = Target(form.channel, form.thread, user, ephemeral=True)
        self.spawn(self.service.vote(vote, self.surface, private), f"slack-feedback-{form.answer_id}")

    async def _on_summarize(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        """The "Summarize this thread" message shortcut: answered to the clicker alone, through
        the response_url (which reaches them even where Lore is not a member)."""
        await ack()
        self._learn(context)
        request = translate.summarize_request(body)
        if isinstance(request, Ignored):
            log.warning("a summarize shortcut without a message: %s", request.reason)
            return
        target = Target(
            request.channel, request.thread, request.user, ephemeral=True, interaction=request.response_url
        )
        self.spawn(
            self.service.summarize_thread(
                request.channel, request.thread, self.reader, self.surface, target, key=request.key
            ),
            f"slack-summary-{request.thread}",
        )

    async def _on_ask(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        msg = translate.ask_message(command)
        target = Target(
            msg.channel, user=msg.author, ephemeral=True, interaction=command.get("response_url") or None
        )
        self.spawn(self.service.ask(msg, self.surface, target), f"slack-ask-{msg.message_id}")

    async def _on_reindex(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        self.spawn(self._reindex(command), "slack-reindex")

    async def _reindex(self, command: Mapping[str, Any]) -> None:
        user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        private = Target(channel, user=user, ephemeral=True, interaction=command.get("response_url") or None)
        await self.service.reindex(
            translate.reindex_source(str(command.get("text") or "")),
            platform="slack",
            user=user,
            is_admin=await self.admins.is_admin(user),
            surface=self.surface,
            target=Target(channel, user=user),  # public progress, edited in place; DM if Lore isn't there
            private=private,
        )

    # ---- auto-answer pause (bot/core/autoanswer.py) -------------------------------------------

    async def _on_reaction(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        # One listener: Bolt runs only the first that matches an event.
        self._learn(context)
        self._pause_on_reaction(body)
        self._expert_on_reaction(body)

    def _pause_on_reaction(self, body: dict[str, Any]) -> None:
        found = translate.pause_reaction(body)
        if found is not None:
            self.spawn(self._pause(found.channel, found.user, found.paused, command=False), "slack-pause")

    async def _on_pause_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        paused = command.get("command") != "/lore-resume"
        url = command.get("response_url") or None
        self.spawn(self._pause(channel, user, paused, command=True, response_url=url), "slack-pause")

    async def _pause(
        self, channel: str, user: str, paused: bool, *, command: bool, response_url: str | None = None
    ) -> None:
        await self.service.set_auto_paused(
            "slack",
            channel,
            user,
            paused=paused,
            is_moderator=await self.admins.is_admin(user),
            surface=self.surface,
            target=Target(channel, user=user, ephemeral=True, interaction=response_url),
            command=command,
        )

    async def _on_share(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        self._learn(context)
        clicked = translate.button_action(body)
        if clicked is None:
            return
        self.spawn(self._share(clicked[0].answer_id, translate.action_context(body)), "slack-share")

    async def _share(self, answer_id: str, where: translate.ActionContext) -> None:
        # Through the response_url, the answer can be posted even where Lore is not a member.
        target = Target(where.channel, where.thread, where.user, interaction=where.response_url)
        direct = translate.is_direct_channel(where.channel)  # their own DM with Lore
        outcome = await self.service.share(answer_id, where.user, self.surface, target, direct=direct)
        if outcome.status == "answered" and where.response_url and where.is_ephemeral:
            await self.outbox.delete_original(where.response_url)

    async def _on_answer_privately(
        self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        self._learn(context)
        clicked = translate.button_action(body)
        if clicked is None:
            return
        action, click = clicked
        where = translate.action_context(body)
        # chat.postEphemeral beside the clicked answer: only the clicker sees it. (Not the
        # response_url: its replace_original would act on the public answer.)
        private = Target(where.channel, where.thread, where.user, ephemeral=True)
        self.spawn(
            self.service.answer_privately(
                action.answer_id,
                where.user,
                translate.principals_of(where.user),
                self.surface,
                private,
                key=click,
            ),
            f"slack-private-{action.answer_id}",
        )

    # ---- "Ask an expert" (bot/core/escalation.py) ------------------------------------------

    async def _on_ask_expert(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        self._learn(context)
        clicked = translate.button_action(body)
        escalation = self.service.escalation
        if clicked is None or escalation is None:
            return
        action, click = clicked
        where = translate.action_context(body)
        # Told privately beside the answer (not through the response_url: its defaults act on
        # the answer message itself).
        private = Target(where.channel, where.thread, where.user, ephemeral=True)
        self.spawn(
            escalation.escalate(action.answer_id, where.user, self.surface, private, key=click),
            f"slack-expert-{action.answer_id}",
        )

    def _expert_on_reaction(self, body: dict[str, Any]) -> None:
        reaction = translate.reaction_from_event(body)
        escalation = self.service.escalation
        if isinstance(reaction, Ignored) or escalation is None:
            return
        self.spawn(
            escalation.reaction(
                self.surface, reaction.channel, reaction.message_ts, reaction.user, reaction.emoji
            ),
            f"slack-reaction-{reaction.message_ts}",
        )


def build_slack_app(
    settings: Settings, service: ConversationService, *, client: AsyncWebClient | None = None
) -> SlackAdapter:
    """The adapter (its Bolt app is `.app`); run it with `bot.slack.run`."""
    return SlackAdapter(settings, service, client=client)
