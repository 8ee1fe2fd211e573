"""Posting one message to a Slack or Discord channel from a worker: the gap digest's only way out.

Workers never import `bot` (the chat adapters' outboxes live there), so this is a small port of
its own: one Web API call (`chat.postMessage` through slack_sdk, or Discord's REST
`POST /channels/{id}/messages` through httpx), with the same care as the adapters about
mentions, since the digest quotes questions people typed: on Slack `&`, `<`, `>` are escaped (no
`<!channel>`, `<@U…>`) and `@here`/`@channel`/`@everyone` get a word joiner; on Discord
`allowed_mentions` parses nothing. The base URLs are the adapters' settings (`slack.api_url`,
`discord.api_base`), so the test emulators serve them too.

`channel_is_public` asks the same APIs whether everyone in the workspace or server may read a
channel: the digest quotes only questions asked in such channels (`feedback.gaps.digest_gaps`).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from config.settings import Settings

if TYPE_CHECKING:
    from feedback.gaps import ClusterView

log = logging.getLogger(__name__)
_BROADCAST = re.compile(r"(?<![\w@])@(?=(?:here|channel|everyone)\b)", re.I)
WORD_JOINER = "\u2060"
DISCORD_API = "https://discord.com/api/v10"
DISCORD_LIMIT = 2000
# Discord channel types everyone in a server may see unless a permission overwrite says otherwise:
# text, announcement, forum, media.
_DISCORD_OPEN_TYPES = {0, 5, 15, 16}
VIEW_CHANNEL = 1 << 10


def slack_escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + WORD_JOINER, text)


def _slack_url(url: str) -> str:
    return url.strip().replace(" ", "%20").replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def digest_message(platform: str, clusters: list[ClusterView], *, since: datetime, url: str | None) -> str:
    """The digest as the platform's text: a title, one line per gap, and the page's link."""
    quote = slack_escape if platform == "slack" else (lambda s: s.replace("`", "'"))
    lines = [f"Top new documentation gaps since {since:%Y-%m-%d} (questions Lore could not answer well):"]
    for c in clusters:
        questions = f"{c.count} question{'s' if c.count != 1 else ''}"
        if c.private:  # asked in DMs or private channels: how many, never what
            lines.append(f"{c.rank}. {questions} asked privately (the Gaps page has them)")
            continue
        label = " ".join(c.label.split())[:200]
        lines.append(f"{c.rank}. {quote(label)} ({questions})")
    if url:
        page = url.rstrip("/") + "/gaps"
        lines.append(
            f"<{_slack_url(page)}|Open the Gaps page>" if platform == "slack" else f"Gaps page: <{page}>"
        )
    else:
        lines.append("The Gaps page of Lore's console has the details.")
    return "\n".join(lines)


def _slack_client(settings: Settings) -> Any:
    from slack_sdk import WebClient

    token = settings.slack.bot_token
    if token is None:
        raise ValueError("the digest goes to Slack but slack.bot_token is not set")
    return WebClient(
        token=token.get_secret_value(), timeout=30, base_url=settings.slack.api_url or WebClient.BASE_URL
    )


def _discord(settings: Settings) -> tuple[str, dict[str, str]]:
    token = settings.discord.token
    if token is None:
        raise ValueError("the digest goes to Discord but discord.token is not set")
    base = (settings.discord.api_base or DISCORD_API).rstrip("/")
    return base, {"Authorization": f"Bot {token.get_secret_value()}"}


def post_message(settings: Settings, channel: str, text: str) -> None:
    """Post `text` (already in the platform's format) to `channel` ("slack:C…" or "discord:<id>")."""
    platform, _, target = channel.partition(":")
    if platform == "slack":
        _slack_client(settings).chat_postMessage(
            channel=target, text=text, unfurl_links=False, unfurl_media=False
        )
        return
    if platform == "discord":
        import httpx

        base, headers = _discord(settings)
        response = httpx.post(
            f"{base}/channels/{target}/messages",
            headers=headers,
            json={"content": text[:DISCORD_LIMIT], "allowed_mentions": {"parse": []}},
            timeout=30,
        )
        response.raise_for_status()
        return
    raise ValueError(f"not a digest channel: {channel!r}")


def channel_is_shared(settings: Settings, channel: str) -> bool:
    """Whether the digest's own channel ("slack:C…") is shared with another organisation (Slack
    Connect): then it quotes no question at all. Discord has no such channels. In doubt, shared."""
    platform, _, target = channel.partition(":")
    if platform != "slack":
        return False
    try:
        info = _slack_client(settings).conversations_info(channel=target)["channel"]
    except Exception as exc:
        log.warning("could not tell whether %s is shared with another organisation (%s)", channel, exc)
        return True
    return bool(info.get("is_ext_shared") or info.get("is_pending_ext_shared"))


def channel_is_public(settings: Settings, platform: str, channel: str) -> bool:
    """Whether everyone in the workspace (Slack) or server (Discord) may read `channel`: a Slack
    channel that is not private, a group DM, a DM or shared with another organisation; a Discord
    text, announcement or forum channel whose @everyone role is not denied View Channel. Any
    doubt (an error, a missing token, an unknown channel) is False: the digest then withholds
    that channel's questions."""
    try:
        if platform == "slack":
            info = _slack_client(settings).conversations_info(channel=channel)["channel"]
            closed = ("is_private", "is_im", "is_mpim", "is_ext_shared", "is_pending_ext_shared")
            return bool(info.get("is_channel")) and not any(info.get(flag) for flag in closed)
        if platform == "discord":
            import httpx

            base, headers = _discord(settings)
            response = httpx.get(f"{base}/channels/{channel}", headers=headers, timeout=30)
            response.raise_for_status()
            data = response.json()
            if data.get("type") not in _DISCORD_OPEN_TYPES or not data.get("guild_id"):
                return False
            everyone = str(data["guild_id"])  # the @everyone role has the server's id
            return not any(
                str(o.get("id")) == everyone and int(o.get("deny") or 0) & VIEW_CHANNEL
                for o in data.get("permission_overwrites") or []
            )
    except Exception as exc:
        log.warning(
            "could not tell whether %s channel %s is public (%s); treating it as private",
            platform,
            channel,
            exc,
        )
    return False
