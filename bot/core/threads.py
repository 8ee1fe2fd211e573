"""Mentioned in the middle of a thread Lore never joined: answer the thread's question.

The thread is read from its start (the surface's `ThreadReader`). Its opening message is what
the thread is about, and the mention is often only "@Lore any idea?" or "@Lore what about on
Windows?". So the question Lore answers is the opening question joined with the mention's text,
unless the mention asks something complete of its own. That one text is what both the retrieval
and the generator see: the extractive generator scores sentences against the question alone (it
never reads the history), and an LLM gets the joined question plus the thread as context-only
turns (fenced as data by `knowledge.prompt`). The opening is cut to a share of
`chat.context_tokens`, so a long first post cannot crowd out the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.context import bounded_context
from knowledge.answer import Turn
from knowledge.query import normalize_question

# Words by which a mention leans on the thread rather than asking something on its own.
_LEANS = re.compile(
    r"\b(?:it|that|this|they|them|those|these|there|same|also|too|above|here|thread|question|"
    r"help|answer|idea|ideas|know|thoughts|what about|and|any)\b",
    re.IGNORECASE,
)
# A mention made only of these words asks for an answer but adds nothing to the question.
_ASKING_WORDS = frozenset(
    [
        "a",
        "an",
        "any",
        "anyone",
        "anybody",
        "answer",
        "can",
        "could",
        "do",
        "does",
        "you",
        "know",
        "idea",
        "ideas",
        "thoughts",
        "help",
        "here",
        "please",
        "pls",
        "the",
        "this",
        "that",
        "above",
        "question",
        "thread",
        "us",
        "me",
        "with",
        "on",
        "for",
        "is",
        "there",
    ]
)
STANDALONE_WORDS = 9  # a mention at least this long that leans on nothing stands alone


@dataclass(frozen=True)
class Joined:
    question: str  # what Lore answers: the opening question, joined with the mention's text
    opening: str  # the thread's opening message, as used ("" if the thread had none)


def opening_turn(turns: Sequence[Turn]) -> Turn | None:
    """The thread's first message when a person wrote it (Lore's own would mean it was there)."""
    first = next((t for t in turns if t.text.strip()), None)
    return first if first is not None and first.role == "user" else None


def stands_alone(mention: str) -> bool:
    """Whether the mention's text is a complete question that needs no thread."""
    clean = normalize_question(mention)
    return len(clean.split()) >= STANDALONE_WORDS and not _LEANS.search(clean)


def join_thread(mention: str, turns: Sequence[Turn], *, max_tokens: int) -> Joined:
    """The question for a mention in a thread whose earlier messages are `turns` (oldest first)."""
    first = opening_turn(turns)
    if first is None or stands_alone(mention):
        return Joined(mention, "")
    budget = max(16, max_tokens // 2)
    opening = bounded_context([first], max_turns=1, max_tokens=budget)
    text = normalize_question(opening[0].text) if opening else ""
    if not text:
        return Joined(mention, "")
    rest = normalize_question(mention)
    if not set(re.findall(r"[a-z']+", rest.lower())) - _ASKING_WORDS:  # "any idea?", "can you help?"
        return Joined(text, text)
    sep = " " if text.endswith((".", "?", "!")) else ". "
    return Joined(f"{text}{sep}{rest}", text)
