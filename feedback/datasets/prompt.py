"""The prompt a training example shows the model: the rules, the retrieved sources (numbered as
the answer cites them), the conversation so far, and the question.

It has the shape of Lore's own answer prompt (`knowledge/prompt.py`): a system message with the
rules and a user message that fences the sources as data, so a model tuned on these examples
learns to answer from the context it is given, with citations, or to abstain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The same rules and the same fencing as the answer prompt, so tuning teaches what Lore asks.
from knowledge.prompt import SYSTEM
from knowledge.prompt import fence as _fence


def numbered_chunks(chunks: Sequence[Mapping[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """The retrieved chunks, each with the number the answer uses for its document.

    Cited documents keep their citation numbers; the others are numbered after them, one number
    per document, in retrieval order. The console shows the same numbers, so a reviewer's ideal
    answer can cite [n] exactly as the exported prompt does."""
    out: list[dict[str, Any]] = []
    for c in chunks:  # every cited chunk, plus uncited ones up to `limit` in all
        if isinstance(c.get("n"), int) or limit is None or len(out) < limit:
            out.append(dict(c))
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


def sources_block(chunks: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for c in chunks:
        title = _fence(str(c.get("title") or c.get("path") or ""))
        heading = str(c.get("heading") or "")
        section = f"\nsection: {_fence(heading)}" if heading and heading != c.get("title") else ""
        text = _fence(str(c.get("text", "")).strip())
        parts.append(f'<source id="{c["n"]}">\ntitle: {title}{section}\n\n{text}\n</source>')
    return "<sources>\n" + "\n\n".join(parts) + "\n</sources>"


def prompt_messages(
    question: str,
    chunks: Sequence[Mapping[str, Any]],
    context: Sequence[Mapping[str, Any]] = (),
    *,
    limit: int | None = None,
) -> list[dict[str, str]]:
    """[system, user]: the rules, then the sources, the conversation and the question."""
    numbered = numbered_chunks(chunks, limit)
    convo = ""
    turns = [t for t in context if str(t.get("text", "")).strip()]
    if turns:
        lines = "\n".join(f"{t.get('role', 'user')}: {_fence(str(t['text']))}" for t in turns)
        convo = f"\nEarlier in this conversation (context only):\n{lines}\n"
    user = f"{sources_block(numbered)}\n{convo}\nQuestion: {question.strip()}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
