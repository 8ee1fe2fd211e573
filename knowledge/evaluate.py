"""`lore eval`: retrieval and answer quality on a questions.jsonl set.

recall@k: the share of a question's expected documents found among its top-k chunks.
MRR: 1 / the rank of the first chunk from an expected document (0 if none in the top k).
Abstention: how often Lore says it can't find the answer, on not-in-corpus questions
(should be high) and on answerable ones (false abstention, should be low).
Fact hit rate: the share of expected facts that appear verbatim (case-insensitive) in the answer.
With `--answers` (a checker): citation validity, support and uncited claims of every answer that
did not abstain, and similarity to the ideal answer where a question has one
(`knowledge/answer_checks.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from knowledge.answer import Answer
from knowledge.answer_checks import AnswerCheck, AnswerChecker, ideal_similarity, summarize_checks

NOT_IN_CORPUS = "not-in-corpus"


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    question: str
    sources: list[str]
    facts: list[str]
    kind: str
    # not-in-corpus questions: the salient terms they ask about, which no document contains
    absent: list[str] = []
    # a reviewer's ideal answer (an edited review item): `--answers` measures similarity to it
    ideal: str | None = None


class EvalFileError(Exception):
    pass


def load_questions(path: Path) -> list[Question]:
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            questions.append(Question.model_validate_json(line))
        except ValidationError as exc:
            raise EvalFileError(
                f"{path}:{lineno}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from None
    if not questions:
        raise EvalFileError(f"{path}: no questions")
    return questions


def score(question: Question, answer: Answer, k: int) -> dict[str, Any]:
    ranked_paths = [c.path for c in answer.chunks[:k]]
    expected = set(question.sources)
    found = expected & set(ranked_paths)
    first = next((i for i, p in enumerate(ranked_paths, 1) if p in expected), None)
    facts_hit = [f for f in question.facts if f.lower() in answer.text.lower()]
    top_score = answer.chunks[0].score if answer.chunks else 0.0
    return {
        "id": question.id,
        "kind": question.kind,
        "answerable": question.kind != NOT_IN_CORPUS,
        "recall": len(found) / len(expected) if expected else None,
        "rr": 1.0 / first if first else 0.0,
        "abstained": answer.abstained,
        "top_score": top_score,
        # What abstention compares with the threshold (bench/abstention.py tabulates it).
        "confidence": answer.confidence if answer.confidence is not None else top_score,
        "signals": [[c.score, c.dense_score] for c in answer.chunks[:k]],
        "missing_terms": list(answer.missing_terms),
        "facts": len(question.facts),
        "facts_hit": len(facts_hit),
        "retrieved": ranked_paths,
    }


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    answerable = [r for r in rows if r["answerable"]]
    outside = [r for r in rows if not r["answerable"]]

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "questions": len(rows),
        "answerable": len(answerable),
        "not_in_corpus": len(outside),
        "recall_at_k": mean([r["recall"] for r in answerable if r["recall"] is not None]),
        "mrr": mean([r["rr"] for r in answerable]),
        "abstain_not_in_corpus": mean([1.0 if r["abstained"] else 0.0 for r in outside]),
        "false_abstain": mean([1.0 if r["abstained"] else 0.0 for r in answerable]),
        "fact_hit_rate": (
            round(sum(r["facts_hit"] for r in answerable) / n, 4)
            if (n := sum(r["facts"] for r in answerable))
            else None
        ),
    }


def run_eval(
    questions: list[Question],
    ask: Callable[[str, int], Answer],
    *,
    k: int,
    on_step: Callable[[], None] | None = None,
    checker: AnswerChecker | None = None,
) -> dict[str, Any]:
    """The report; with `checker`, also the answer checks (`knowledge/answer_checks.py`) under
    "answers", overall and by kind, and each question's under its "answer_checks"."""
    rows = []
    for q in questions:
        answer = ask(q.question, k)
        row = score(q, answer, k)
        if checker is not None:
            check = checker.check_answer(answer)
            row["answer_checks"] = check.as_dict() if check is not None else None
            row["answer_text"] = answer.text
        rows.append(row)
        if on_step:
            on_step()
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    report = {
        "k": k,
        "overall": summarize(rows),
        "by_kind": {kind: summarize(rs) for kind, rs in sorted(by_kind.items())},
        "per_question": rows,
    }
    if checker is not None:
        ideals = {q.id: q.ideal for q in questions if q.ideal}

        def answers(group: list[dict[str, Any]]) -> dict[str, Any]:
            base = summarize(group)
            checks = [
                AnswerCheck(**_fields(r["answer_checks"])) if r["answer_checks"] else None for r in group
            ]
            pairs = [(r["answer_text"], ideals[r["id"]]) for r in group if r["id"] in ideals]
            similarity = ideal_similarity(pairs, checker.model)
            return {
                **summarize_checks(checks),
                **{key: base[key] for key in ("fact_hit_rate", "abstain_not_in_corpus", "false_abstain")},
                "ideal": {key: similarity[key] for key in ("pairs", "token_f1", "cosine")},
            }

        report["answers"] = {
            "overall": answers(rows),
            "by_kind": {kind: answers(rs) for kind, rs in sorted(by_kind.items())},
        }
    return report


def _fields(check: dict[str, Any]) -> dict[str, Any]:
    """An `AnswerCheck`'s counts back from its dict (the sentences are not needed to add up)."""
    return {key: value for key, value in check.items() if key != "checked"}
