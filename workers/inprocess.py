"""`InProcessTaskClient`: embedded mode, when no Redis is configured.

The same plain functions the Celery tasks call run here on two small thread pools: one
thread for syncs (so they run one at a time, like the ingest queue), one for feedback writes
(SQLite takes one writer at a time anyway). Every interaction and vote goes through the same
durable outbox as in Celery mode (workers/spool.py) and leaves it only once written, so a
crash between answering and writing loses nothing: the next start writes what is left.
Progress and last results go to `data_dir/sync-status.json`, so `lore sync status` in another
process can read them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from feedback.schema import EscalationRecord, ExpertReplyRecord, InteractionRecord, VoteRecord
from workers import jobs
from workers.names import TaskName, record_task
from workers.ports import SyncHandle, SyncStatus
from workers.progress import FileBoard, ProgressReporter
from workers.spool import Spool, Spooled

if TYPE_CHECKING:
    from feedback.db import Database
    from knowledge.service import Knowledge

log = logging.getLogger(__name__)

STATUS_FILE = "sync-status.json"
WRITE_ATTEMPTS = 5  # then the record waits in the spool for the next start


class InProcessTaskClient:
    def __init__(self, settings: Settings, *, knowledge: Knowledge | None = None) -> None:
        self.settings = settings
        self._knowledge = knowledge  # the caller's: an embedded index has one owner per process
        self._owns_knowledge = knowledge is None
        self._database: Database | None = None
        self._lock = threading.Lock()
        self._syncs = ThreadPoolExecutor(1, thread_name_prefix="lore-sync")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="lore-feedback")
        self._gaps = ThreadPoolExecutor(
            1, thread_name_prefix="lore-gaps"
        )  # clustering runs (feedback/gaps.py)
        self._pending: dict[str, str] = {}  # source -> task id, from request until its last attempt
        self._timers: set[threading.Timer] = set()  # retries waiting for their backoff
        self.board = FileBoard(settings.data_dir / STATUS_FILE)
        self._closed = False
        self.spool = Spool(settings.data_dir / "spool.sqlite3")
        for item in self.spool.all(limit=1_000_000):  # left over by a previous run that crashed
            self._writes.submit(self._write, item)

    # -- feedback -----------------------------------------------------------------------

    def record_interaction(self, record: InteractionRecord) -> None:
        self._record(*record_task(record))

    def record_vote(self, record: VoteRecord) -> None:
        self._record(*record_task(record))

    def record_escalation(self, record: EscalationRecord) -> None:
        self._record(*record_task(record))

    def record_expert_reply(self, record: ExpertReplyRecord) -> None:
        self._record(*record_task(record))

    def _record(self, name: TaskName, task_id: str, payload: dict[str, Any]) -> None:
        try:
            row = self.spool.put(str(name), task_id, [payload], "inprocess")
        except Exception:  # the spool itself failed (disk full?): still try to write it now
            log.exception("could not spool %s; writing it directly", task_id)
            row = 0
        item = Spooled(row, str(name), task_id, [payload], "inprocess")
        try:
            self._writes.submit(self._write, item)
        except RuntimeError:  # closed: write here rather than drop it
            self._write(item)

    def _write(self, item: Spooled) -> None:
        """Write one spooled record; a database blip is retried a few times with backoff (as the
        Celery feedback tasks retry it). What is still unwritten stays in the spool for the next
        start: nothing is dropped."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                jobs.record_feedback(self.database.sessions, item.task_name, item.args[0])
            except jobs.FEEDBACK_TRANSIENT:
                log.warning("could not record %s (attempt %d)", item.task_id, attempt + 1, exc_info=True)
                if attempt + 1 < WRITE_ATTEMPTS and not self._closed:
                    time.sleep(jobs.backoff(attempt, 0.2, 2.0))
                    continue
            except Exception:
                log.exception("could not record %s", item.task_id)
            else:
                if item.id:
                    self.spool.delete([item.id])
                return
            break
        log.error("%s stays in the spool; it is written on the next start", item.task_id)

    @property
    def database(self) -> Database:
        with self._lock:
            if self._database is None:
                from feedback.db import Database

                self._database = Database.from_settings(self.settings)
                self._database.ensure_schema()
            return self._database

    # -- content gaps ---------------------------------------------------------------------

    def request_gap_report(self, *, requested_by: str | None = None) -> str:
        task_id = uuid.uuid4().hex
        self._gaps.submit(self._cluster_gaps, task_id, requested_by)
        return task_id

    def _cluster_gaps(self, task_id: str, requested_by: str | None) -> None:
        try:
            runs = jobs.cluster_gaps(
                self.database.sessions, self.settings, self.knowledge.embedder, requested_by=requested_by
            )
            log.info("clustered the questions (%s): %s", task_id, runs)
        except Exception:
            log.exception("clustering the questions failed (%s)", task_id)

    # -- syncs ----------------------------------------------------------------------------

    def request_sync(self, source: str, *, full: bool = False, requested_by: str | None = None) -> SyncHandle:
        self.settings.source(source)  # KeyError for an unknown source
        with self._lock:
            if source in self._pending:
                return SyncHandle(task_id=self._pending[source], source=source, joined=True)
            task_id = uuid.uuid4().hex
            self._pending[source] = task_id
            self._syncs.submit(self._run, source, task_id, full, requested_by, 0)
        return SyncHandle(task_id=task_id, source=source)

    def _run(self, source: str, task_id: str, full: bool, requested_by: str | None, attempt: int) -> None:
        """One attempt (`workers.jobs.sync`); a retry it asks for is scheduled, not slept on, so
        other sources sync meanwhile and `close()` needn't wait for it."""
        try:
            reporter = ProgressReporter(self.board, source, task_id)
            outcome = jobs.sync(
                self.knowledge,
                reporter,
                full=full,
                attempt=attempt,
                policy=self.settings.worker,
                requested_by=requested_by,
            )
            if outcome.state == "retry" and self._schedule_retry(
                outcome.retry_in, source, task_id, full, requested_by, attempt + 1
            ):
                return
        except Exception:
            log.exception("sync of %s crashed", source)
        with self._lock:
            self._pending.pop(source, None)

    def _schedule_retry(self, delay: float, *args: Any) -> bool:
        """Run the sync again after `delay` seconds (requests meanwhile join it). False if closed."""
        with self._lock:
            if self._closed:
                return False
            timer = threading.Timer(delay, self._retry, args)
            timer.daemon = True
            self._timers.add(timer)
            timer.start()
            return True

    def _retry(self, source: str, task_id: str, *args: Any) -> None:
        with self._lock:
            self._timers.discard(threading.current_thread())  # type: ignore[arg-type]
            try:
                self._syncs.submit(self._run, source, task_id, *args)
            except RuntimeError:  # closed meanwhile
                self._pending.pop(source, None)

    @property
    def knowledge(self) -> Knowledge:
        with self._lock:
            if self._knowledge is None:
                from knowledge.service import Knowledge

                self._knowledge = Knowledge(self.settings)
            return self._knowledge

    def sync_status(self) -> SyncStatus:
        status = self.board.snapshot()
        with self._lock:  # queued behind another source's sync: not started, but not forgotten
            for source, task_id in self._pending.items():
                status.running.setdefault(source, {"source": source, "phase": "queued", "task_id": task_id})
        return status

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.board.history(limit)

    def wait(
        self, task_id: str, source: str, *, timeout: float = 3600, poll: float = 0.2
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.board.snapshot().last.get(source)
            if last and last.get("task_id") == task_id and last.get("state") in ("done", "failed"):
                return last
            time.sleep(poll)
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for timer in self._timers:  # a retry not yet due stays "retrying" in the last result
                timer.cancel()
        self._writes.shutdown(wait=True)  # pending votes are written before we go
        self._gaps.shutdown(wait=True, cancel_futures=True)
        self._syncs.shutdown(wait=True, cancel_futures=True)
        self.spool.close()
        with self._lock:
            if self._database is not None:
                self._database.dispose()
            if self._owns_knowledge and self._knowledge is not None:
                self._knowledge.close()
