"""Shared checks for the "Ask an expert" round trips (Slack and Discord): the expert answer in the
review queue under its filter, approved in the console's way, and exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feedback.datasets.export import export_dataset
from feedback.experts import approve_expert_answer, expert_answers, relevance_signals
from feedback.reviews import QueueFilters, get_state, review_queue


def queued(db: Any, answer_id: str, expert: str) -> bool:
    page = review_queue(db.sessions, QueueFilters.parse({"expert": expert}))
    return answer_id in [r.answer_id for r in page.rows]


def lines(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def approve_and_export(db: Any, settings: Any, answer_id: str, expert_text: str, original: str) -> None:
    """Approve the expert answer whose text is `expert_text`; then the SFT completion is that text,
    the DPO pair prefers it over Lore's `original` answer, and retriever tuning sees it."""
    [reply] = [e for e in expert_answers(db.sessions, answer_id) if e.text == expert_text]
    version = get_state(db.sessions, answer_id).version
    state = approve_expert_answer(
        db.sessions, answer_id, reply.reply_id, reviewer="rita", expected_version=version
    )
    assert (state.status, state.ideal_answer) == ("edited", expert_text) and "expert" in state.tags

    sft = lines(export_dataset(db.sessions, "sft", settings, include_restricted=True).directory)
    [example] = [r for r in sft if r["messages"][-1]["content"] == expert_text]
    assert example["messages"][-1]["role"] == "assistant"
    dpo = lines(export_dataset(db.sessions, "dpo", settings, include_restricted=True).directory)
    chosen = [r for r in dpo if "chosen" in r and r["chosen"][0]["content"] == expert_text]
    assert chosen and chosen[0]["rejected"][0]["content"].split()[:3] == original.split()[:3]
    [signal] = [s for s in relevance_signals(db.sessions) if s.answer_id == answer_id]
    assert signal.expert_answer == expert_text and signal.question
