"""The Celery tasks: thin wrappers that call plain functions in knowledge/ and feedback/.

Each task receives ids and plain JSON, is idempotent, and has time limits. Registered on an
app by `register(app)` (see workers/app.py), under the names in `workers.names`.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from celery import Celery, Task

from config.settings import Settings
from workers import jobs
from workers.dispatch import request_sync
from workers.jobs import FEEDBACK_TRANSIENT, HandBack, SyncFailed
from workers.locks import LockLost, SourceLock
from workers.names import QUEUE_OF, TaskName
from workers.process import hand_back_due
from workers.progress import ProgressReporter
from workers.runtime import runtime_for

log = logging.getLogger(__name__)


def _settings(task: Task[Any, Any]) -> Settings:
    settings = task.app.lore_settings  # type: ignore[attr-defined]
    assert isinstance(settings, Settings)
    return settings


def sync_source(
    task: Task[Any, Any], name: str, full: bool = False, requested_by: str | None = None
) -> dict[str, Any]:
    """One sync (`workers.jobs.sync`) under the source's lock: joined when another runs, handed
    back when this worker stops, retried by Celery when the job says so."""
    settings = _settings(task)
    rt = runtime_for(settings)
    task_id = str(task.request.id)
    attempt = int(task.request.retries or 0)
    lock = SourceLock(rt.redis, rt.keys, name, task_id, settings.worker.lock_ttl)
    holder = lock.acquire()
    if holder is not None:  # a sync of this source is running elsewhere: that one covers us
        lock.release()
        rt.board.event({"event": "joined", "source": name, "task_id": task_id, "running": holder})
        return {"source": name, "joined": holder}
    event = {"source": name, "task_id": task_id, "attempt": attempt, "requested_by": requested_by}
    rt.board.event({"event": "started", **event})
    reporter = ProgressReporter(rt.board, name, task_id)
    lock.on_renew = reporter.heartbeat

    def check() -> None:
        lock.check()  # stop early if another worker took over our (expired) lock
        if hand_back_due(settings.worker.shutdown_grace):
            raise HandBack(name)

    w = settings.worker
    try:
        with lock:
            outcome = jobs.sync(
                rt.knowledge,
                reporter,
                full=full,
                attempt=attempt,
                policy=w,
                check=check,
                requested_by=requested_by,
                worker=socket.gethostname(),
            )
    except LockLost:
        rt.board.event({"event": "superseded", "source": name, "task_id": task_id})
        return {"source": name, "superseded": True}
    except HandBack:
        _hand_back(task, name, full, requested_by, lock, rt)
        return {"source": name, "handed_back": True}

    if outcome.state == "retry":
        lock.release(requeued_ttl=int(outcome.retry_in) + w.sync_time_limit)  # requests join the retry
        log.warning(
            "sync of %s failed (transient), retry %d in %.0fs: %s",
            name,
            attempt + 1,
            outcome.retry_in,
            outcome.error,
        )
        raise task.retry(
            countdown=outcome.retry_in, max_retries=w.sync_max_retries, exc=SyncFailed(outcome.error)
        )
    lock.release()
    if outcome.state == "failed":
        raise SyncFailed(outcome.error)  # permanent, or out of retries: FAILURE with the reason
    return {"source": name, **outcome.result.summary()}


def _hand_back(
    task: Task[Any, Any], name: str, full: bool, requested_by: str | None, lock: SourceLock, rt: Any
) -> None:
    """This worker is stopping: queue the same sync again (same task id and attempt) for another
    worker, or this one restarted. It resumes where it stopped: documents already indexed are
    unchanged for it, and the pending journal cleans up the batch that was cut short."""
    settings = _settings(task)
    task_id = str(task.request.id)
    lock.release(requeued_ttl=settings.worker.sync_time_limit)  # requests meanwhile join the requeued one
    task.apply_async(
        args=[name],
        kwargs={"full": full, "requested_by": requested_by},
        task_id=task_id,
        retries=int(task.request.retries or 0),
        queue=QUEUE_OF[TaskName.SYNC_SOURCE],
    )
    rt.board.update(name, {"source": name, "phase": "handed back", "task_id": task_id})
    worker = socket.gethostname()
    rt.board.event({"event": "handed_back", "source": name, "task_id": task_id, "worker": worker})
    log.warning("worker stopping: sync of %s handed back to the queue (%s)", name, task_id)


def sync_all(task: Task[Any, Any], sources: list[str] | None = None) -> dict[str, str]:
    """Queue a sync of every (or each named) source; those running or queued are joined."""
    settings = _settings(task)
    rt = runtime_for(settings)
    names = sources if sources is not None else [s.name for s in settings.sources]
    handles = {}
    for name in names:
        try:
            handles[name] = request_sync(task.app, rt.redis, settings, name, requested_by="schedule").task_id
        except KeyError as exc:  # a source removed from lore.toml since the schedule was built
            log.error("not syncing %s: %s", name, exc.args[0])
    return handles


# How long a "stored" confirmation stays in Redis for the sender to collect (workers/spool.py).
CONFIRMATION_TTL = 7 * 24 * 3600


def record_interaction(task: Task[Any, Any], record: dict[str, Any]) -> bool:
    return _record(task, TaskName.RECORD_INTERACTION, record)


def record_vote(task: Task[Any, Any], record: dict[str, Any]) -> bool:
    return _record(task, TaskName.RECORD_VOTE, record)


def record_escalation(task: Task[Any, Any], record: dict[str, Any]) -> bool:
    return _record(task, TaskName.RECORD_ESCALATION, record)


def record_expert_reply(task: Task[Any, Any], record: dict[str, Any]) -> bool:
    return _record(task, TaskName.RECORD_EXPERT_REPLY, record)


def _record(task: Task[Any, Any], name: TaskName, record: dict[str, Any]) -> bool:
    rt = runtime_for(_settings(task))
    created = jobs.record_feedback(rt.database.sessions, name, record)
    _confirm(task, rt)
    return created


def export_datasets(
    task: Task[Any, Any], formats: list[str] | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Write a versioned dataset export per format (default: `datasets.formats`). Each call makes
    new directories, and an interrupted one leaves nothing behind, so a redelivery is harmless."""
    from feedback.datasets.export import export_all, parse_since

    settings = _settings(task)
    rt = runtime_for(settings)
    results = export_all(rt.database.sessions, settings, formats, since=parse_since(since))
    return [r.summary() for r in results]


