"""Slack payloads <-> the core's neutral types. Pure functions only, tested on recorded payloads.

In: Events API bodies -> `IncomingMessage` or `Ignored`; button values, modal submissions and
slash commands -> small parsed records. Out: `Reply` -> (fallback text, Block Kit blocks); the
feedback modal. Nothing here talks to the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.core.actions import ButtonAction, expert_id, parse_button, private_id, share_id, vote_id
from bot.core.messages import (
    AnswerReply,
    Attachment,
    ErrorReply,
    ExpertRequest,
    ExpertsAsked,
    Ignored,
    IncomingMessage,
    Notice,
    Progress,
    Reply,
    SummaryReply,
)
from bot.core.ports import UnsupportedReply
from bot.core.render import PRIVATE_HINT, updated_date
from bot.core.split import split_text
from bot.core.summary import ThreadPost
from bot.slack.mrkdwn import escape, link, to_mrkdwn
from feedback.schema import VOTE_REASONS
from knowledge.answer import Citation, Turn

JSON = dict[str, Any]
PLATFORM = "slack"

# Slack's limits: 3000 characters per section text, 50 blocks, and (undocumented, measured by
# others at ~13,200) the sum of block text. Parts of at most MAX_PART Markdown characters keep a
# message well inside all three; BLOCK_TEXT_BUDGET is a last guard for pathological escaping.
SECTION_MAX = 3000
MAX_PART = 3000
BLOCK_TEXT_BUDGET = 9000
FALLBACK_MAX = 3000  # the notification / thread-history text beside the blocks

ACTION_UP = "lore_feedback_up"
ACTION_DOWN = "lore_feedback_down"
ACTION_SHARE = "lore_share"
ACTION_PRIVATE = "lore_answer_privately"
ACTION_EXPERT = "lore_ask_expert"
FEEDBACK_VIEW = "lore_feedback"
_USER_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")
_HANDLED_SUBTYPES = {None, "thread_broadcast", "file_share", "bot_message", "me_message"}


# ---- incoming --------------------------------------------------------------------------------


def strip_mention(text: str, bot_user_id: str) -> str:
    """The text without Lore's own `<@U…>` mention(s), whitespace tidied."""
    stripped = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text) if bot_user_id else text
    return re.sub(r"[ \t]+", " ", stripped).strip()


def mentions(text: str, user_id: str) -> bool:
    return bool(user_id) and any(m == user_id for m in _USER_MENTION.findall(text))


def is_direct_channel(channel_id: str) -> bool:
    return channel_id.startswith("D")


def principals_of(user: str) -> frozenset[str]:
    """Who a Slack user is, as far as a payload tells (knowledge/access.py): `slack:U…`. Their
    user groups and email come from the directory (`bot.slack.directory`)."""
    return frozenset({f"slack:{user}"}) if user else frozenset()


def is_external_channel(channel: Mapping[str, Any]) -> bool:
    """A `conversations.info` channel shared with another organisation (Slack Connect), or on its
    way to being: externally shared, pending, or shared beyond this Enterprise Grid org."""
    return bool(
        channel.get("is_ext_shared")
        or channel.get("is_pending_ext_shared")
        or (channel.get("is_shared") and not channel.get("is_org_shared"))
    )


def email_principal(user: Mapping[str, Any]) -> str | None:
    """`email:<addr>` from a `users.info` user, when the app has the users:read.email scope."""
    email = str((user.get("profile") or {}).get("email") or "").strip().lower()
    return f"email:{email}" if "@" in email else None


def message_from_event(body: Mapping[str, Any], bot_user_id: str) -> IncomingMessage | Ignored:
    """An Events API body (`event_callback`) as the core's message, or why there is none."""
    event = body.get("event")
    if not isinstance(event, Mapping):
        return Ignored("no event")
    etype = event.get("type")
    if etype not in ("app_mention", "message"):
        return Ignored(f"event type {etype}")
    subtype = event.get("subtype")
    is_edit = subtype == "message_changed"
    if not is_edit and subtype not in _HANDLED_SUBTYPES:
        return Ignored(f"message subtype {subtype}")
    message: Mapping[str, Any] = event.get("message") or {} if is_edit else event
    channel = str(event.get("channel") or "")
    ts = str(message.get("ts") or event.get("ts") or "")
    if not channel or not ts:
        return Ignored("no channel or ts")
    user = str(message.get("user") or "")
    text = str(message.get("text") or "")
    thread_ts = message.get("thread_ts")
    thread = str(thread_ts) if thread_ts and thread_ts != ts else None  # a parent has thread_ts == ts
    is_direct = event.get("channel_type") == "im" or is_direct_channel(channel)
    return IncomingMessage(
        platform=PLATFORM,
        channel=channel,
        message_id=ts,
        author=user,
        text=strip_mention(text, bot_user_id),
        workspace=str(body.get("team_id") or message.get("team") or "") or None,
        thread=thread,
        reply_thread=thread or (None if is_direct else ts),
        author_is_bot=bool(message.get("bot_id")) or subtype == "bot_message" or user == bot_user_id,
        is_direct=is_direct,
        mentions_bot=etype == "app_mention" or mentions(text, bot_user_id),
        is_edit=is_edit,
        delivery_id=str(body["event_id"]) if body.get("event_id") else None,
        principals=principals_of(user),
        shared_channel=_flag(body.get("is_ext_shared_channel")),
        files=files_of(message),
        raw=body,
    )


