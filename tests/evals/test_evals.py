"""The eval sets run in the suite with thresholds a little below the achieved figures
(BENCHMARKS.md, "Retrieval quality and speed"), so a retrieval regression fails CI.

The handbook is indexed once per session with the default settings (hybrid retrieval on Qdrant
Edge, ONNX embeddings), through the real sync. The Python docs and the three Debian manuals
(bench/evalsets: postfix, git, sqlite) are indexed once per machine into the eval-index cache
(bench/evalcache.py, ~/.cache/lore/evals), rebuilt only when the corpus, an index-time setting
or the reader/chunker code changes; each run answers from a private copy of it. Every set is
answered through the full answer path (extractive generator); the dense-only figures come from
the same index, so "hybrid beats dense" is checked too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.evalcache import EVAL_SETS, open_eval
from knowledge.evaluate import Question, load_questions, run_eval
from knowledge.query import normalize_question
from knowledge.service import Knowledge
from tests.conftest import HANDBOOK

# Indexing the Python docs (~5.4k chunks) is model-bound: minutes on two busy cores.
pytestmark = [pytest.mark.eval, pytest.mark.slow, pytest.mark.timeout(1800)]


def evaluate(kn: Knowledge, questions: list[Question]) -> dict[str, Any]:
    return dict(run_eval(questions, lambda q, k: kn.answer(q, top_k=k), k=5)["overall"])


def dense_mrr(kn: Knowledge, questions: list[Question]) -> float:
    ranks = []
    for q in questions:
        if q.kind == "not-in-corpus":
            continue
        question = normalize_question(q.question) or q.question  # as the answer path does
        paths = [c.path for c in kn.engine.search(question, top_k=5, mode="dense")]
        first = next((i for i, p in enumerate(paths, 1) if p in q.sources), None)
        ranks.append(1 / first if first else 0.0)
    return sum(ranks) / len(ranks)


def run_set(settings: Any, embedder: Any, source: str, questions_file: Path) -> Iterator[dict[str, Any]]:
    kn = Knowledge(settings, embedder=embedder)
    try:
        assert kn.sync(source).error is None
        questions = load_questions(questions_file)
        result = evaluate(kn, questions)
        result["dense_mrr"] = dense_mrr(kn, questions)
        yield result
    finally:
        kn.close()


@pytest.fixture(scope="module")
def handbook(embedder, tmp_path_factory) -> Iterator[dict[str, Any]]:
    from config.settings import Settings

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("handbook-eval"),
        sources=[{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}],
        llm={"provider": "extractive"},
    )
    yield from run_set(settings, embedder, "handbook", HANDBOOK / "questions.jsonl")


@pytest.fixture(scope="module")
def pydocs(embedder) -> Iterator[dict[str, Any]]:
    yield from cached_set("pydocs", embedder, dense=True)


def cached_set(name: str, embedder: Any, *, dense: bool = False) -> Iterator[dict[str, Any]]:
    evalset = EVAL_SETS[name]
    problem = evalset.missing_corpus()
    assert problem is None, problem
    with open_eval(name, embedder) as kn:
        questions = load_questions(evalset.questions)
        result = evaluate(kn, questions)
        if dense:
            result["dense_mrr"] = dense_mrr(kn, questions)
        yield result


@pytest.fixture(scope="module")
def postfix(embedder) -> Iterator[dict[str, Any]]:
    yield from cached_set("postfix", embedder)


@pytest.fixture(scope="module")
def git(embedder) -> Iterator[dict[str, Any]]:
    yield from cached_set("git", embedder)


@pytest.fixture(scope="module")
def sqlite(embedder) -> Iterator[dict[str, Any]]:
    yield from cached_set("sqlite", embedder)


def test_handbook_eval(handbook):
    # Achieved: recall@5 1.000, MRR 0.925; abstains on 9/11, falsely on 5/80 ("CVE" reads as a
    # name the handbook never mentions; "NYC" did too until spelt-out acronyms counted).
    assert handbook["recall_at_k"] >= 0.97, handbook
    assert handbook["mrr"] >= 0.92, handbook
    assert handbook["mrr"] > handbook["dense_mrr"], handbook
    assert handbook["abstain_not_in_corpus"] >= 0.80, handbook
    assert handbook["false_abstain"] <= 0.07, handbook
    # Extractive answers (bench/extractive.py): 0.746 of the expected facts quoted with two more
    # chunks of the best page (`context_chunks`; 0.658 without, 0.56 before whole rows with
    # their header, whole list items and how-to passages).
    assert handbook["fact_hit_rate"] >= 0.72, handbook


def test_python_docs_eval(pydocs):
    # Achieved: recall@5 0.903, MRR 0.842; abstains on 5/7, falsely on 1/77 (before issue 17:
    # 0.870, 0.827, 6/7, 0/77; 5/7 already on a fresh install before this work).
    assert pydocs["recall_at_k"] >= 0.88, pydocs
    assert pydocs["mrr"] >= 0.82, pydocs
    assert pydocs["mrr"] > pydocs["dense_mrr"], pydocs
    assert pydocs["abstain_not_in_corpus"] >= 0.70, pydocs
    assert pydocs["false_abstain"] <= 0.03, pydocs


def test_abstention_over_both_sets(handbook, pydocs):
    # The target: at least 5 of 6 not-in-corpus questions, at most 5% false abstention.
    # Achieved: 14/18 (short of the target by one question) and 7/157.
    # The reports round rates to 4 places: count questions, not fractions of them.
    def count(rate: float, n: int) -> int:
        return round(rate * n)

    outside = handbook["not_in_corpus"] + pydocs["not_in_corpus"]
    answerable = handbook["answerable"] + pydocs["answerable"]
    abstained = count(handbook["abstain_not_in_corpus"], handbook["not_in_corpus"])
    abstained += count(pydocs["abstain_not_in_corpus"], pydocs["not_in_corpus"])
    false = count(handbook["false_abstain"], handbook["answerable"])
    false += count(pydocs["false_abstain"], pydocs["answerable"])
    assert abstained >= 14, (abstained, outside)
    assert false / answerable <= 0.05, (false, answerable)


# The three manuals: retrieval only (abstention there is issue 17's abstention work).


def test_postfix_eval(postfix):
    # Achieved: recall@5 0.895, MRR 0.782 (before issue 17: 0.866, 0.748).
    assert postfix["recall_at_k"] >= 0.87, postfix
    assert postfix["mrr"] >= 0.76, postfix


def test_git_eval(git):
    # Achieved: recall@5 0.859, MRR 0.780 (before: 0.794, 0.687).
    assert git["recall_at_k"] >= 0.84, git
    assert git["mrr"] >= 0.76, git


def test_sqlite_eval(sqlite):
    # Achieved: recall@5 0.867, MRR 0.766 (before: 0.750, 0.622).
    assert sqlite["recall_at_k"] >= 0.84, sqlite
    assert sqlite["mrr"] >= 0.74, sqlite
