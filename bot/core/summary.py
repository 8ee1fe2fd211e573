""" "Summarize this thread": read the thread from its start (up to `chat.summary_tokens`), have
the index owner summarize it (`knowledge/summarize.py`: an LLM, or key messages by centrality),
and write the summary as the core's Markdown: how many messages it read, and links to the key
messages (Slack permalinks, Discord jump URLs; the adapter's `ThreadPosts` makes them).

The summary goes to the person who asked, ephemerally: it quotes a thread they can read, it is
for them, and posting it would drop a bot's reading of a conversation into that conversation,
where everyone would be notified and nobody asked for it. They can copy it into the thread.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bot.core.context import approx_tokens
from knowledge.summarize import ThreadSummary

T = TypeVar("T")
Summarizer = Callable[..., ThreadSummary]  # Knowledge.summarize(texts, key_count=…)
RunBlocking = Callable[..., Awaitable[Any]]

NOTHING = "There is nothing in this thread to summarize yet."
CANNOT_READ = "I can't read this thread: add Lore to the channel, then try again."


class ThreadUnreadable(Exception):
    """The platform will not let Lore read the thread (not a member, no permission)."""


_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass(frozen=True)
class ThreadPost:
    """One message of a thread, as a summary needs it."""

    id: str  # Slack ts, Discord message id
    text: str


class ThreadPosts(Protocol):
    """The adapter's reading of a whole thread (its `ThreadReader` gives turns, without ids)."""

    async def posts(self, channel: str, thread: str) -> list[ThreadPost]:
        """The thread's messages, oldest first, its opening message included; `ThreadUnreadable`
        when Lore may not read them."""
        ...

    async def link(self, channel: str, thread: str, post_id: str) -> str:
        """A URL that opens the message (a permalink or a jump URL)."""
        ...


def from_start(posts: Sequence[ThreadPost], max_tokens: int) -> list[ThreadPost]:
    """The thread's messages from its start, as many as fit `max_tokens`."""
    kept: list[ThreadPost] = []
    used = 0
    for post in posts:
        cost = approx_tokens(post.text)
        if kept and used + cost > max_tokens:
            break
        kept.append(post)
        used += cost
    return kept


def summary_markdown(summary: ThreadSummary, links: dict[int, str], total: int) -> str:
    """The summary with its [n] markers linked to the key messages, the count of messages read,
    and a line of links to the key messages."""

    def marker(m: re.Match[str]) -> str:
        out = []
        for raw in m.group(1).split(","):
            n = int(raw)
            url = links.get(n - 1)
            out.append(f"[#{n}]({url})" if url else f"#{n}")
        return "(" + ", ".join(out) + ")"

    read = f"{summary.read} message{'s' if summary.read != 1 else ''}"
    if total > summary.read:
        read += f" (the first {summary.read} of {total})"
    how = "key messages, picked without a language model" if summary.model == "extractive" else "summary"
    lines = [f"**Thread {how}**, from {read}:", "", _MARKER.sub(marker, summary.text)]
    if links:
        key = ", ".join(f"[#{i + 1}]({url})" for i, url in sorted(links.items()))
        lines += ["", f"Key messages: {key}"]
    return "\n".join(lines)


async def summarize_thread(
    channel: str,
    thread: str,
    reader: ThreadPosts,
    summarizer: Summarizer,
    run_blocking: RunBlocking,
    *,
    max_tokens: int,
    key_count: int,
) -> str:
    """The Markdown summary of a thread (`NOTHING` for an empty one)."""
    posts = [p for p in await reader.posts(channel, thread) if p.text.strip()]
    read = from_start(posts, max_tokens)
    if not read:
        return NOTHING
    summary: ThreadSummary = await run_blocking(
        functools.partial(summarizer, [p.text for p in read], key_count=key_count)
    )
    links = {i: await reader.link(channel, thread, read[i].id) for i in summary.key if i < len(read)}
    return summary_markdown(summary, {i: u for i, u in links.items() if u}, len(posts))