def files_of(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """The files shared with a message (Slack file objects), to download from url_private."""
    out = []
    for f in message.get("files") or []:
        if not isinstance(f, Mapping) or f.get("mode") == "tombstone":
            continue  # a deleted file
        url = str(f.get("url_private_download") or f.get("url_private") or "")
        name = str(f.get("name") or f.get("title") or "file")
        size = f.get("size")
        out.append(
            Attachment(name, int(size) if isinstance(size, int) else 0, url, str(f.get("mimetype") or ""))
        )
    return tuple(out)


SUMMARIZE_CALLBACK = "lore_summarize"  # the message shortcut in deploy/slack/manifest.yaml


@dataclass(frozen=True)
class SummarizeRequest:
    channel: str
    thread: str  # the thread's ts: the clicked message's thread, or the message itself
    user: str
    response_url: str | None
    key: str  # the trigger id: one click


def summarize_request(body: Mapping[str, Any]) -> SummarizeRequest | Ignored:
    """A `message_action` payload (the "Summarize this thread" shortcut) as a request."""
    message = body.get("message") or {}
    channel = str((body.get("channel") or {}).get("id") or "")
    ts = str(message.get("ts") or body.get("message_ts") or "")
    user = str((body.get("user") or {}).get("id") or "")
    if not channel or not ts or not user:
        return Ignored("no channel, message or user")
    thread = str(message.get("thread_ts") or ts)
    return SummarizeRequest(
        channel, thread, user, body.get("response_url") or None, str(body.get("trigger_id") or ts)
    )


def thread_posts(
    messages: Sequence[Mapping[str, Any]], *, bot_user_id: str, skip_texts: Sequence[str] = ()
) -> list[ThreadPost]:
    """`conversations.replies` messages as a summary reads them: people's and Lore's, oldest
    first, mentions of Lore removed (other bots' chatter and Lore's progress left out)."""
    posts: list[tuple[Decimal, ThreadPost]] = []
    for m in messages:
        ts = _ts(m.get("ts"))
        if ts is None or m.get("subtype") not in _HANDLED_SUBTYPES:
            continue
        text = str(m.get("text") or "").strip()
        is_lore = m.get("user") == bot_user_id
        if not text or text in skip_texts or (m.get("bot_id") and not is_lore):
            continue
        posts.append((ts, ThreadPost(str(m["ts"]), text if is_lore else strip_mention(text, bot_user_id))))
    return [p for _, p in sorted(posts, key=lambda pair: pair[0])]


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def thread_turns(
    messages: Sequence[Mapping[str, Any]],
    *,
    bot_user_id: str,
    before: str | None = None,
    skip_texts: Sequence[str] = (),
) -> list[Turn]:
    """`conversations.replies` messages as turns, oldest first, only those before `before`."""
    limit = _ts(before) if before else None
    turns: list[tuple[Decimal, Turn]] = []
    for m in messages:
        ts = _ts(m.get("ts"))
        if ts is None or (limit is not None and ts >= limit):
            continue
        if m.get("subtype") not in _HANDLED_SUBTYPES:
            continue
        text = str(m.get("text") or "").strip()
        if not text or text in skip_texts:
            continue
        is_lore = m.get("user") == bot_user_id
        if m.get("bot_id") and not is_lore:
            continue  # other bots' chatter is not conversation
        role = "assistant" if is_lore else "user"
        turns.append((ts, Turn(role=role, text=text if is_lore else strip_mention(text, bot_user_id))))
    return [t for _, t in sorted(turns, key=lambda pair: pair[0])]


def human_repliers(messages: Sequence[Mapping[str, Any]], *, bot_user_id: str, thread_ts: str) -> list[str]:
    """`conversations.replies` messages: the user ids of the people who replied under `thread_ts`
    (its parent, Lore and other bots left out), oldest first."""
    people: list[tuple[Decimal, str]] = []
    for m in messages:
        ts, user = _ts(m.get("ts")), str(m.get("user") or "")
        if ts is None or str(m.get("ts")) == thread_ts or not user or user == bot_user_id:
            continue
        if m.get("bot_id") or m.get("subtype") not in _HANDLED_SUBTYPES or m.get("subtype") == "bot_message":
            continue
        people.append((ts, user))
    return [u for _, u in sorted(people)]


# Reactions that pause (⏸️) and resume (▶️) auto-answers in a channel, by Slack's emoji names.
PAUSE_REACTIONS = {"double_vertical_bar": True, "arrow_forward": False}


@dataclass(frozen=True)
class PauseReaction:
    channel: str
    user: str
    paused: bool


def pause_reaction(body: Mapping[str, Any]) -> PauseReaction | None:
    """A `reaction_added` event with ⏸️ or ▶️ on a channel message, else None."""
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("type") != "reaction_added":
        return None
    item = event.get("item") or {}
    paused = PAUSE_REACTIONS.get(str(event.get("reaction") or "").split("::")[0])
    if paused is None or not isinstance(item, Mapping) or item.get("type") != "message":
        return None
    channel, user = str(item.get("channel") or ""), str(event.get("user") or "")
    if not channel or not user or is_direct_channel(channel):
        return None
    return PauseReaction(channel, user, paused)


def _ts(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value else None
    except InvalidOperation:
        return None


def button_action(body: Mapping[str, Any]) -> tuple[ButtonAction, str] | None:
    """The clicked Lore button in a `block_actions` payload and the click's id (for idempotency)."""
    for action in body.get("actions") or []:
        parsed = parse_button(str(action.get("value") or ""))
        if parsed is not None:
            click = f"{action.get('action_id')}:{action.get('action_ts') or body.get('trigger_id')}"
            return parsed, click
    return None


@dataclass(frozen=True)
class ActionContext:
    user: str
    channel: str
    thread: str | None  # the thread of the clicked message, for a reply next to it
    message_ts: str | None
    is_ephemeral: bool
    response_url: str | None


def action_context(body: Mapping[str, Any]) -> ActionContext:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id") or ""
    message = body.get("message") or {}
    thread = container.get("thread_ts") or message.get("thread_ts")
    return ActionContext(
        user=str((body.get("user") or {}).get("id") or ""),
        channel=str(channel),
        thread=str(thread) if thread else None,
        message_ts=container.get("message_ts") or message.get("ts"),
        is_ephemeral=bool(container.get("is_ephemeral")),
        response_url=body.get("response_url"),
    )


@dataclass(frozen=True)
class FeedbackForm:
    answer_id: str
    channel: str
    thread: str | None
    reason: str | None
    correction: str | None


def parse_feedback_view(view: Mapping[str, Any]) -> FeedbackForm | Ignored:
    """The submitted 👎 modal (built by `feedback_modal`)."""
    if view.get("callback_id") != FEEDBACK_VIEW:
        return Ignored(f"view {view.get('callback_id')!r} is not Lore's feedback form")
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        return Ignored("unreadable private_metadata")
    if not isinstance(meta, dict) or not meta.get("a"):
        return Ignored("no answer id in private_metadata")
    values = (view.get("state") or {}).get("values") or {}
    selected = ((values.get("reason") or {}).get("reason") or {}).get("selected_option") or {}
    reason = selected.get("value")
    correction = ((values.get("correction") or {}).get("correction") or {}).get("value")
    return FeedbackForm(
        answer_id=str(meta["a"]),
        channel=str(meta.get("c") or ""),
        thread=meta.get("t") or None,
        reason=reason if reason in VOTE_REASONS else None,
        correction=(correction or "").strip() or None,
    )


def ask_message(command: Mapping[str, Any]) -> IncomingMessage:
    """`/ask QUESTION` as a message addressed to Lore (its trigger id stands in for a message id)."""
    channel = str(command.get("channel_id") or "")
    user = str(command.get("user_id") or "")
    return IncomingMessage(
        platform=PLATFORM,
        channel=channel,
        message_id=str(command.get("trigger_id") or ""),
        author=user,
        text=str(command.get("text") or "").strip(),
        workspace=str(command.get("team_id") or "") or None,
        is_direct=is_direct_channel(channel),
        mentions_bot=True,
        principals=principals_of(user),
        raw=command,
    )


def reindex_source(text: str) -> str | None:
    """`/reindex [source]`: the source name, or None for every source."""
    words = (text or "").split()
    return words[0] if words else None


# ---- outgoing --------------------------------------------------------------------------------


def _section(text: str) -> JSON:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sections(mrkdwn: str) -> list[JSON]:
    return [_section(part) for part in split_text(mrkdwn, SECTION_MAX)]


def _context(text: str) -> JSON:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_MAX]}]}


