"""The corpus's own abbreviations, mined during sync and used to expand questions.

Documents define their abbreviations in parentheses: "paid time off (PTO)", "Multi-Factor
Authentication (MFA)", or the other way round, "MFA (multi-factor authentication)". The
Schwartz–Hearst rule accepts a pair when the short form's letters appear, in order, in the
long form, the first one starting a word ("customer-facing summary (RCA)" is rejected).

Each document's pairs are kept in the index's small state, per source and per document, so
an edited or deleted document takes its abbreviations with it. A question that says "PTO"
is searched as "PTO (paid time off)", and one that says "paid time off" gets "(PTO)", so
both the dense and the BM25 side see the words the documents use.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

_PAREN = re.compile(r"\(([^()\n]{2,80})\)")
_WORD = re.compile(r"[A-Za-z0-9][\w&./+-]*")
_SHORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9&.+-]{1,9}$")
_MARKUP = re.compile(r"[*`]+")  # Markdown emphasis and code around a definition


def _short_form(text: str) -> str | None:
    """`text` as an abbreviation key (upper case, plural s dropped), or None if it isn't one."""
    text = text.strip()
    if not _SHORT.match(text) or sum(c.isupper() for c in text) < 2 or not any(c.isalpha() for c in text):
        return None
    if text.endswith("s") and text[:-1].isupper():  # ADRs -> ADR
        text = text[:-1]
    return text.upper()


def _long_form(short: str, candidate: str) -> str | None:
    """Schwartz & Hearst (2003): the shortest end of `candidate` that spells `short`."""
    s, i = len(short) - 1, len(candidate) - 1
    while s >= 0:
        c = short[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        while i >= 0 and (candidate[i].lower() != c or (s == 0 and i > 0 and candidate[i - 1].isalnum())):
            i -= 1
        if i < 0:
            return None
        i -= 1
        s -= 1
    start = candidate.rfind(" ", 0, i + 1) + 1
    long = _MARKUP.sub("", candidate[start:]).strip(" ,;:-")
    words = long.split()
    if len(words) < 2 or len(words) > len(short) + 2 or short.lower() in long.lower().split():
        return None
    return long


def mine(text: str) -> dict[str, str]:
    """Abbreviation -> long form, as defined in `text`."""
    found: dict[str, str] = {}
    for match in _PAREN.finditer(text):
        inner = _MARKUP.sub("", match.group(1)).strip()
        before = _MARKUP.sub("", text[max(0, match.start() - 160) : match.start()]).rstrip()
        short = _short_form(inner)
        if short is not None:  # long form (SHORT)
            words = before.split()
            candidate = " ".join(words[-min(len(short) + 5, 2 * len(short)) :])
            long = _long_form(short, candidate)
        else:  # SHORT (long form)
            preceding = _WORD.findall(before[-12:])
            short = _short_form(preceding[-1]) if preceding and before.endswith(preceding[-1]) else None
            long = _long_form(short, inner) if short else None
            if long is not None and long != inner:  # the whole parenthesis must be the long form
                long = None
        if short and long:
            found.setdefault(short, long)
    return found


class Vocabulary:
    """Query expansion with the mined abbreviations of every source."""

    def __init__(self, per_document: Iterable[Mapping[str, str]], is_stopword: Callable[[str], bool]) -> None:
        votes: dict[str, Counter[str]] = {}
        for pairs in per_document:
            for short, long in pairs.items():
                votes.setdefault(short, Counter())[long.lower()] += 1
        self.abbreviations = {short: c.most_common(1)[0][0] for short, c in votes.items()}
        self._patterns = [
            (
                short,
                long,
                # An abbreviation that is also a common word ("IT", "ON") must be written in capitals.
                re.compile(rf"(?<![\w-]){re.escape(short)}s?(?![\w-])", 0 if is_stopword(short) else re.I),
                re.compile(rf"(?<![\w-]){re.escape(long)}(?![\w-])", re.I),
            )
            for short, long in sorted(self.abbreviations.items())
        ]

    def __len__(self) -> int:
        return len(self.abbreviations)

    def expand(self, query: str) -> str:
        additions = []
        folded = query.casefold()
        for short, long, short_re, long_re in self._patterns:
            # A plain substring test first: most abbreviations are in no query, and the two
            # regex searches per abbreviation added up to a millisecond on a large corpus.
            if short.casefold() not in folded and long.casefold() not in folded:
                continue
            has_short, has_long = short_re.search(query), long_re.search(query)
            if has_short and not has_long:
                additions.append(f"({long})")
            elif has_long and not has_short:
                additions.append(f"({short})")
        return f"{query} {' '.join(additions)}" if additions else query
