"""Posting one message to a Slack or Discord channel from a worker: the gap digest's only way out.

Workers never import `bot` (the chat adapters' outboxes live there), so this is a small port of
its own: one Web API call (`chat.postMessage` through slack_sdk, or Discord's REST
`POST /channels/{id}/messages` through httpx), with the same care as the adapters about
mentions, since the digest quotes questions people typed: on Slack `&`, `<`, `>` are escaped (no
`<!channel>`, `<@U…>`) and `@here`/`@channel`/`@everyone` get a word joiner; on Discord
`allowed_mentions` parses nothing. The base URLs are the adapters' settings (`slack.api_url`,
`discord.api_base`), so the test emulators serve them too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

from config.settings import Settings

if TYPE_CHECKING:
    from feedback.gaps import ClusterView

_BROADCAST = re.compile(r"(?<![\w@])@(?=(?:here|channel|everyone)\b)", re.I)
WORD_JOINER = "\u2060"
DISCORD_API = "https://discord.com/api/v10"
DISCORD_LIMIT = 2000


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
        label = " ".join(c.label.split())[:200]
        lines.append(f"{c.rank}. {quote(label)} ({c.count} question{'s' if c.count != 1 else ''})")
    if url:
        page = url.rstrip("/") + "/gaps"
        lines.append(
            f"<{_slack_url(page)}|Open the Gaps page>" if platform == "slack" else f"Gaps page: <{page}>"
        )
    else:
        lines.append("The Gaps page of Lore's console has the details.")
    return "\n".join(lines)


def post_message(settings: Settings, channel: str, text: str) -> None:
    """Post `text` (already in the platform's format) to `channel` ("slack:C…" or "discord:<id>")."""
    platform, _, target = channel.partition(":")
    if platform == "slack":
        from slack_sdk import WebClient

        token = settings.slack.bot_token
        if token is None:
            raise ValueError("the digest goes to Slack but slack.bot_token is not set")
        client = WebClient(
            token=token.get_secret_value(), timeout=30, base_url=settings.slack.api_url or WebClient.BASE_URL
        )
        client.chat_postMessage(channel=target, text=text, unfurl_links=False, unfurl_media=False)
        return
    if platform == "discord":
        import httpx

        token = settings.discord.token
        if token is None:
            raise ValueError("the digest goes to Discord but discord.token is not set")
        base = (settings.discord.api_base or DISCORD_API).rstrip("/")
        response = httpx.post(
            f"{base}/channels/{target}/messages",
            headers={"Authorization": f"Bot {token.get_secret_value()}"},
            json={"content": text[:DISCORD_LIMIT], "allowed_mentions": {"parse": []}},
            timeout=30,
        )
        response.raise_for_status()
        return
    raise ValueError(f"not a digest channel: {channel!r}")
