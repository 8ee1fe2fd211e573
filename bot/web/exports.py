"""The console's "Export" button: one dataset export at a time, on a background thread.

It calls the same function as `lore dataset export` and the scheduled Celery task
(`feedback.datasets.export.export_dataset`), in this process, against the same database; the
page polls `status()` until it is done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from config.settings import Settings

if TYPE_CHECKING:
    from feedback.db import Database

log = logging.getLogger(__name__)


class ExportBusy(RuntimeError):
    """An export is already running."""


class ExportRunner:
    def __init__(self, db: Callable[[], Database], settings: Settings) -> None:
        self._db = db
        self.settings = settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = {"running": False}

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)

    def start(self, fmt: str, since: datetime | None, *, requested_by: str) -> None:
        with self._lock:
            if self._state.get("running"):
                raise ExportBusy(f"a {self._state.get('format')} export is already running")
            self._state = {
                "running": True,
                "format": fmt,
                "since": since.isoformat() if since else None,
                "requested_by": requested_by,
                "started_at": datetime.now(UTC).isoformat(),
            }
            self._thread = threading.Thread(
                target=self._run, args=(fmt, since), name="lore-export", daemon=True
            )
            self._thread.start()

    def _run(self, fmt: str, since: datetime | None) -> None:
        from feedback.datasets.export import export_dataset

        outcome: dict[str, Any]
        try:
            result = export_dataset(self._db().sessions, fmt, self.settings, since=since)
            outcome = {"result": result.summary(), "error": None}
        except Exception as exc:
            log.exception("the %s export failed", fmt)
            outcome = {"result": None, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self._state = {
                **self._state,
                **outcome,
                "running": False,
                "finished_at": datetime.now(UTC).isoformat(),
            }

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