def source_line(c: Citation) -> str:
    """`1. <url|Title> · updated 2024-05-01` (no link for non-web URLs such as file://)."""
    title = c.title.strip()[:200] or c.path or c.url
    date = updated_date(c.updated_at)
    shown = (
        link(c.url, title)
        if c.url.startswith(("http://", "https://"))
        else f"{escape(title)} ({escape(c.path or c.url)})"
    )
    return f"{c.n}. {shown}" + (f" · updated {date}" if date else "")


def source_blocks(citations: Sequence[Citation]) -> list[JSON]:
    if not citations:
        return []
    text = "*Sources*\n" + "\n".join(source_line(c) for c in citations)
    return _sections(text)


def feedback_buttons(
    answer_id: str, *, shareable: bool = False, answer_privately: bool = False, ask_expert: bool = False
) -> JSON:
    elements: list[JSON] = [
        _button(ACTION_UP, "👍 Helpful", vote_id("up", answer_id)),
        _button(ACTION_DOWN, "👎 Not helpful", vote_id("down", answer_id)),
    ]
    if shareable:
        elements.append(_button(ACTION_SHARE, "Share in channel", share_id(answer_id), style="primary"))
    if answer_privately:  # the channel answer left out passages the asker may read
        elements.append(_button(ACTION_PRIVATE, "🔒 Answer privately", private_id(answer_id)))
    if ask_expert:
        elements.append(_button(ACTION_EXPERT, "🙋 Ask an expert", expert_id(answer_id)))
    return {"type": "actions", "block_id": f"lore_actions:{answer_id}", "elements": elements}