def cluster_gaps(task: Task[Any, Any], requested_by: str | None = None) -> list[dict[str, Any]]:
    """Cluster the questions and store the run (`workers.jobs.cluster_gaps`); the embedder loads
    once per worker process (the feedback worker never opens the index for this)."""
    settings = _settings(task)
    rt = runtime_for(settings)
    return jobs.cluster_gaps(rt.database.sessions, settings, rt.knowledge.embedder, requested_by=requested_by)


def gaps_digest(task: Task[Any, Any], requested_by: str | None = None) -> dict[str, Any]:
    """Post the top new gaps to `gaps.digest_channel` (`workers.jobs.gaps_digest`)."""
    from workers.post import post_message

    settings = _settings(task)
    rt = runtime_for(settings)
    return jobs.gaps_digest(
        rt.database.sessions, settings, lambda channel, text: post_message(settings, channel, text)
    )


def tune_retriever(
    task: Task[Any, Any], request: dict[str, Any] | None = None, requested_by: str | None = None
) -> dict[str, Any]:
    """Train, measure and maybe promote a retriever (`workers.tuning.tune_retriever`). The run's
    current step is the task's state meta, so `lore tune retriever --no-wait` can tell when the
    promotion's rebuild has started. With an embedded index this must be the process that owns it."""
    from workers.ports import TuneRequest
    from workers.tuning import tune_retriever

    settings = _settings(task)
    rt = runtime_for(settings)
    tuning = settings.tuning
    options: dict[str, Any] = {
        "method": tuning.method,
        "synthetic": tuning.synthetic,
        "max_minutes": tuning.max_minutes,
    }
    options.update(request or {})
    if options.get("pairs_file"):
        options["pairs_file"] = Path(options["pairs_file"])
    job = TuneRequest(**options, requested_by=requested_by)

    def step(text: str) -> None:
        log.info("tune: %s", text)
        task.update_state(state="PROGRESS", meta={"step": text})

    return tune_retriever(settings, rt.knowledge, rt.database.sessions, job, step=step)


