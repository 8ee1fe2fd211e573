"""A whole retriever-tuning run (`workers/tuning.py`) on real parts: reviewers' judgments in a real
feedback database, real training of MiniLM for a few steps, the gate, a real promotion and
rollback; a refused candidate; and a run killed mid-training.

The hard case is the Kestrel one of tests/knowledge/test_tuning.py: the company calls its expense
tool "Kestrel", only reviewers' judgments say so, and the shipped model sends Kestrel questions to
the insurance page's claims.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from feedback.db import Database
from feedback.judgments import Passage, record_judgment
from feedback.schema import InteractionRecord
from feedback.store import record_interaction
from knowledge.answer import Answer
from knowledge.service import Knowledge
from knowledge.tuning import registry
from tests.conftest import write
from tests.knowledge.test_tuning import DOCS, EVAL, KESTREL_HELD_OUT, KESTREL_TRAIN
from workers.ports import TuneRequest
from workers.tuning import tune_retriever

EXPENSES, INSURANCE = "finance/expenses.md", "benefits/insurance.md"
CONTRACT = {"run_id", "method", "pairs", "before", "after", "gate", "promoted", "model", "seconds"}


def settings_for(root: Path, **tuning: Any) -> Settings:
    evals = root / "evals.jsonl"
    evals.write_text("".join(q.model_dump_json() + "\n" for q in EVAL), encoding="utf-8")
    return Settings(
        data_dir=root / "data",
        sources=[{"name": "handbook", "type": "directory", "path": str(root / "docs")}],
        llm={"provider": "extractive"},
        index={"engine": "qdrant-local"},
        database={"url": f"sqlite:///{root / 'feedback.sqlite3'}"},
        evals=[{"name": "handbook", "path": str(evals)}],
        tuning={
            "synthetic": 30,
            "max_minutes": 5,
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 2e-4,
            **tuning,
        },
    )


@pytest.fixture
def handbook(tmp_path: Path, embedder: Any) -> Iterator[tuple[Settings, Knowledge, Database]]:
    for rel, text in DOCS.items():
        write(tmp_path / "docs", rel, text)
    settings = settings_for(tmp_path)
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("handbook").error is None
    db = Database.from_settings(settings)
    db.ensure_schema()
    yield settings, kn, db
    kn.close()
    db.dispose()


def judge_everything(kn: Knowledge, db: Database, questions: list[str], right: str, wrong: str) -> None:
    """A reviewer's work on each question's answer: `right`'s chunk answers it (attached when it
    was not retrieved), `wrong`'s chunk does not (when it was retrieved)."""
    for i, question in enumerate(questions):
        chunks = kn.search(question, top_k=5)
        answer = Answer(
            answer_id=f"a{i}", question=question, text="…", abstained=False, model="extractive",
            prompt_version="v3", chunks=chunks, citations=[],
        )  # fmt: skip
        record_interaction(
            db.sessions,
            InteractionRecord(answer=answer, correlation_id="c", platform="slack", user_hash="u_1"),
        )
        for path, relevant in ((right, True), (wrong, False)):
            found = [c for c in chunks if c.path == path]
            if not found and not relevant:
                continue  # only what was retrieved is judged not relevant
            origin = "retrieved" if found else "attached"
            chunk = found[0] if found else next(c for c in kn.search(path, top_k=20) if c.path == path)
            passage = Passage.of(chunk.model_dump())
            record_judgment(
                db.sessions,
                f"a{i}",
                passage,
                relevant=relevant,
                origin=origin,
                reviewer="rex",  # type: ignore[arg-type]
            )


def top(kn: Knowledge, question: str) -> str:
    return kn.search(question, top_k=1)[0].path