def _button(action_id: str, label: str, value: str, *, style: str | None = None) -> JSON:
    button: JSON = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
    }
    return button | ({"style": style} if style else {})


def answer_blocks(reply: AnswerReply) -> tuple[str, list[JSON]]:
    answer = reply.answer
    body = to_mrkdwn(reply.text)
    if len(body) > BLOCK_TEXT_BUDGET:  # only pathological escaping gets here (e.g. thousands of "&")
        body = re.sub(r"&[a-z]{0,3}$", "", body[: BLOCK_TEXT_BUDGET - 1]) + "…"  # no half entity
    blocks: list[JSON] = []
    if reply.shared_by and reply.part == 1:
        blocks.append(_context(f"Shared by {user_mention(reply.shared_by)}"))
    blocks.extend(_sections(body))
    if reply.parts > 1:
        blocks.append(_context(f"Part {reply.part} of {reply.parts}"))
    if reply.is_last:
        if answer.notice:
            blocks.append(_context(f"ℹ️ {escape(answer.notice)}"))
        blocks.extend(source_blocks(answer.citations))
        if reply.answer_privately:
            blocks.append(_context(f"🔒 {escape(PRIVATE_HINT)}"))
        blocks.append(
            feedback_buttons(
                answer.answer_id,
                shareable=reply.shareable,
                answer_privately=reply.answer_privately,
                ask_expert=reply.ask_expert,
            )
        )
    return body[:FALLBACK_MAX], blocks