def tune_generator(
    task: Task[Any, Any], request: dict[str, Any], requested_by: str | None = None
) -> dict[str, Any]:
    """Fine-tune, measure and maybe promote the answer model (`workers.generator_tuning`), under
    the tuning lock the retriever's runs share. A hosted job survives the worker: the next run
    resumes watching it."""
    from workers.generator_tuning import tune_generator
    from workers.ports import GeneratorRequest

    settings = _settings(task)
    rt = runtime_for(settings)
    job = GeneratorRequest(
        **{"max_minutes": settings.tuning.max_minutes, **request}, requested_by=requested_by
    )

    def step(text: str) -> None:
        log.info("tune generator: %s", text)
        task.update_state(state="PROGRESS", meta={"step": text})

    return tune_generator(settings, rt.knowledge, rt.database.sessions, job, step=step)


def change_model(
    task: Task[Any, Any], action: str, model_id: str | None = None, requested_by: str | None = None
) -> dict[str, Any]:
    """Promote a retriever or roll back (the console's Models page, with Redis configured),
    in the process that owns the index, with its configured embedder. What an admin must read
    (refused, nothing to roll back to, a source failed) comes back as `error`. `drop_expired`
    (hourly, from beat) drops the collections of models retired longer than `tuning.grace` ago."""
    from knowledge.tuning import promotion, registry

    settings = _settings(task)
    if action == "drop_expired":
        dropped = promotion.drop_expired(settings)
        return {"serving": registry.serving_id(settings), "dropped": dropped, "error": None}
    rt = runtime_for(settings)
    embedder = rt.knowledge.configured_embedder
    try:
        if action == "promote":
            record = promotion.promote(settings, str(model_id), embedder=embedder)
        elif action == "rollback":
            record = promotion.rollback(settings, embedder=embedder)
        else:
            raise ValueError(f"unknown model change {action!r}")
    except (promotion.PromotionError, registry.UnknownModel) as exc:
        return {"serving": None, "error": str(exc)}
    rt.knowledge.follow(force=True)
    log.info("%s (asked by %s): model %s serves now", action, requested_by, record.id)
    return {"serving": record.id, "error": None}


def answer(task: Task[Any, Any], payload: dict[str, Any]) -> None:
    """A question for this process's index (`lore worker -Q answer` with a Qdrant server); the
    reply goes to the asker's reply list. See workers/answers.py."""
    _serve(task, TaskName.ANSWER, payload)


def index_query(task: Task[Any, Any], payload: dict[str, Any]) -> None:
    _serve(task, TaskName.INDEX_QUERY, payload)


def _serve(task: Task[Any, Any], name: TaskName, payload: dict[str, Any]) -> None:
    from workers.answers import send_reply, serve_request

    rt = runtime_for(_settings(task))
    send_reply(rt.redis, rt.keys, str(task.request.id), serve_request(rt.knowledge, name, payload))


def _confirm(task: Task[Any, Any], rt: Any) -> None:
    """Tell the sender the record is safely in the database, so it can drop its copy."""
    rt.redis.set(rt.keys.stored(str(task.request.id)), 1, ex=CONFIRMATION_TTL)


