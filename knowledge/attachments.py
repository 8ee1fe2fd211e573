"""Files that came with a question, as passages for that one answer: split into passages, the
ones nearest the question kept and numbered like any source. They are never indexed; they are
labelled readable by everyone who saw the question (`public`), since the asker posted them there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from knowledge.answer import RetrievedChunk

PASSAGE_CHARS = 800
MAX_PASSAGES = 200  # of all files together: bounds the embedding work of one question
KEEP = 3  # passages given to the generator
SOURCE = "attachment"

_PARAGRAPH = re.compile(r"\n\s*\n")


def passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """The text in pieces of at most about `size` characters: lines joined up to `size`, a new
    piece at a blank line once the current one is half full (so a short paragraph keeps its
    neighbour's context, and a long one is not diluted by the next)."""
    out: list[str] = []
    current = ""
    for paragraph in _PARAGRAPH.split(text):
        if len(current) >= size // 2:
            out.append(current)
            current = ""
        for line in (p.strip() for p in paragraph.split("\n")):
            if not line:
                continue
            while len(line) > size:  # one long line: cut at a space
                cut = line.rfind(" ", 0, size)
                cut = cut if cut > size // 2 else size
                out.append(line[:cut].strip())
                line = line[cut:].strip()
            if current and len(current) + len(line) + 1 > size:
                out.append(current)
                current = ""
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return [p for p in out if p]


def attachment_chunks(
    question: str,
    files: Sequence[Mapping[str, str]],
    embed: Callable[[list[str]], np.ndarray],
    keep: int = KEEP,
) -> tuple[list[RetrievedChunk], float]:
    """(the `keep` passages of `files` nearest `question`, best first; the best cosine)."""
    found: list[tuple[int, int, str]] = []  # (file, passage, text)
    for f_i, f in enumerate(files):
        for p_i, text in enumerate(passages(str(f.get("text", "")))):
            found.append((f_i, p_i, text))
    found = found[:MAX_PASSAGES]
    if not found:
        return [], 0.0
    vectors = embed([question, *(t for _f, _p, t in found)])
    unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    scores = unit[1:] @ unit[0]
    order = np.argsort(-scores, kind="stable")[:keep]
    chunks = []
    for i in order:
        f_i, p_i, text = found[int(i)]
        f = files[f_i]
        name = str(f.get("name", "attachment"))
        score = round(float(scores[int(i)]), 4)
        chunks.append(
            RetrievedChunk(
                chunk_id=f"{SOURCE}:{f_i}:{p_i}",
                doc_id=f"{SOURCE}:{f_i}:{name}",
                source=SOURCE,
                path=name,
                title=name,
                url=str(f.get("url", "")),
                text=text,
                score=score,
                doc_hash="",
                dense_score=score,
                access=["public"],
            )
        )
    return chunks, float(scores[int(order[0])])
