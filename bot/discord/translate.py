"""Discord payloads <-> the core's neutral types. Pure functions only, tested on recorded payloads.

In: MESSAGE_CREATE payloads -> `IncomingMessage` or `Ignored`; channel history -> thread turns;
button custom_ids and the feedback form's submission -> small parsed records; who may /reindex.
Out: `Reply` -> `Rendered` (content, embeds as API dicts, button specs). Nothing here talks to
the network; `payload_of` only reads a `discord.Message` that discord.py already parsed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import discord

from bot.core.actions import (
    FORM_TEMPLATE,
    expert_id,
    private_id,
    share_id,
    vote_id,
)
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
from bot.core.summary import ThreadPost
from feedback.schema import VOTE_REASONS
from knowledge.answer import Citation, Turn

JSON = dict[str, Any]
PLATFORM = "discord"

# Discord's limits: 2,000 characters of message content, 4,096 per embed description, 6,000 in
# all embeds of a message, 100 characters per thread name and per custom_id.
MAX_CONTENT = 2000
EMBED_DESCRIPTION_MAX = 4096
EMBED_FOOTER_MAX = 2048
THREAD_NAME_MAX = 100
EMBED_COLOUR = 0x5865F2  # Discord blurple

REASON_ID = "reason"
CORRECTION_ID = "correction"
CORRECTION_MAX = 1000

# MESSAGE_CREATE types a person writes: DEFAULT and REPLY. Everything else (pins, joins, thread
# starters, boosts, command invocations) is the system or an app talking.
_USER_MESSAGE_TYPES = {0, 19}
AnswerIn = Literal["thread", "reply"]


# ---- incoming --------------------------------------------------------------------------------


def payload_of(message: discord.Message) -> JSON:
    """The MESSAGE_CREATE fields translation reads, from a message discord.py parsed (it keeps no
    raw payload). Same shape as the gateway's, so live and recorded messages take one path."""
    guild = message.guild
    author = message.author
    # A guild member's roles (without @everyone, as the gateway's `member.roles` lists them).
    member = (
        {"roles": [str(r.id) for r in author.roles if not r.is_default()]}
        if isinstance(author, discord.Member)
        else None
    )
    return {
        "id": str(message.id),
        "channel_id": str(message.channel.id),
        "guild_id": str(guild.id) if guild is not None else None,
        "type": message.type.value,
        "author": {
            "id": str(message.author.id),
            "bot": message.author.bot,
            "system": message.author.system,
        },
        "webhook_id": str(message.webhook_id) if message.webhook_id else None,
        "content": message.content,
        "mentions": [{"id": str(user.id)} for user in message.mentions],
        "mention_roles": [str(role_id) for role_id in message.raw_role_mentions],
        "attachments": [
            {
                "id": str(a.id),
                "filename": a.filename,
                "size": a.size,
                "url": a.url,
                "content_type": a.content_type,
            }
            for a in message.attachments
        ],
        **({"member": member} if member is not None else {}),
    }


