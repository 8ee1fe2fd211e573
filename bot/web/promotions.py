"""The Models page's Promote and Roll back buttons: one model change at a time, on a background
thread, so the request returns at once while a `full` model's collection is built (minutes).

Where it runs follows the other long jobs (Reindex, Cluster again; `workers.client.make_task_client`).
Without Redis (embedded mode: this process owns the index and the data dir) the thread calls
`knowledge.tuning.promotion` here, with this process's configured embedder, and this console's
`Knowledge` follows the pointer at once. With `redis.url` the thread sends the change to the
workers' `train` queue (`workers.client.change_model`: `lore worker -Q train`, which with an
embedded index is the process that owns it) and waits for its answer. Either way the page polls
`status()`; `busy` also reports a tuning run or promotion started elsewhere (the CLI, another
console, a worker), through the tuning lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from config.settings import Settings

log = logging.getLogger(__name__)

Action = Literal["promote", "rollback"]


class PromotionBusy(RuntimeError):
    """A model change is already running."""


class PromotionRunner:
    def __init__(self, settings: Settings, knowledge: Callable[[], Any]) -> None:
        self.settings = settings
        self._knowledge = knowledge  # the console's KnowledgeBase (a local Knowledge, or remote)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = {"running": False}

    def status(self) -> dict[str, Any]:
        """This console's last model change, and whether a tuning run holds the lock anywhere."""
        from knowledge.tuning.lock import held

        with self._lock:
            state = dict(self._state)
        try:
            state["busy"] = state["running"] or held(self.settings)
        except Exception as exc:  # e.g. Redis down: the page still shows the runs
            log.warning("could not read the tuning lock: %s", exc)
            state["busy"] = state["running"]
        return state

    def start(self, action: Action, model_id: str | None, *, requested_by: str) -> None:
        with self._lock:
            if self._state.get("running"):
                raise PromotionBusy(f"a {self._state.get('action')} is already running")
            self._state = {
                "running": True,
                "action": action,
                "model": model_id,
                "requested_by": requested_by,
                "started_at": datetime.now(UTC).isoformat(),
                "on_workers": bool(self.settings.redis.url),
            }
            self._thread = threading.Thread(
                target=self._run, args=(action, model_id, requested_by), name="lore-promote", daemon=True
            )
            self._thread.start()

    def _run(self, action: Action, model_id: str | None, requested_by: str) -> None:
        from knowledge.tuning.promotion import PromotionError

        outcome: dict[str, Any]
        try:
            if self.settings.redis.url:
                served = self._on_workers(action, model_id, requested_by)
            else:
                served = self._here(action, model_id)
            outcome = {"serving": served, "error": None}
            log.info("%s: model %s serves now (asked by %s)", action, served, requested_by)
        except PromotionError as exc:
            outcome = {"serving": None, "error": str(exc)}
        except Exception as exc:
            log.exception("the %s of %s failed", action, model_id or "the previous model")
            outcome = {"serving": None, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self._state = {
                **self._state,
                **outcome,
                "running": False,
                "finished_at": datetime.now(UTC).isoformat(),
            }

    def _here(self, action: Action, model_id: str | None) -> str:
        from knowledge.tuning import promotion

        knowledge = self._knowledge()
        embedder = getattr(knowledge, "configured_embedder", None)
        if action == "promote":
            assert model_id is not None
            record = promotion.promote(self.settings, model_id, embedder=embedder)
        else:
            record = promotion.rollback(self.settings, embedder=embedder)
        follow = getattr(knowledge, "follow", None)
        if follow is not None:  # at once, rather than at its next poll of the pointer
            follow(force=True)
        return record.id

    def _on_workers(self, action: Action, model_id: str | None, requested_by: str) -> str:
        from knowledge.tuning.promotion import PromotionError
        from workers.client import change_model

        body = change_model(self.settings, action, model_id, requested_by=requested_by)
        if body.get("error"):
            raise PromotionError(str(body["error"]))
        return str(body["serving"])

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