def register(app: Celery, settings: Settings) -> None:
    w = settings.worker
    # shared=False: only this app gets the tasks, not every Celery app (the sender has none).
    common: dict[str, Any] = {"bind": True, "shared": False, "acks_late": True, "reject_on_worker_lost": True}
    app.task(
        name=TaskName.SYNC_SOURCE,
        queue=QUEUE_OF[TaskName.SYNC_SOURCE],
        soft_time_limit=w.sync_time_limit,
        time_limit=w.sync_time_limit + 60,
        max_retries=w.sync_max_retries,
        **common,
    )(sync_source)
    app.task(
        name=TaskName.SYNC_ALL, queue=QUEUE_OF[TaskName.SYNC_ALL], soft_time_limit=60, time_limit=90, **common
    )(sync_all)
    # A database blip retries with backoff; the writes are idempotent, so retrying is safe.
    feedback: dict[str, Any] = {
        "soft_time_limit": w.feedback_time_limit,
        "time_limit": w.feedback_time_limit + 30,
        "ignore_result": True,
        "autoretry_for": FEEDBACK_TRANSIENT,
        "retry_backoff": 2,
        "retry_backoff_max": 60,
        "retry_jitter": True,
        "max_retries": 100,
        **common,
    }
    app.task(name=TaskName.RECORD_INTERACTION, queue=QUEUE_OF[TaskName.RECORD_INTERACTION], **feedback)(
        record_interaction
    )
    app.task(name=TaskName.RECORD_VOTE, queue=QUEUE_OF[TaskName.RECORD_VOTE], **feedback)(record_vote)
    for name, fn in (
        (TaskName.RECORD_ESCALATION, record_escalation),
        (TaskName.RECORD_EXPERT_REPLY, record_expert_reply),
    ):
        app.task(name=name, queue=QUEUE_OF[name], **feedback)(fn)
    app.task(
        name=TaskName.EXPORT_DATASETS,
        queue=QUEUE_OF[TaskName.EXPORT_DATASETS],
        soft_time_limit=30 * 60,
        time_limit=30 * 60 + 60,
        autoretry_for=FEEDBACK_TRANSIENT,
        retry_backoff=10,
        max_retries=5,
        **common,
    )(export_datasets)
    # Clustering is a read and one insert: a blip is retried; a run that fails is just late.
    gaps: dict[str, Any] = {
        "soft_time_limit": 15 * 60,
        "time_limit": 15 * 60 + 60,
        "autoretry_for": FEEDBACK_TRANSIENT,
        "retry_backoff": 10,
        "max_retries": 3,
        **common,
    }
    app.task(name=TaskName.CLUSTER_GAPS, queue=QUEUE_OF[TaskName.CLUSTER_GAPS], **gaps)(cluster_gaps)
    # The digest is not retried: a post that failed half-way must not be posted twice.
    app.task(
        name=TaskName.GAPS_DIGEST,
        queue=QUEUE_OF[TaskName.GAPS_DIGEST],
        soft_time_limit=120,
        time_limit=180,
        **common,
    )(gaps_digest)
    # Training is never retried nor redelivered: a run that died left the serving model as it
    # was, and the next scheduled or requested run starts over. Its limit is the training budget
    # plus the measuring and a re-index, generously.
    for name, run in ((TaskName.TUNE_RETRIEVER, tune_retriever), (TaskName.TUNE_GENERATOR, tune_generator)):
        app.task(
            name=name,
            queue=QUEUE_OF[name],
            soft_time_limit=int(settings.tuning.max_minutes * 60) + 4 * 3600,
            time_limit=int(settings.tuning.max_minutes * 60) + 4 * 3600 + 120,
            **{**common, "acks_late": False, "reject_on_worker_lost": False},  # killed: not redelivered
        )(run)
    # Like training: never retried nor redelivered; a change that died left the pointer as it was.
    app.task(
        name=TaskName.CHANGE_MODEL,
        queue=QUEUE_OF[TaskName.CHANGE_MODEL],
        soft_time_limit=4 * 3600,
        time_limit=4 * 3600 + 120,
        **{**common, "acks_late": False, "reject_on_worker_lost": False},
    )(change_model)
    # Questions: never retried; a question whose worker died comes back (acks_late) and is answered
    # if its asker still waits, and Celery drops it once expired (`expires` = the asker's timeout).
    # A second reply to the same question is harmless: the asker reads the first.
    ask: dict[str, Any] = {
        "ignore_result": True,
        "soft_time_limit": settings.index.answer_timeout,
        "time_limit": settings.index.answer_timeout + 30,
        **common,
    }
    app.task(name=TaskName.ANSWER, queue=QUEUE_OF[TaskName.ANSWER], **ask)(answer)
    app.task(name=TaskName.INDEX_QUERY, queue=QUEUE_OF[TaskName.INDEX_QUERY], **ask)(index_query)
