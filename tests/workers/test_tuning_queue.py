"""`lore.tune_retriever` on the `train` queue: a real Celery worker runs a (tiny) tuning run on the
index it owns, reports its steps as the task's state, and returns the `lore tune --json` body."""

from __future__ import annotations

from typing import Any

from knowledge.service import Knowledge
from knowledge.tuning import registry
from tests.conftest import write
from tests.knowledge.test_tuning import DOCS
from tests.workers.test_tuning_run import CONTRACT
from workers.client import request_tuning
from workers.ports import TuneRequest


def test_a_tuning_run_on_the_train_queue_reports_its_steps_and_its_result(stack, start_worker, embedder: Any):
    for rel, text in DOCS.items():
        write(stack.tmp / "docs", rel, text)
    stack.overrides["sources"] = [{"name": "handbook", "type": "directory", "path": str(stack.tmp / "docs")}]
    stack.overrides["index"] = {"engine": "qdrant-local"}
    stack.overrides["database"] = {"url": f"sqlite:///{stack.tmp / 'feedback.sqlite3'}"}
    settings = stack.settings()
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("handbook").error is None
    kn.close()  # the worker owns the embedded index from here on
    start_worker("train")

    steps: list[str] = []
    request = TuneRequest(method="adapter", synthetic=20, max_minutes=1, promote="never", requested_by="test")
    body = request_tuning(settings, request, on_step=steps.append, poll=0.2)
    assert set(body) == CONTRACT and body["method"] == "adapter" and not body["promoted"]
    assert body["pairs"]["synthetic"] > 0
    assert any(s.startswith("training (adapter)") for s in steps), steps
    record = registry.load(settings, body["run_id"])
    assert record.extra["requested_by"] == "test" and record.status in ("candidate", "refused")
    assert registry.serving_id(settings) == registry.BASE


def test_beat_schedules_tuning_runs_and_the_hourly_drop_of_old_collections(tmp_path) -> None:
    from config.settings import Settings
    from workers.schedule import build_schedule

    schedule = build_schedule(
        Settings(data_dir=tmp_path, redis={"url": "redis://127.0.0.1:6379/0"}, tuning={"every": "7d"})
    )
    tune = schedule["tune-retriever-every-7d"]
    assert (tune["task"], tune["options"]["queue"], tune["schedule"]) == (
        "lore.tune_retriever",
        "train",
        7 * 86400,
    )
    drop = schedule["drop-expired-models-every-1h"]
    assert (drop["task"], drop["kwargs"]["action"], drop["options"]["queue"]) == (
        "lore.change_model",
        "drop_expired",
        "train",
    )
    assert not any(k.startswith("tune-") for k in build_schedule(Settings(data_dir=tmp_path)))


def test_no_wait_returns_once_the_promotion_has_started_and_the_worker_finishes_it(
    stack, start_worker, embedder: Any
) -> None:
    """`lore tune retriever --no-wait`: a run that wins returns at its promotion step; the worker
    then switches the serving model on its own."""
    import time

    from feedback.db import Database
    from tests.knowledge.test_tuning import EVAL, KESTREL_HELD_OUT, KESTREL_TRAIN
    from tests.workers.test_tuning_run import EXPENSES, INSURANCE, judge_everything

    for rel, text in DOCS.items():
        write(stack.tmp / "docs", rel, text)
    stack.overrides["sources"] = [{"name": "handbook", "type": "directory", "path": str(stack.tmp / "docs")}]
    stack.overrides["index"] = {"engine": "qdrant-local"}
    stack.overrides["database"] = {"url": f"sqlite:///{stack.tmp / 'feedback.sqlite3'}"}
    stack.overrides["tuning"] = {"epochs": 2, "batch_size": 8, "learning_rate": 2e-4}
    evals = stack.tmp / "evals.jsonl"
    evals.write_text("".join(q.model_dump_json() + "\n" for q in EVAL), encoding="utf-8")
    stack.overrides["evals"] = [{"name": "handbook", "path": str(evals)}]
    settings = stack.settings()
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("handbook").error is None
    db = Database.from_settings(settings)
    db.ensure_schema()
    judge_everything(kn, db, KESTREL_TRAIN + KESTREL_HELD_OUT, EXPENSES, INSURANCE)
    db.dispose()
    kn.close()
    start_worker("train")

    request = TuneRequest(method="full", synthetic=30, max_minutes=5, promote="auto", requested_by="test")
    started = request_tuning(settings, request, wait=False, poll=0.2)
    assert set(started) == {"task_id", "step"}, started["gate"]
    assert started["step"].startswith("promoting")
    deadline = time.monotonic() + 300
    while registry.serving_id(settings) == registry.BASE and time.monotonic() < deadline:
        time.sleep(0.5)
    serving = registry.serving(settings)
    assert serving.method == "full" and serving.status == "serving"