def files_of(data: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """A message's attachments (MESSAGE_CREATE `attachments`), to download from their CDN url."""
    out = []
    for a in data.get("attachments") or []:
        if not isinstance(a, Mapping):
            continue
        size = a.get("size")
        out.append(
            Attachment(
                str(a.get("filename") or "file"),
                int(size) if isinstance(size, int) else 0,
                str(a.get("url") or ""),
                str(a.get("content_type") or ""),
            )
        )
    return tuple(out)


def jump_url(guild: str | None, channel: str, message: str) -> str:
    """The link that opens a message in Discord (a DM's "guild" is @me)."""
    return f"https://discord.com/channels/{guild or '@me'}/{channel}/{message}"


def thread_posts(
    messages: Iterable[Mapping[str, Any]], *, bot_id: str, skip_texts: Sequence[str] = ()
) -> list[ThreadPost]:
    """History payloads (any order, the starter message among them) as a summary reads them:
    people's and Lore's, oldest first, Lore's mentions removed, other bots left out."""
    picked: dict[int, ThreadPost] = {}
    for m in messages:
        mid = _snowflake(m.get("id"))
        if mid is None or int(m.get("type") or 0) not in _USER_MESSAGE_TYPES | {20}:
            continue
        author: Mapping[str, Any] = m.get("author") or {}
        is_lore = str(author.get("id")) == bot_id
        if not is_lore and (author.get("bot") or m.get("webhook_id")):
            continue
        text = str(m.get("content") or "").strip()
        if not text or text in skip_texts:
            continue
        picked[mid] = ThreadPost(str(mid), text if is_lore else strip_mentions(text, bot_id))
    return [picked[k] for k in sorted(picked)]


def principals_of(user: str, role_ids: Iterable[str] = ()) -> frozenset[str]:
    """Who a Discord user is (knowledge/access.py): `discord:<id>`, and `discord:role:<id>` for
    each of their roles in the guild the payload came from (a DM carries none)."""
    if not user:
        return frozenset()
    return frozenset({f"discord:{user}", *(f"discord:role:{r}" for r in role_ids if r)})


def member_roles(data: Mapping[str, Any]) -> list[str]:
    """The role ids in a payload's `member` (MESSAGE_CREATE in a guild, INTERACTION_CREATE)."""
    member = data.get("member") or {}
    return [str(r) for r in member.get("roles") or []] if isinstance(member, Mapping) else []


def strip_mentions(text: str, bot_id: str, role_ids: Collection[str] = ()) -> str:
    """The text without Lore's own `<@id>`/`<@!id>` mentions (or its managed role's), tidied."""
    patterns = [rf"<@!?{re.escape(bot_id)}>"] if bot_id else []
    patterns += [rf"<@&{re.escape(r)}>" for r in role_ids]
    stripped = re.sub("|".join(patterns), " ", text) if patterns else text
    return re.sub(r"[ \t]+", " ", stripped).strip()


def mentions_bot(data: Mapping[str, Any], bot_id: str, role_ids: Collection[str] = ()) -> bool:
    """Lore is mentioned: by user (also a reply that pings it), or through its managed role, which
    Discord's autocomplete sometimes picks instead of the bot user."""
    if not bot_id:
        return False
    if any(str(u.get("id")) == bot_id for u in data.get("mentions") or []):
        return True
    if re.search(rf"<@!?{re.escape(bot_id)}>", str(data.get("content") or "")):
        return True
    return bool(set(map(str, data.get("mention_roles") or [])) & set(role_ids))


def message_from_payload(
    data: Mapping[str, Any],
    *,
    bot_id: str,
    bot_role_ids: Collection[str] = (),
    thread_parent: str | None = None,
    answer_in: AnswerIn = "thread",
) -> IncomingMessage | Ignored:
    """A MESSAGE_CREATE payload as the core's message, or why there is none.

    `thread_parent` is the parent channel when the message was posted in a thread (the gateway
    payload does not say; the adapter asks discord.py's cache). Lore's thread keys, allowlist and
    context all use (parent channel, thread), so a follow-up finds the thread Lore answered in.
    """
    mtype = int(data.get("type") or 0)
    if mtype not in _USER_MESSAGE_TYPES:
        return Ignored(f"message type {mtype}")
    message_id, channel_id = str(data.get("id") or ""), str(data.get("channel_id") or "")
    author: Mapping[str, Any] = data.get("author") or {}
    if not message_id or not channel_id or not author.get("id"):
        return Ignored("no id, channel or author")
    author_id = str(author["id"])
    guild = str(data["guild_id"]) if data.get("guild_id") else None
    is_direct = guild is None  # MESSAGE_CREATE without guild_id is a DM
    roles = bot_role_ids if guild else ()
    if thread_parent and not is_direct:
        channel, thread = thread_parent, channel_id
    else:
        channel, thread = channel_id, None
    if is_direct:
        reply_thread = None
    elif thread is not None:
        reply_thread = thread  # answer inside the thread it was asked in
    else:
        reply_thread = message_id if answer_in == "thread" else None  # the thread Lore will start on it
    return IncomingMessage(
        platform=PLATFORM,
        channel=channel,
        message_id=message_id,
        author=author_id,
        text=strip_mentions(str(data.get("content") or ""), bot_id, roles),
        workspace=guild,
        thread=thread,
        reply_thread=reply_thread,
        reply_to=message_id if answer_in == "reply" and not is_direct else None,
        author_is_bot=bool(author.get("bot") or author.get("system"))
        or bool(data.get("webhook_id"))
        or author_id == bot_id,
        is_direct=is_direct,
        mentions_bot=mentions_bot(data, bot_id, roles),
        principals=principals_of(author_id, member_roles(data) if guild else ()),
        files=files_of(data),
        raw=data,
    )


def forum_post_text(title: str, text: str) -> str:
    """A forum post's question: its title and its first message (either may hold the question)."""
    title, text = title.strip(), text.strip()
    if not title or text.lower().startswith(title.lower()):
        return text
    return f"{title}\n{text}" if text else title


def human_repliers(messages: Iterable[Mapping[str, Any]], *, bot_id: str, starter: str) -> list[str]:
    """Channel history payloads of a thread: the ids of the people who posted after its first
    message `starter` (Lore, other bots, webhooks and system messages left out), oldest first."""
    first = _snowflake(starter)
    people: list[tuple[int, str]] = []
    for m in messages:
        mid = _snowflake(m.get("id"))
        author: Mapping[str, Any] = m.get("author") or {}
        if mid is None or (first is not None and mid <= first):
            continue
        if int(m.get("type") or 0) not in _USER_MESSAGE_TYPES or author.get("bot") or m.get("webhook_id"):
            continue
        if str(author.get("id")) == bot_id or author.get("system") or not author.get("id"):
            continue
        people.append((mid, str(author["id"])))
    return [p for _, p in sorted(people)]


PAUSE_EMOJI, RESUME_EMOJI = "⏸️", "▶️"


def pause_emoji(name: str | None) -> bool | None:
    """True for ⏸️ (pause auto-answers), False for ▶️ (resume), else None. Discord may send the
    emoji with or without its variation selector."""
    plain = (name or "").replace("\ufe0f", "")
    if plain == PAUSE_EMOJI.replace("\ufe0f", ""):
        return True
    if plain == RESUME_EMOJI.replace("\ufe0f", ""):
        return False
    return None


def thread_turns(
    messages: Iterable[Mapping[str, Any]],
    *,
    bot_id: str,
    before: str | None = None,
    skip_texts: Sequence[str] = (),
) -> list[Turn]:
    """Channel history payloads (any order; a thread's starter message may be among them) as turns,
    oldest first, only those before message `before`. Lore's messages are the assistant's."""
    limit = _snowflake(before)
    picked: dict[int, Turn] = {}
    for m in messages:
        mid = _snowflake(m.get("id"))
        if mid is None or (limit is not None and mid >= limit) or mid in picked:
            continue
        if int(m.get("type") or 0) not in _USER_MESSAGE_TYPES | {20}:  # 20: Lore's /ask replies
            continue
        author: Mapping[str, Any] = m.get("author") or {}
        is_lore = str(author.get("id")) == bot_id
        if not is_lore and (author.get("bot") or m.get("webhook_id")):
            continue  # other bots' chatter is not conversation
        text = str(m.get("content") or "").strip()
        if not text or text in skip_texts:
            continue
        role = "assistant" if is_lore else "user"
        picked[mid] = Turn(role=role, text=text if is_lore else strip_mentions(text, bot_id))
    return [picked[k] for k in sorted(picked)]


def _snowflake(value: Any) -> int | None:
    try:
        return int(str(value)) if value is not None and str(value) else None
    except ValueError:
        return None


def thread_name(question: str) -> str:
    """A thread title from the question: its first line, cut at a word within Discord's limit."""
    first = next((line.strip() for line in question.splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", first) or "Lore"
    if len(first) <= THREAD_NAME_MAX:
        return first
    cut = first[: THREAD_NAME_MAX - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > THREAD_NAME_MAX // 2 else first[: THREAD_NAME_MAX - 1]) + "…"


def ask_message(
    *,
    interaction_id: str,
    question: str,
    user: str,
    channel: str,
    thread: str | None = None,
    guild: str | None = None,
    roles: Iterable[str] = (),
) -> IncomingMessage:
    """`/ask QUESTION` as a message addressed to Lore (its interaction id stands in for a message
    id). `roles`: the member's role ids, from the interaction's `member` (none in a DM)."""
    return IncomingMessage(
        platform=PLATFORM,
        channel=channel,
        message_id=interaction_id,
        author=user,
        text=question.strip(),
        workspace=guild,
        thread=thread,
        is_direct=guild is None,
        mentions_bot=True,
        principals=principals_of(user, roles if guild else ()),
    )


def is_admin(
    user: int,
    role_ids: Iterable[int],
    permissions: int,
    *,
    admin_users: Collection[int],
    admin_roles: Collection[int],
) -> bool:
    """Who may /reindex: configured users or roles, or members with Manage Server (or Administrator)
    in the interaction's computed permissions."""
    perms = discord.Permissions(permissions)
    return (
        user in admin_users
        or bool(set(role_ids) & set(admin_roles))
        or perms.manage_guild
        or perms.administrator
    )


@dataclass(frozen=True)
class FeedbackForm:
    answer_id: str
    reason: str | None
    correction: str | None


def parse_feedback_form(data: Mapping[str, Any]) -> FeedbackForm | Ignored:
    """A submitted 👎 form (INTERACTION_CREATE type 5 `data`): the reason picked in the select and
    the optional correction. Accepts both layouts Discord sends: Label components (type 18, one
    child each) and classic action rows (type 1)."""
    match = re.fullmatch(FORM_TEMPLATE, str(data.get("custom_id") or ""))
    if not match:
        return Ignored(f"modal {data.get('custom_id')!r} is not Lore's feedback form")
    values: dict[str, Mapping[str, Any]] = {}
    for top in data.get("components") or []:
        children = [top.get("component")] if top.get("type") == 18 else list(top.get("components") or [])
        for child in children:
            if isinstance(child, Mapping) and child.get("custom_id"):
                values[str(child["custom_id"])] = child
    picked = list((values.get(REASON_ID) or {}).get("values") or [])
    reason = str(picked[0]) if picked else None
    correction = str((values.get(CORRECTION_ID) or {}).get("value") or "").strip()
    return FeedbackForm(
        answer_id=match["answer_id"],
        reason=reason if reason in VOTE_REASONS else None,
        correction=correction[:CORRECTION_MAX] or None,
    )


# ---- outgoing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ButtonSpec:
    custom_id: str
    label: str
    emoji: str | None = None
    style: Literal["primary", "secondary", "success", "danger"] = "secondary"


@dataclass(frozen=True)
class Rendered:
    """One message: `content` (at most MAX_CONTENT characters), embeds as API dicts, and the
    buttons (their custom_ids carry the answer id, so they work after a restart)."""

    content: str
    embeds: list[JSON] = field(default_factory=list)
    buttons: list[ButtonSpec] = field(default_factory=list)
    # Role ids this message may ping (Lore asking an expert role); nothing else is ever pinged.
    ping_roles: list[str] = field(default_factory=list)


def _link_url(url: str) -> str:
    """A URL safe inside `[title](url)`: parentheses and spaces would end the link early."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace(">", "%3E")


def _escape(text: str) -> str:
    return discord.utils.escape_markdown(text, as_needed=False).replace("[", "\\[").replace("]", "\\]")


def source_line(c: Citation) -> str:
    """`**1.** [Title](https://…) · updated 2024-05-01` (no link for non-web URLs such as file://)."""
    title = re.sub(r"\s+", " ", c.title).strip()[:200] or c.path or c.url
    date = updated_date(c.updated_at)
    if c.url.startswith(("http://", "https://")):
        shown = f"[{_escape(title)}]({_link_url(c.url)})"
    else:
        shown = f"{_escape(title)} ({_escape(c.path or c.url)})"
    return f"**{c.n}.** {shown}" + (f" · updated {date}" if date else "")


def sources_embed(citations: Sequence[Citation], notice: str | None = None) -> JSON | None:
    """The sources as one embed: numbered titles with links and last-updated dates."""
    if not citations and not notice:
        return None
    lines: list[str] = []
    used = 0
    for c in citations:
        line = source_line(c)
        if used + len(line) + 1 > EMBED_DESCRIPTION_MAX - 2:
            lines.append("…")
            break
        lines.append(line)
        used += len(line) + 1
    embed: JSON = {"type": "rich", "color": EMBED_COLOUR}
    if lines:
        embed |= {"title": "Sources", "description": "\n".join(lines)}
    if notice:
        embed["footer"] = {"text": f"ℹ️ {notice}"[:EMBED_FOOTER_MAX]}
    return embed


def answer_buttons(
    answer_id: str, *, shareable: bool = False, answer_privately: bool = False, ask_expert: bool = False
) -> list[ButtonSpec]:
    buttons = [
        ButtonSpec(vote_id("up", answer_id), "Helpful", "👍"),
        ButtonSpec(vote_id("down", answer_id), "Not helpful", "👎"),
    ]
    if shareable:
        buttons.append(ButtonSpec(share_id(answer_id), "Share", "📣", "primary"))
    if answer_privately:  # the channel answer left out passages the asker may read
        buttons.append(private_button(answer_id))
    if ask_expert:
        buttons.append(expert_button(answer_id))
    return buttons


def expert_button(answer_id: str) -> ButtonSpec:
    return ButtonSpec(expert_id(answer_id), "Ask an expert", "🙋")


def private_button(answer_id: str) -> ButtonSpec:
    return ButtonSpec(private_id(answer_id), "Answer privately", "🔒")


def answer_message(reply: AnswerReply) -> Rendered:
    """One part of an answer. The text is the core's Markdown, which Discord renders as is; the
    last part carries the sources embed and the vote (and share) buttons."""
    embeds: list[JSON] = []
    if reply.shared_by and reply.part == 1:
        embeds.append({"type": "rich", "description": f"Shared by <@{reply.shared_by}>"})
    buttons: list[ButtonSpec] = []
    if reply.is_last:
        if sources := sources_embed(reply.answer.citations, reply.answer.notice):
            embeds.append(sources)
        if reply.answer_privately:
            embeds.append({"type": "rich", "description": f"🔒 {PRIVATE_HINT}"})
        buttons = answer_buttons(
            reply.answer.answer_id,
            shareable=reply.shareable,
            answer_privately=reply.answer_privately,
            ask_expert=reply.ask_expert,
        )
    return Rendered(_fit(reply.text) or "…", embeds, buttons)


def progress_content(text: str) -> str:
    return f"⏳ {text}"


def _fit(text: str) -> str:
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def render(reply: Reply) -> Rendered:
    """Any reply as one message; an unknown reply type is an explicit error."""
    if isinstance(reply, AnswerReply):
        return answer_message(reply)
    if isinstance(reply, Progress):
        return Rendered(_fit(progress_content(reply.text)))
    if isinstance(reply, ErrorReply):
        text = (
            reply.text
            if reply.correlation_id in reply.text
            else f"{reply.text} (reference: {reply.correlation_id})"
        )
        return Rendered(_fit(f"⚠️ {text}"))
    if isinstance(reply, Notice | SummaryReply):
        return Rendered(_fit(reply.text))
    if isinstance(reply, ExpertRequest):
        return expert_request(reply)
    if isinstance(reply, ExpertsAsked):
        return Rendered(_fit(experts_asked_text(reply)))
    raise UnsupportedReply(f"the Discord outbox cannot render {type(reply).__name__}")


# ---- "Ask an expert" (bot/core/escalation.py) ------------------------------------------------

_SNOWFLAKE = re.compile(r"\d{5,25}")


def target_mention(target: str) -> str:
    """An expert target as Discord's own mention, from a validated id only:
    `discord:role:5` -> `<@&5>`, `discord:channel:7` -> `<#7>`."""
    kind, _, ident = target.removeprefix("discord:").partition(":")
    if kind == "role" and _SNOWFLAKE.fullmatch(ident):
        return f"<@&{ident}>"
    if kind == "channel" and _SNOWFLAKE.fullmatch(ident):
        return f"<#{ident}>"
    return _escape(target)


def _user(user_id: str) -> str:
    return f"<@{user_id}>" if _SNOWFLAKE.fullmatch(user_id) else _escape(user_id)


def _quoted(text: str) -> str:
    """The asker's words as a quote that can neither format nor mention (allowed_mentions also
    pings nobody but the expert role)."""
    safe = discord.utils.escape_mentions(_escape(text.strip()))
    return "\n".join(f"> {line}" for line in safe.splitlines() or [""])


WITHHELD = "Lore's answer used documents not everyone here may read, so it is not shown here."


def expert_request(reply: ExpertRequest) -> Rendered:
    """Lore's post to the experts: who asks, the question, the answer when the audience here
    may read it (an embed, with its sources), and the link to the thread."""
    who = f"{target_mention(reply.target)}: {_user(reply.asker)}"
    head = f"{who} asked for an expert's help with this question"
    lines = [head, _quoted(reply.question[:1000])]
    if reply.link:
        lines.append(f"Open the thread and reply there: {_link_url(reply.link)}")
    embeds: list[JSON] = []
    if reply.answer is not None and reply.answer.abstained:
        embeds.append({"type": "rich", "description": "Lore found nothing in the docs to answer it."})
    elif reply.answer is not None:
        text = reply.answer.text
        if len(text) > EMBED_DESCRIPTION_MAX - 200:
            text = text[: EMBED_DESCRIPTION_MAX - 201] + "…"
        embeds.append({"type": "rich", "title": "Lore's answer", "description": text, "color": EMBED_COLOUR})
        if sources := sources_embed(reply.answer.citations):
            embeds.append(sources)
    elif reply.withheld:
        embeds.append(
            {
                "type": "rich",
                "description": WITHHELD,
            }
        )
    kind, _, ident = reply.target.removeprefix("discord:").partition(":")
    roles = [ident] if kind == "role" and _SNOWFLAKE.fullmatch(ident) else []
    return Rendered(_fit("\n".join(lines)), embeds, ping_roles=roles)


def experts_asked_text(reply: ExpertsAsked) -> str:
    who = target_mention(reply.target)
    if reply.already:
        return f"Experts were already asked about this answer ({who})."
    return f"I've asked {who}. Their answers help Lore answer better next time."


def thread_link(guild: str | None, channel: str) -> str:
    """A link to a channel or thread (a thread is a channel on Discord)."""
    return f"https://discord.com/channels/{guild or '@me'}/{channel}"


@dataclass(frozen=True)
class Reaction:
    user: str
    channel: str  # the parent channel when the message is in a thread (as for messages)
    message_id: str
    emoji: str


def reaction_from_payload(
    data: Mapping[str, Any], *, bot_id: str, thread_parent: str | None = None
) -> Reaction | Ignored:
    """A MESSAGE_REACTION_ADD payload. `thread_parent` as in `message_from_payload`."""
    user, channel, message = (str(data.get(k) or "") for k in ("user_id", "channel_id", "message_id"))
    if not user or not channel or not message:
        return Ignored("no user, channel or message")
    if user == bot_id:
        return Ignored("Lore's own reaction")
    emoji = data.get("emoji") or {}
    name = str(emoji.get("name") or "") if isinstance(emoji, Mapping) else ""
    return Reaction(user, thread_parent or channel, message, name)
