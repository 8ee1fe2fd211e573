"""The index owner's side of `index.owner = "worker"`: questions and index reads over the `answer` queue.

Chat processes (`workers.remote.RemoteKnowledge`) publish a `lore.answer` or `lore.index_query`
message to the `answer` queue and wait on `Keys.reply(task_id)` (a Redis list) for the reply.
Two things consume that queue, both through `serve_request`:

- `AnswerServer`, in the process that owns an embedded index: the ingest worker's pool process,
  which also runs the syncs. Its own consumer thread and `index.answer_threads` threads answer
  while a sync runs (the embedded engine searches during writes), sharing that process's one
  `Knowledge`. Started on `worker_process_init` (see `workers.process`).
- The Celery tasks of the same names (`workers.tasks`), for `lore worker -Q answer` processes
  when the index is a Qdrant server that any process can open.

A reply is `{"ok": true, "result": …}` or `{"ok": false, "error": …, "type": …}`. Requests carry
an expiry (the sender's timeout): one found expired is dropped, since nobody waits for it.
A question carries its audience's grants (`{"grants": [...], "label": ...}`, or null for an
unfiltered one), the wider audience's and the sources it is scoped to.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from config.logs import correlation_id
from workers.names import Keys, Queue, TaskName

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis

    from knowledge.access import Audience
    from knowledge.service import Knowledge

log = logging.getLogger(__name__)

REPLY_TTL = 120  # seconds an unread reply stays in Redis


def serve_request(knowledge: Knowledge, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run one request against this process's index. Never raises: errors become the reply."""
    token = correlation_id.set(payload.get("correlation_id") or None)
    try:
        return {"ok": True, "result": _run(knowledge, name, payload)}
    except Exception as exc:
        log.warning("%s failed: %s", name, exc, exc_info=not _expected(exc))
        return {"ok": False, "error": str(exc) or type(exc).__name__, "type": type(exc).__name__}
    finally:
        correlation_id.reset(token)


def _expected(exc: Exception) -> bool:
    from knowledge.store import IndexError_

    return isinstance(exc, IndexError_ | KeyError)


def _run(knowledge: Knowledge, name: str, payload: dict[str, Any]) -> Any:
    if name == TaskName.ANSWER:
        from knowledge.answer import Turn

        history = [Turn.model_validate(t) for t in payload.get("history", [])]
        sources = payload.get("sources")
        answer = knowledge.answer(
            payload["question"],
            history,
            audience=_audience(payload.get("audience")),
            wider=_audience(payload.get("wider")),
            sources=[str(s) for s in sources] if sources is not None else None,
            **payload.get("options", {}),
        )
        log.info(
            "answered %s for a chat process in %.0f ms (%d sources)",
            answer.answer_id,
            answer.timings.total_ms,
            len(answer.citations),
        )
        return answer.model_dump(mode="json")
    if name != TaskName.INDEX_QUERY:
        raise ValueError(f"unknown request {name!r}")
    op = payload.get("op")
    if op == "count":
        return knowledge.store.count_chunks()
    if op == "sources":
        return knowledge.sources_status()
    if op == "versions":
        return knowledge.current_versions(list(payload.get("doc_ids", [])))
    if op == "info":
        return index_info(knowledge)
    if op == "search":
        chunks = knowledge.search(
            str(payload["query"]),
            top_k=int(payload.get("top_k", 8)),
            audience=_audience(payload.get("audience")),
        )
        return [c.model_dump(mode="json") for c in chunks]
    if op == "summarize":
        texts = [str(t) for t in payload.get("texts", [])]
        summary = knowledge.summarize(texts, key_count=int(payload.get("key_count", 3)))
        return summary.model_dump(mode="json")
    if op == "visible":
        audience = _audience(payload.get("audience"))
        if audience is None:
            raise ValueError("visible documents need an audience")
        return knowledge.visible_documents(audience)
    raise ValueError(f"unknown index query {op!r}")


def _audience(data: Any) -> Audience | None:
    """An audience as `Audience.as_dict()` sent it; None (unfiltered) only when none was sent."""
    from knowledge.access import Audience

    if data is None:
        return None
    return Audience(frozenset(str(g) for g in data["grants"]), str(data.get("label", "")))


