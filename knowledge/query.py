"""Chat-style questions into search queries: no mentions, no greetings, follow-ups given context."""

from __future__ import annotations

import re

from knowledge.answer import Turn

# Slack <@U123|name>, Discord <@123> / <@!123> / <@&role>, and a literal "@Lore".
_MENTION = re.compile(r"<@[!&]?[A-Za-z0-9]+(?:\|[^>]*)?>|(?<!\w)@lore\b", re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(?:(?:hey|hi|hello|yo|hiya|morning|good (?:morning|afternoon|evening))"
    r"(?:\s+(?:there|all|team|folks))?|lore)\s*[,!:.-]*\s*",
    re.IGNORECASE,
)
_FILLER = re.compile(r"^\s*(?:quick question|q|question|so|um+|uh+)\s*[:,-]\s*", re.IGNORECASE)
_ASKING = re.compile(r"^\s*(?:does\s+|do\s+)?any(?:one|body)\s+know\s+(?:if\s+|whether\s+)?", re.IGNORECASE)
_SIGN_OFF = re.compile(r"[\s,.!]*\b(?:thanks|thank you|thx|ty|tia|lol|pls|please)[\s!.]*$", re.IGNORECASE)
_FOLLOW_UP = re.compile(r"\b(it|that|this|they|them|those|these|there|same|also|too|what about|and)\b", re.I)


def normalize_question(text: str) -> str:
    text = _MENTION.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    for pattern in (_GREETING, _GREETING, _FILLER, _ASKING, _SIGN_OFF):  # "hey lore, quick q: …"
        text = pattern.sub("", text, count=1).strip()
    return text or ""


def prompt_question(question: str) -> str:
    """The question as the model is asked it: chat noise removed (or, if nothing is left, as typed)."""
    return normalize_question(question) or question.strip()


def retrieval_query(question: str, history: list[Turn]) -> str:
    """The text to search with. A short follow-up borrows the previous question's words."""
    earlier = [t.text for t in history if t.role == "user"]
    if earlier and (len(question.split()) <= 8 or _FOLLOW_UP.search(question)):
        return f"{normalize_question(earlier[-1])} {question}"
    return question
