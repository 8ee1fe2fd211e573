"""`lore.change_model` on a real `lore worker -Q train` through real Redis: the console's Models
page with Redis configured (`bot.web.promotions.PromotionRunner`) sends Promote and Roll back to
the workers (here the process that owns the embedded index), and shows what it answered,
refusals included."""

from __future__ import annotations

import time

import pytest

from bot.web.promotions import PromotionRunner
from knowledge.tuning import registry
from tests.bot.web.test_models import candidate, refused

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def finished(runner: PromotionRunner, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while runner.status()["running"]:
        assert time.monotonic() < deadline, "the model change did not finish"
        time.sleep(0.1)
    return runner.status()


def test_the_console_promotes_and_rolls_back_through_the_train_worker(stack, start_worker):
    stack.overrides["index"] = {"owner": "worker"}
    settings = stack.settings()
    model = candidate(settings, "adapter")
    bad = refused(settings)
    worker = start_worker("train")
    runner = PromotionRunner(settings, lambda: None)  # the console never opens a worker-owned index

    runner.start("promote", bad.id, requested_by="ada")
    assert runner.status()["on_workers"]
    status = finished(runner)
    assert status["serving"] is None and "was refused" in status["error"], status
    assert registry.serving_id(settings) == registry.BASE

    runner.start("promote", model.id, requested_by="ada")
    status = finished(runner)
    assert status["error"] is None and status["serving"] == model.id, status
    assert registry.serving_id(settings) == model.id
    assert f"promote (asked by ada): model {model.id} serves now" in worker.text()

    runner.start("rollback", None, requested_by="ada")
    status = finished(runner)
    assert status["error"] is None and status["serving"] == registry.BASE, status
    assert registry.serving_id(settings) == registry.BASE

    from workers.client import change_model

    # Beat's hourly drop of old collections: within the grace, the promoted model's stays.
    dropped = change_model(settings, "drop_expired", requested_by="schedule", poll=0.2)
    assert dropped["error"] is None and dropped["dropped"] == [] and dropped["serving"] == registry.BASE
