"""Bounded thread context: the last N turns, trimmed from the oldest end to a token budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from knowledge.answer import Turn

# Roughly what subword tokenizers do: words, numbers and each punctuation mark count once, and
# long words count once per ~6 characters. Close enough for a budget; no model download needed.
_PIECE = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    return sum(max(1, (len(piece) + 5) // 6) for piece in _PIECE.findall(text))


def bounded_context(
    turns: Sequence[Turn],
    *,
    max_turns: int,
    max_tokens: int,
    count: Callable[[str], int] = approx_tokens,
) -> list[Turn]:
    """The most recent `max_turns` turns whose total fits `max_tokens`, oldest first.

    Whole turns are dropped from the old end. If even the newest turn alone is over budget, its
    beginning is kept (where a question's subject usually is) and marked with "…".
    """
    if max_turns <= 0 or max_tokens <= 0:
        return []
    recent = [t for t in turns if t.text.strip()][-max_turns:]
    kept: list[Turn] = []
    used = 0
    for turn in reversed(recent):
        cost = count(turn.text)
        if used + cost <= max_tokens:
            kept.append(turn)
            used += cost
            continue
        if not kept:
            kept.append(Turn(role=turn.role, text=_truncate(turn.text, max_tokens, count)))
        break
    kept.reverse()
    return kept


def _truncate(text: str, budget: int, count: Callable[[str], int]) -> str:
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:  # the longest prefix of words that fits, leaving one token for the ellipsis
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) + 1 <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]) + "…"
