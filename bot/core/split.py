"""Split long Markdown into parts of at most `max_len` characters.

Cuts fall on paragraph boundaries first, then sentence ends, then spaces, and a hard cut only for
a single over-long word. Fenced code blocks (``` or ~~~) are kept whole when they fit in a part;
a code block longer than a part is cut between its lines, and each piece is closed and reopened
with the same fence, so every part is valid Markdown on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_LEN = 32  # room for a reopened fence plus some code
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?…:;])\s+")


@dataclass(frozen=True)
class _Block:
    text: str
    fence: str | None = None  # the opening fence line, for code blocks
    closed: bool = True


def split_text(text: str, max_len: int) -> list[str]:
    """`text` in parts of at most `max_len` characters; [] for blank text."""
    if max_len < MIN_LEN:
        raise ValueError(f"max_len must be at least {MIN_LEN}, got {max_len}")
    text = text.strip()
    if not text:
        return []
    if len(text) <= max_len:
        return [text]
    pieces: list[str] = []
    for block in _blocks(text):
        if len(block.text) <= max_len:
            pieces.append(block.text)
        elif block.fence is not None:
            pieces.extend(_split_code(block, max_len))
        else:
            pieces.extend(_split_prose(block.text, max_len))
    return _pack(pieces, max_len, "\n\n")


def _blocks(text: str) -> list[_Block]:
    """Paragraphs and fenced code blocks, in order (blank lines between paragraphs dropped)."""
    blocks: list[_Block] = []
    para: list[str] = []
    lines = text.split("\n")
    i = 0

    def flush() -> None:
        if para:
            blocks.append(_Block("\n".join(para)))
            para.clear()

    while i < len(lines):
        line = lines[i]
        opened = _FENCE.match(line)
        if opened:
            flush()
            marker = opened.group(1)
            j = i + 1
            while j < len(lines) and not _closes(lines[j], marker):
                j += 1
            closed = j < len(lines)
            blocks.append(_Block("\n".join(lines[i : j + 1]), fence=line.strip(), closed=closed))
            i = j + 1
            continue
        if line.strip():
            para.append(line)
        else:
            flush()
        i += 1
    flush()
    return blocks


def _closes(line: str, marker: str) -> bool:
    closing = _FENCE.match(line)
    return bool(
        closing
        and closing.group(1)[0] == marker[0]
        and len(closing.group(1)) >= len(marker)
        and not closing.group(2).strip()
    )


def _split_code(block: _Block, max_len: int) -> list[str]:
    assert block.fence is not None
    marker = _FENCE.match(block.fence)
    assert marker is not None
    close = marker.group(1)
    opener = block.fence if len(block.fence) + len(close) + 2 + 16 <= max_len else close
    body = block.text.split("\n")[1:]
    if block.closed:
        body = body[:-1]  # the closing fence (an unclosed block runs to the end; its parts get closed)
    room = max_len - len(opener) - len(close) - 2  # two newlines around the body
    chunks = _pack([p for line in body for p in _cut(line, room)], room, "\n", keep_empty=True)
    return [f"{opener}\n{chunk}\n{close}" for chunk in chunks]


def _split_prose(text: str, max_len: int) -> list[str]:
    """A paragraph: by lines (list items stay one per line), then sentences, then words."""
    pieces: list[str] = []
    for line in text.split("\n"):
        if len(line) <= max_len:
            pieces.append(line)
            continue
        sentences: list[str] = []
        for sentence in _SENTENCE_END.split(line):
            if len(sentence) <= max_len:
                sentences.append(sentence)
            else:
                words = [p for w in sentence.split() for p in _cut(w, max_len)]
                sentences.extend(_pack(words, max_len, " "))
        pieces.extend(_pack(sentences, max_len, " "))
    # Separators are all one character, so packing across lines with "\n" cannot merge what the
    # " " packing above left apart.
    return _pack(pieces, max_len, "\n")


def _cut(word: str, max_len: int) -> list[str]:
    """A hard cut, only for a single unbreakable run longer than a part."""
    return [word[i : i + max_len] for i in range(0, len(word), max_len)] or [word]


def _pack(pieces: list[str], max_len: int, sep: str, *, keep_empty: bool = False) -> list[str]:
    """Greedily join consecutive pieces with `sep` while they fit."""
    parts: list[str] = []
    current: str | None = None
    for piece in pieces:
        if not piece and not keep_empty:
            continue
        if current is None:
            current = piece
        elif len(current) + len(sep) + len(piece) <= max_len:
            current = current + sep + piece
        else:
            parts.append(current)
            current = piece
    if current is not None:
        parts.append(current)
    return [p for p in parts if keep_empty or p.strip()]
