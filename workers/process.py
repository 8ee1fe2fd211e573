"""What a worker or beat *process* does beyond its tasks: logs, metrics, shutdown, answering.

The launchers (`lore worker`, `lore beat`, and `celery -A workers.celery_app`) call these:

- `prepare_metrics_dir(settings)` first, before Celery or prometheus_client are imported: with
  `worker.metrics_port` set, every process of the worker (prefork) writes its samples under
  `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary directory unless one is given).
- `use_lore_logging(settings)`: Celery's `setup_logging` signal gets Lore's own configuration, so
  the main process, the pool processes and beat all log through `config.logs` (text or JSON,
  correlation ids, secrets masked) and Celery installs no handlers of its own.
- `install_worker_hooks(app, settings)`: Celery signals for
  * shutdown: SIGTERM starts Celery's warm shutdown (no new tasks; running ones finish). A shared
    flag tells the pool processes when it came, so a running sync goes on for
    `worker.shutdown_grace` seconds and then hands itself back to the queue at its next batch
    (`workers.tasks.sync_source`), and the answer server stops taking questions and finishes the
    ones in flight;
  * metrics: task failures and retries are counted, and the main process serves every process's
    metrics plus the queue depths at `worker.metrics_host:worker.metrics_port/metrics`;
  * the answer server: with `index.owner = "worker"` and an embedded index, the pool process of
    the worker that consumes `ingest` owns the index and also serves the `answer` queue
    (`workers.answers.AnswerServer`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.logs import configure_logging
from config.settings import Settings
from workers.names import Keys, Queue

if TYPE_CHECKING:
    from workers.answers import AnswerServer

log = logging.getLogger(__name__)

_stopping: Any = None  # a RawValue("d") shared with the pool processes: when SIGTERM came, 0 = running
_answer_server: AnswerServer | None = None


# -- before anything is imported --------------------------------------------------------------


def prepare_metrics_dir(settings: Settings) -> Path | None:
    """Turn on prometheus_client's multiprocess mode for this worker (when metrics are on)."""
    if not settings.worker.metrics_port:
        return None
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before its multiprocess directory was set")
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="lore-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # samples of a previous run of this worker
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def use_lore_logging(settings: Settings) -> None:
    from celery import signals

    def setup(loglevel: Any = None, **_: Any) -> None:
        configure_logging(settings)
        if loglevel:
            logging.getLogger().setLevel(loglevel)

    signals.setup_logging.connect(setup, weak=False, dispatch_uid="lore-logging")


# -- shutdown --------------------------------------------------------------------------------


def stopping() -> bool:
    """True once this worker was asked to stop (in the main process and its pool processes)."""
    return bool(_stopping is not None and _stopping.value)


def hand_back_due(grace: float) -> bool:
    """True when a running sync should hand itself back: stopping for at least `grace` seconds."""
    return stopping() and time.time() - float(_stopping.value) >= grace


def _on_worker_init(**_: Any) -> None:
    global _stopping
    _stopping = multiprocessing.RawValue("d", 0.0)  # before the pool forks: its processes share it


def _on_shutting_down(**_: Any) -> None:
    # Runs inside Celery's signal handler: set the flag, nothing that could take a lock.
    if _stopping is not None and not _stopping.value:
        _stopping.value = time.time()


# -- hooks -----------------------------------------------------------------------------------


def install_worker_hooks(app: Any, settings: Settings) -> None:
    from celery import signals

    def on_ready(**_: Any) -> None:
        if settings.worker.metrics_port:
            _serve_metrics(settings)

    def on_process_init(**_: Any) -> None:
        if _owns_index(app, settings):
            _start_answer_server(app, settings)

    def on_process_shutdown(**_: Any) -> None:
        global _answer_server
        if _answer_server is not None:
            _answer_server.stop(timeout=min(30.0, settings.index.answer_timeout))
            _answer_server = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def on_failure(sender: Any = None, **_: Any) -> None:
        from workers.metrics import TASK_FAILURES

        TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()

    def on_retry(sender: Any = None, **_: Any) -> None:
        from workers.metrics import TASK_RETRIES

        TASK_RETRIES.labels(getattr(sender, "name", "unknown")).inc()

    for signal, handler in (
        (signals.worker_init, _on_worker_init),
        (signals.worker_shutting_down, _on_shutting_down),
        (signals.worker_ready, on_ready),
        (signals.worker_process_init, on_process_init),
        (signals.worker_process_shutdown, on_process_shutdown),
        (signals.task_failure, on_failure),
        (signals.task_retry, on_retry),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"lore-{signal.name}")


def _owns_index(app: Any, settings: Settings) -> bool:
    """This pool process owns an embedded index and must answer for it: index.owner = worker, no
    Qdrant server, and the worker consumes the ingest queue."""
    if settings.index.owner != "worker" or settings.qdrant.url is not None:
        return False
    consumed = getattr(app.amqp.queues, "consume_from", None) or app.amqp.queues
    return Queue.INGEST.value in consumed


def _start_answer_server(app: Any, settings: Settings) -> None:
    global _answer_server
    from workers.answers import AnswerServer
    from workers.runtime import runtime_for

    runtime = runtime_for(settings)
    _answer_server = AnswerServer(
        app,
        lambda: runtime.knowledge,
        lambda: runtime.redis,
        Keys(settings.redis.prefix),
        threads=settings.index.answer_threads,
        stopping=stopping,
    )
    _answer_server.start()


def _serve_metrics(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from workers.metrics import QueueDepthCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(QueueDepthCollector(settings))
    w = settings.worker
    start_http_server(w.metrics_port, addr=w.metrics_host, registry=registry)
    log.info("worker metrics on http://%s:%d/metrics", w.metrics_host, w.metrics_port)
