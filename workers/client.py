"""The send side of Lore's background work: what `bot` may import from `workers` (with the port,
`workers.ports`).

`make_task_client(settings)` picks the `TaskClient`: one sends Celery tasks by name through Redis
(spooling to a local durable outbox when Redis is down); the other runs the same plain functions
in-process on a small executor when no Redis is configured (embedded mode). This module is the
composition root of `workers`' send side: it imports the implementations, and none imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from workers.ports import PROMOTING, GeneratorRequest, SyncStatus, TaskClient, TuneRequest

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from feedback.store import SessionFactory
    from knowledge.service import Knowledge
    from workers.remote import RemoteKnowledge


def make_task_client(settings: Settings, *, knowledge: Knowledge | None = None) -> TaskClient:
    """Celery through Redis when `redis.url` is set, else the in-process executor.

    Pass the process's `Knowledge` in embedded mode: an embedded index has one owner per
    process, and in-process syncs must use that one. Raises nothing for a down Redis:
    records spool until it is back.
    """
    if settings.redis.url:
        from workers.sender import CeleryTaskClient

        return CeleryTaskClient(settings)
    from workers.inprocess import InProcessTaskClient

    return InProcessTaskClient(settings, knowledge=knowledge)


def read_sync_status(settings: Settings) -> SyncStatus:
    """Running syncs and last results, for a process that doesn't run them (CLI, chat commands)."""
    if settings.redis.url:
        from redis import Redis

        from workers.names import Keys
        from workers.progress import RedisBoard

        redis = Redis.from_url(settings.redis.url, socket_connect_timeout=settings.redis.connect_timeout)
        try:
            return RedisBoard(redis, Keys(settings.redis.prefix), ttl=1).snapshot()
        finally:
            redis.close()
    from workers.inprocess import STATUS_FILE
    from workers.progress import read_file_board

    return read_file_board(settings.data_dir / STATUS_FILE)


def remote_knowledge(settings: Settings) -> RemoteKnowledge:
    """The chat side's index when `index.owner = "worker"`: it never opens the index, it asks the
    worker that owns it (over the `answer` queue). See workers/remote.py and workers/answers.py."""
    from workers.remote import RemoteKnowledge

    return RemoteKnowledge(settings)


def queue_depth_collector(settings: Settings) -> Collector:
    """A Prometheus collector of the queues' depths, read from Redis at scrape time."""
    from workers.metrics import QueueDepthCollector

    return QueueDepthCollector(settings)


def worker_queues(settings: Settings, timeout: float = 2.0) -> dict[str, list[str]]:
    """The live workers (those that answer a broadcast within `timeout`) and the queues each
    consumes. Empty when none answers; raises when Redis is unreachable."""
    from workers.app import make_celery

    app = make_celery(settings, sender=True)
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    finally:
        app.close()
    return {str(node): sorted(str(q["name"]) for q in queues) for node, queues in replies.items()}


def request_tuning(
    settings: Settings,
    request: TuneRequest | GeneratorRequest,
    *,
    wait: bool = True,
    on_step: Callable[[str], None] | None = None,
    poll: float = 1.0,
) -> dict[str, Any]:
    """Queue a retriever-tuning run (or, with a `GeneratorRequest`, an answer-model one) on the
    workers' `train` queue. `wait`: until it ends (its `lore tune --json` body); else until its
    promotion's rebuild starts (an answer-model run: until it starts), or it ends first
    (`{"task_id", "step"}`). Raises RuntimeError when the run failed."""
    from dataclasses import asdict

    from workers.app import make_celery
    from workers.names import QUEUE_OF, TaskName

    if not settings.redis.url:
        raise ValueError("--no-wait needs workers: set redis.url and run `lore worker -Q train`")
    payload = asdict(request)
    payload.pop("requested_by")
    if payload.get("pairs_file") is not None:
        payload["pairs_file"] = str(payload["pairs_file"])
    generator = isinstance(request, GeneratorRequest)
    name = TaskName.TUNE_GENERATOR if generator else TaskName.TUNE_RETRIEVER
    app = make_celery(settings)
    try:
        result = app.send_task(
            name,
            kwargs={"request": payload, "requested_by": request.requested_by},
            queue=str(QUEUE_OF[name]),
        )
        seen = None
        hint_at = time.monotonic() + 30  # nobody took it by then: say who must
        while True:
            if result.ready():
                if result.failed():
                    raise RuntimeError(f"the tuning run failed: {result.result!r}")
                body: dict[str, Any] = result.get(disable_sync_subtasks=False)
                return body
            if seen is None and result.state == "PENDING" and time.monotonic() > hint_at:
                hint_at = float("inf")
                if on_step:
                    on_step("queued: waiting for a `lore worker -Q train` to take it")
            meta = result.info if isinstance(result.info, dict) else {}
            step = meta.get("step")
            if step and step != seen:
                seen = step
                if on_step:
                    on_step(step)
                if not wait and (generator or step.startswith(PROMOTING)):
                    return {"task_id": result.id, "step": step}
            time.sleep(poll)
    finally:
        app.close()


def change_model(
    settings: Settings,
    action: str,
    model_id: str | None = None,
    *,
    requested_by: str | None = None,
    poll: float = 1.0,
) -> dict[str, Any]:
    """Promote `model_id` (`action="promote"`) or roll back (`"rollback"`) on the workers' `train`
    queue, in the process that owns the index; waits for it. Returns `{"serving", "error"}`
    (`error`: why the model cannot serve); raises RuntimeError when the task itself failed."""
    from workers.app import make_celery
    from workers.names import QUEUE_OF, TaskName

    app = make_celery(settings)
    try:
        result = app.send_task(
            TaskName.CHANGE_MODEL,
            kwargs={"action": action, "model_id": model_id, "requested_by": requested_by},
            queue=str(QUEUE_OF[TaskName.CHANGE_MODEL]),
        )
        while not result.ready():
            time.sleep(poll)
        if result.failed():
            raise RuntimeError(f"the {action} failed on the worker: {result.result!r}")
        body: dict[str, Any] = result.get(disable_sync_subtasks=False)
        return body
    finally:
        app.close()


def tune_here(
    settings: Settings,
    knowledge: Knowledge,
    sessions: SessionFactory | None,
    request: TuneRequest,
    *,
    step: Callable[[str], None] | None = None,
    on_train_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a retriever-tuning run in this process (the CLI without workers); see workers/tuning.py."""
    from workers.tuning import tune_retriever

    return tune_retriever(settings, knowledge, sessions, request, step=step, on_train_step=on_train_step)


def tune_generator_here(
    settings: Settings,
    knowledge: Knowledge,
    sessions: SessionFactory,
    request: GeneratorRequest,
    *,
    step: Callable[[str], None] | None = None,
    on_train_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run an answer-model fine-tuning run in this process; see workers/generator_tuning.py."""
    from workers.generator_tuning import tune_generator

    return tune_generator(settings, knowledge, sessions, request, step=step, on_train_step=on_train_step)
