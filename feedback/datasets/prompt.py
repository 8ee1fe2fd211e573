"""The prompt a training example shows the model: exactly the messages the generator was sent.

The feedback log keeps what went into the answer: the question as asked, the retrieved chunks in
retrieval order and the thread turns. The stored chunks are validated back into
`RetrievedChunk`s, numbered as the generator numbered them, and rendered by the generator's own
`knowledge.prompt.chat_messages`, so serving and training share one prompt.

Two numberings meet here. The model saw the sources numbered by document in retrieval order
(`number_by_document`); the answer people read (and reviewers edit) cites them renumbered 1..k in
order of first use, and the console numbers the uncited ones after those (`numbered_chunks`).
`to_prompt_numbers` rewrites an answer's citation markers into the prompt's numbers, so an
example's completion cites the sources as its prompt numbers them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from knowledge.answer import RetrievedChunk, Turn
from knowledge.prompt import chat_messages, number_by_document
from knowledge.query import prompt_question

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def numbered_chunks(chunks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The retrieved chunks as the console shows them, each with the number the answer uses for
    its document: cited documents keep their citation numbers; the others are numbered after
    them, one number per document, in retrieval order."""
    out = [dict(c) for c in chunks]
    by_doc: dict[str, int] = {}
    for c in out:
        if isinstance(c.get("n"), int):
            by_doc.setdefault(str(c.get("doc_id")), int(c["n"]))
    next_n = max(by_doc.values(), default=0)
    for c in out:
        doc = str(c.get("doc_id"))
        if doc not in by_doc:
            next_n += 1
            by_doc[doc] = next_n
        c["n"] = by_doc[doc]
    return out


def retrieved(chunks: Sequence[Mapping[str, Any]]) -> list[RetrievedChunk]:
    """The stored chunks as the generator had them: validated, numbered by document."""
    found = [RetrievedChunk.model_validate(c) for c in chunks]
    number_by_document(found)
    return found


def prompt_messages(
    question: str, chunks: Sequence[Mapping[str, Any]], context: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, str]]:
    """[system, user]: what the generator was sent for this question, chunks and thread turns."""
    turns = [Turn.model_validate(t) for t in context]
    return chat_messages(prompt_question(question), retrieved(chunks), turns)


def to_prompt_numbers(text: str, chunks: Sequence[Mapping[str, Any]]) -> str:
    """`text`'s citation markers ([2], [1, 3]), written in the console's numbers, in the prompt's."""
    console = {str(c.get("doc_id")): int(c["n"]) for c in numbered_chunks(chunks)}
    prompt = {c.doc_id: c.n for c in retrieved(chunks)}
    mapping = {n: prompt[doc] for doc, n in console.items() if prompt.get(doc) is not None}

    def replace(match: re.Match[str]) -> str:
        return re.sub(r"\d+", lambda m: str(mapping.get(int(m.group()), m.group())), match.group())

    return _MARKER.sub(replace, text)
