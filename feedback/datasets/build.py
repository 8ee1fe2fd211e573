"""Reviewed answers -> training examples, per format.

- `sft`: approved items (the answer as given) and edited items (the reviewer's ideal answer).
- `dpo`: edited items: the reviewer's answer is preferred, the original (down-voted) one is not.
  Written in TRL's `prompt/chosen/rejected` and OpenAI's `input/preferred_output/
  non_preferred_output` shapes.
- `kto`: straight from the votes: the original answer, labelled desirable when it has more 👍
  than 👎 and undesirable when it has more 👎 (ties say nothing), unless a reviewer rejected it.

Every prompt is what the generator was sent for that answer (`prompt.prompt_messages`), and every
completion cites the sources by the numbers that prompt gives them (`prompt.to_prompt_numbers`).

An example is `restricted` when any chunk in its context was readable by fewer than everyone (an
access list other than exactly ["public"]; records from before permissions count as public):
training data outlives access rules, so the export leaves those out unless asked to keep them.

An example has `attachments` when its context holds passages of a file someone attached to the
question (`knowledge/attachments.py`): read for that one answer and never indexed, so no access
rule covers them and nobody reviewed them as documentation; the export leaves those out too
unless asked to keep them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from config.settings import DATASET_FORMATS, DatasetFormat
from feedback.datasets.prompt import prompt_messages, to_prompt_numbers
from feedback.reviews import CuratedItem
from knowledge.access import PUBLIC
from knowledge.attachments import SOURCE as ATTACHMENT_SOURCE

Format = DatasetFormat
FORMATS: tuple[Format, ...] = DATASET_FORMATS
_STATUS_RANK = {"edited": 3, "approved": 2, "new": 1, "rejected": 0}


@dataclass
class Example:
    """One item's records for one format (`records[shape]`, e.g. "dpo-trl" and "dpo-openai")."""

    answer_id: str
    question: str
    created_at: datetime
    sources: tuple[str, ...]
    records: dict[str, dict[str, Any]]
    rank: tuple[Any, ...]  # higher wins among duplicates
    partition: Hashable = None  # never merged across partitions (KTO: the label)
    redactions: Counter[str] = field(default_factory=Counter)
    restricted: bool = False  # some context chunk was not public (`is_restricted`)
    attachments: bool = False  # some context chunk came from an attached file (`has_attachments`)


def is_restricted(chunks: Sequence[dict[str, Any]]) -> bool:
    """Whether any stored chunk's access list is other than exactly ["public"]."""
    return any(list(c.get("access") or [PUBLIC]) != [PUBLIC] for c in chunks)


def has_attachments(chunks: Sequence[dict[str, Any]]) -> bool:
    """Whether any stored chunk is a passage of a file attached to the question."""
    return any(c.get("source") == ATTACHMENT_SOURCE for c in chunks)


def _assistant(text: str, item: CuratedItem) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": to_prompt_numbers(text.strip(), item.chunks)}]


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def build_examples(fmt: Format, items: Sequence[CuratedItem]) -> tuple[list[Example], Counter[str]]:
    """The examples `fmt` can use, and why the other items were left out (counted)."""
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    for item in items:
        if item.status == "rejected":
            skipped["rejected by a reviewer"] += 1
            continue
        prompt = prompt_messages(item.question, item.chunks, item.context)
        records: dict[str, dict[str, Any]] = {}
        partition: Hashable = None
        if fmt == "sft":
            if item.status == "edited" and item.ideal_answer:
                completion = item.ideal_answer
            elif item.status == "approved":
                completion = item.answer_text
            else:
                skipped["not approved or edited"] += 1
                continue
            records["sft"] = {"messages": [*prompt, *_assistant(completion, item)]}
        elif fmt == "dpo":
            if item.status != "edited" or not item.ideal_answer:
                skipped["not edited"] += 1
                continue
            if _same(item.ideal_answer, item.answer_text):
                skipped["edited answer same as the original"] += 1
                continue
            chosen, rejected = _assistant(item.ideal_answer, item), _assistant(item.answer_text, item)
            records["dpo-trl"] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            records["dpo-openai"] = {
                "input": {"messages": prompt, "tools": [], "parallel_tool_calls": False},
                "preferred_output": chosen,
                "non_preferred_output": rejected,
            }
        else:
            if item.up == item.down:
                skipped["no votes" if item.up == 0 else "tied votes"] += 1
                continue
            label = item.up > item.down
            records["kto"] = {
                "prompt": prompt,
                "completion": _assistant(item.answer_text, item),
                "label": label,
            }
            partition = label
        if not item.answer_text.strip() or not item.question.strip():
            skipped["empty question or answer"] += 1
            continue
        sources = tuple(dict.fromkeys(str(c.get("source")) for c in item.chunks if c.get("source")))
        rank = (_STATUS_RANK.get(item.status, 0), item.up + item.down, item.created_at, item.answer_id)
        examples.append(
            Example(
                item.answer_id,
                item.question,
                item.created_at,
                sources,
                records,
                rank,
                partition,
                restricted=is_restricted(item.chunks),
                attachments=has_attachments(item.chunks),
            )
        )
    return examples, skipped