def user_mention(user_id: str) -> str:
    """The one way Lore mentions someone: from a Slack user id, never from text."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def render(reply: Reply) -> tuple[str, list[JSON]]:
    """(fallback text, blocks) for any reply; an unknown reply type is an explicit error. Every
    text, the fallback included (Slack parses it as mrkdwn too), is escaped."""
    if isinstance(reply, AnswerReply):
        return answer_blocks(reply)
    if isinstance(reply, Progress):
        text = escape(reply.text)
        return text, [_context(f"⏳ {text}")]
    if isinstance(reply, ErrorReply):
        text = escape(
            reply.text
            if reply.correlation_id in reply.text
            else f"{reply.text} (reference: {reply.correlation_id})"
        )
        return text, [_section(f"⚠️ {text}")]
    if isinstance(reply, Notice):
        text = escape(reply.text)
        return text[:FALLBACK_MAX], _sections(text)
    if isinstance(reply, ExpertRequest):
        return expert_request_blocks(reply)
    if isinstance(reply, ExpertsAsked):
        text = experts_asked_text(reply)
        return text, _sections(text)
    if isinstance(reply, SummaryReply):
        body = to_mrkdwn(reply.text)
        return body[:FALLBACK_MAX], _sections(body)
    raise UnsupportedReply(f"the Slack outbox cannot render {type(reply).__name__}")


def feedback_modal(answer_id: str, channel: str, thread: str | None) -> JSON:
    """The 👎 form: the reason list from `VOTE_REASONS`, and an optional correction."""
    options = [
        {"text": {"type": "plain_text", "text": label, "emoji": True}, "value": value}
        for value, label in VOTE_REASONS.items()
    ]
    return {
        "type": "modal",
        "callback_id": FEEDBACK_VIEW,
        "private_metadata": json.dumps({"a": answer_id, "c": channel, "t": thread}),
        "title": {"type": "plain_text", "text": "Answer feedback"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "What was wrong with the answer?"},
                "element": {
                    "type": "static_select",
                    "action_id": "reason",
                    "placeholder": {"type": "plain_text", "text": "Pick a reason"},
                    "options": options,
                },
            },
            {
                "type": "input",
                "block_id": "correction",
                "optional": True,
                "label": {"type": "plain_text", "text": "What would the right answer be?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "correction",
                    "multiline": True,
                    "max_length": 3000,
                },
            },
        ],
    }


# ---- "Ask an expert" (bot/core/escalation.py) ------------------------------------------------

_SUBTEAM_ID = re.compile(r"S[A-Z0-9]+")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]+")
EXPERT_ANSWER_MAX = 2500  # of the answer quoted to the experts; the link has the rest


def target_mention(target: str) -> str:
    """An expert target as Slack's own mention, built from a validated id only:
    `slack:group:S1` -> `<!subteam^S1>`, `slack:channel:C1` -> `<#C1>`."""
    kind, _, ident = target.removeprefix("slack:").partition(":")
    if kind == "group" and _SUBTEAM_ID.fullmatch(ident):
        return f"<!subteam^{ident}>"
    if kind == "channel" and _CHANNEL_ID.fullmatch(ident):
        return f"<#{ident}>"
    return escape(target)


def _quote(text: str) -> str:
    return "\n".join(f"&gt; {line}" for line in escape(text.strip()).splitlines() or [""])


def expert_request_blocks(reply: ExpertRequest) -> tuple[str, list[JSON]]:
    """Lore's post to the experts: who asks, the question (quoted, escaped), the answer Lore gave
    when the audience here may read it, and the link to the thread."""
    who = user_mention(reply.asker)
    head = f"{target_mention(reply.target)}: {who} asked for an expert's help with this question"
    blocks: list[JSON] = [_section(f"{head}\n{_quote(reply.question[:2000])}")]
    if reply.answer is not None and reply.answer.abstained:
        blocks.append(_context("Lore found nothing in the docs to answer it."))
    elif reply.answer is not None:
        body = to_mrkdwn(reply.answer.text)
        if len(body) > EXPERT_ANSWER_MAX:
            body = re.sub(r"&[a-z]{0,3}$", "", body[: EXPERT_ANSWER_MAX - 1]) + "…"
        blocks.append(_section(f"*Lore's answer*\n{body}"))
        blocks.extend(source_blocks(reply.answer.citations))
    elif reply.withheld:
        blocks.append(
            _context("Lore's answer used documents not everyone here may read, so it is not shown here.")
        )
    if reply.link:
        blocks.append(_section(f"{link(reply.link, 'Open the thread')} and reply there."))
    return f"{head}: {escape(reply.question[:500])}"[:FALLBACK_MAX], blocks


def experts_asked_text(reply: ExpertsAsked) -> str:
    """What the asker is told, privately."""
    who = target_mention(reply.target)
    if reply.already:
        return f"Experts were already asked about this answer ({who})."
    return f"I've asked {who}. Their answers help Lore answer better next time."


@dataclass(frozen=True)
class Reaction:
    user: str
    channel: str
    message_ts: str
    emoji: str


def reaction_from_event(body: Mapping[str, Any]) -> Reaction | Ignored:
    """A `reaction_added` event on a message (reactions on files and others are ignored)."""
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("type") != "reaction_added":
        return Ignored("not a reaction_added event")
    item = event.get("item") or {}
    if item.get("type") != "message" or not item.get("channel") or not item.get("ts"):
        return Ignored("a reaction on something other than a message")
    return Reaction(
        user=str(event.get("user") or ""),
        channel=str(item["channel"]),
        message_ts=str(item["ts"]),
        emoji=str(event.get("reaction") or "").split("::")[0],  # "white_check_mark::skin-tone-2"
    )