def index_info(knowledge: Knowledge) -> dict[str, Any]:
    """What `lore doctor` asks the owner: the collection, what built it, and this process."""
    from knowledge.store import ModelMismatch

    store = knowledge.store
    identity = knowledge.embedder.identity
    problem = None
    try:
        store.check_model(identity)
    except ModelMismatch as exc:
        problem = str(exc)
    return {
        "collection": store.collection_info(),
        "chunks": store.count_chunks() if store.exists() else 0,
        "owner_model": {"name": identity.name, "dim": identity.dim},
        "owner_problem": problem,
        "owner": f"{socket.gethostname()} pid {os.getpid()}",
    }


def send_reply(redis: Redis, keys: Keys, task_id: str, reply: dict[str, Any]) -> None:
    pipe = redis.pipeline()
    pipe.rpush(keys.reply(task_id), json.dumps(reply, default=str))
    pipe.expire(keys.reply(task_id), REPLY_TTL)
    pipe.execute()


def expired(expires: Any) -> bool:
    """Celery's `expires` header (an ISO timestamp) is in the past."""
    if not expires:
        return False
    try:
        when = datetime.fromisoformat(str(expires))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when < datetime.now(UTC)


class AnswerServer:
    """Consumes the `answer` queue in the index-owning process and answers on a few threads.

    One thread holds a kombu consumer (prefetch 1) and takes a message only when one of the
    `threads` answer slots is free, so waiting questions stay in Redis (visible as queue depth)
    rather than in this process. Messages are acknowledged on receipt: a question lost with a
    dying process is not redelivered (its asker has given up by then) but times out clearly.
    `stopping()` (true after SIGTERM) stops it taking questions; `stop()` waits for those in flight.
    """

    def __init__(
        self,
        app: Celery,
        knowledge: Callable[[], Knowledge],
        redis: Callable[[], Redis],
        keys: Keys,
        *,
        threads: int,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app, self._knowledge, self._redis, self.keys = app, knowledge, redis, keys
        self.threads = threads
        self._stopping = stopping
        self._stop = threading.Event()
        self._slots = threading.Semaphore(threads)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="lore-owner-answer")
        self._thread: threading.Thread | None = None
        self.served = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lore-answer-server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Take no more questions; wait up to `timeout` for those being answered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + timeout
        taken = 0
        while taken < self.threads and time.monotonic() < deadline:  # every slot back = nothing in flight
            if self._slots.acquire(timeout=0.1):
                taken += 1
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("answer server stopped (%d answered)", self.served)

    def _warm_up(self) -> None:
        try:
            knowledge = self._knowledge()
            knowledge.engine  # noqa: B018 - the property opens the index and loads the model
            knowledge.embedder.warm()  # and the query sessions, the one for idle moments too
            log.info("answer server ready: this process owns the index and answers the %s queue", "answer")
        except Exception as exc:
            log.error("the index owner could not open the index (%s); questions get this error", exc)

    def _loop(self) -> None:
        self._warm_up()
        queue = self.app.amqp.queues[Queue.ANSWER.value]
        backoff = 1.0
        while not self._done():
            try:
                with (
                    self.app.connection_for_read() as conn,
                    conn.Consumer([queue], accept=["json"], callbacks=[self._on_message]) as consumer,
                ):
                    consumer.qos(prefetch_count=1)
                    backoff = 1.0
                    while not self._done():
                        try:
                            conn.drain_events(timeout=0.5)
                        except TimeoutError:
                            continue
            except Exception as exc:  # Redis away: try again, more slowly each time
                log.warning("answer server lost the broker (%s); reconnecting in %.0f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30)

    def _done(self) -> bool:
        return self._stop.is_set() or self._stopping()

    def _on_message(self, body: Any, message: Any) -> None:
        message.ack()
        headers = message.headers or {}
        name, task_id = str(headers.get("task", "")), str(headers.get("id", ""))
        try:
            args = body[0]
            payload = dict(args[0])
        except (LookupError, TypeError, ValueError):
            log.error("malformed %s message %s dropped", name, task_id)
            return
        if expired(headers.get("expires")):
            log.info("%s %s expired before it was read; dropped", name, task_id)
            return
        self._slots.acquire()  # wait (holding no more messages) until a thread is free
        try:
            self._executor.submit(self._serve, name, task_id, payload)
        except RuntimeError:  # shutting down
            self._slots.release()

    def _serve(self, name: str, task_id: str, payload: dict[str, Any]) -> None:
        try:
            reply = serve_request(self._knowledge(), name, payload)
            send_reply(self._redis(), self.keys, task_id, reply)
            self.served += 1
        except Exception:
            log.exception("could not answer %s %s", name, task_id)
        finally:
            self._slots.release()