def test_judgments_teach_the_code_name_and_the_winner_serves_until_rolled_back(handbook) -> None:
    settings, kn, db = handbook
    assert sum(top(kn, q) == EXPENSES for q in KESTREL_HELD_OUT) <= 2  # the shipped model misses it
    judge_everything(kn, db, KESTREL_TRAIN + KESTREL_HELD_OUT, EXPENSES, INSURANCE)

    steps: list[str] = []
    body = tune_retriever(
        settings, kn, db.sessions, TuneRequest(method="full", synthetic=30, max_minutes=5), step=steps.append
    )
    assert set(body) == CONTRACT
    assert body["pairs"]["judged"] > 0 and set(body["pairs"]) == {
        "judged",
        "imported",
        "curated",
        "synthetic",
    }
    assert set(body["before"]) == {"held-out", "handbook", "synthetic"} == set(body["after"])
    assert body["gate"]["passed"], body["gate"]["reasons"]
    assert body["promoted"] and body["model"] == body["run_id"]
    assert any(s.startswith("promoting") for s in steps)

    # The next question is answered by the promoted model, through its own collection.
    assert registry.serving_id(settings) == body["model"]
    assert kn.view.model == body["model"]
    assert sum(top(kn, q) == EXPENSES for q in KESTREL_HELD_OUT) >= 5
    record = registry.load(settings, body["model"])
    assert record.status == "serving" and record.abstain_below is not None and record.pairs == body["pairs"]

    from knowledge.tuning.promotion import rollback

    rollback(settings, embedder=kn.embedder)
    kn.follow(force=True)
    assert kn.view.model == registry.BASE
    assert sum(top(kn, q) == EXPENSES for q in KESTREL_HELD_OUT) <= 2


def test_a_candidate_that_loses_on_an_eval_set_is_refused_and_the_current_model_stays(handbook) -> None:
    """Reviewers' judgments gone wrong: every eval question's topic is "answered" by the parking page."""
    settings, kn, db = handbook
    wrong = [q.question for q in EVAL if q.sources] * 3
    paraphrases = [f"{q} (asking for a colleague {n})" for n, q in enumerate(wrong)]
    judge_everything(kn, db, paraphrases, "travel/booking.md", "hr/leave.md")
    before = {q.question: top(kn, q.question) for q in EVAL if q.sources}

    body = tune_retriever(
        settings, kn, db.sessions, TuneRequest(method="adapter", synthetic=0, max_minutes=5, promote="auto")
    )
    assert not body["gate"]["passed"] and not body["promoted"]
    assert any(r.startswith("refused") for r in body["gate"]["reasons"])
    assert registry.serving_id(settings) == registry.BASE
    assert registry.load(settings, body["model"]).status == "refused"  # kept for inspection
    kn.follow(force=True)
    assert {q: top(kn, q) for q in before} == before


def test_a_run_killed_during_training_leaves_the_current_model_and_the_next_run_works(
    tmp_path: Path, embedder: Any
) -> None:
    for rel, text in DOCS.items():
        write(tmp_path / "docs", rel, text)
    settings = settings_for(tmp_path)
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("handbook").error is None
    kn.close()  # the CLI below owns the embedded index while it runs
    toml = tmp_path / "lore.toml"
    toml.write_text(
        f'data_dir = "{settings.data_dir}"\n'
        f'[[sources]]\nname = "handbook"\ntype = "directory"\npath = "{tmp_path / "docs"}"\n'
        '[llm]\nprovider = "extractive"\n[index]\nengine = "qdrant-local"\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "feedback.sqlite3"}"\n'
        # A few pairs make one step an epoch: many epochs keep the kill below inside training
        # however fast the machine (one epoch once ended, and the gate refused, within 3 s).
        "[tuning]\nepochs = 500\n",
        encoding="utf-8",
    )
    env = {**os.environ, "LORE_CONFIG": str(toml)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "tune", "retriever", "--method", "full", "--synthetic", "400",
         "--max-minutes", "30", "--promote", "auto"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("training (full)" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.2)
        time.sleep(3)  # inside the training loop
        assert proc.poll() is None, "".join(lines)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert registry.serving_id(settings) == registry.BASE
    [killed] = registry.runs(settings)
    assert killed.status == "candidate" and not killed.gate.reasons

    kn = Knowledge(settings, embedder=embedder)
    db = Database.from_settings(settings)
    try:
        db.ensure_schema()
        body = tune_retriever(
            settings,
            kn,
            db.sessions,
            TuneRequest(method="adapter", synthetic=20, max_minutes=1, promote="never"),
        )
        assert set(body) == CONTRACT and not body["promoted"]
        assert registry.load(settings, killed.id).status == "refused"
        assert "interrupted" in registry.load(settings, killed.id).gate.reasons[-1]
        assert top(kn, "how many days of paid leave do we get?") == "hr/leave.md"
    finally:
        kn.close()
        db.dispose()


def test_status_lists_the_runs_as_json(handbook, tmp_path: Path) -> None:
    settings = handbook[0]
    record = registry.create_run(settings, "adapter")
    from typer.testing import CliRunner

    from bot.cli import app

    toml = tmp_path / "status.toml"
    toml.write_text(f'data_dir = "{settings.data_dir}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(toml), "tune", "status", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["serving"] == registry.BASE and [r["id"] for r in body["runs"]] == [record.id]
