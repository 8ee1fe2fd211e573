"""`RemoteKnowledge`: a chat process's index when `index.owner = "worker"`.

It never opens the index. Each call publishes a `lore.answer` / `lore.index_query` message to the
`answer` queue (with an expiry: the caller's timeout) and blocks on `Keys.reply(task_id)`, a
Redis list the owner pushes its reply to (`workers.answers`). It offers what the chat side uses
of `knowledge.service.Knowledge`: `answer`, `is_empty`, `sources_status`, `current_versions`,
`visible_documents`, `search`, plus `index_info` for `lore doctor`.

Permissions travel with the question: the audience's and the wider audience's grants, and the
sources a channel is scoped to (`knowledge/access.py`); the owner filters inside its engine.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from redis import Redis

from config.logs import correlation_id
from config.settings import Settings
from knowledge.access import Audience
from knowledge.answer import Answer, RetrievedChunk, Turn
from knowledge.summarize import ThreadSummary
from workers.app import make_celery
from workers.names import QUEUE_OF, Keys, TaskName
from workers.ports import OwnerUnavailable, RemoteIndexError

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 10.0  # seconds for index reads (counts, sources, versions)


class RemoteKnowledge:
    remote = True

    def __init__(self, settings: Settings) -> None:
        assert settings.redis.url, "index.owner = 'worker' needs redis.url"
        self.settings = settings
        self.keys = Keys(settings.redis.prefix)
        self.app = make_celery(settings, sender=True)
        # No socket timeout: BLPOP blocks up to its own timeout.
        self.redis = Redis.from_url(settings.redis.url, socket_connect_timeout=settings.redis.connect_timeout)
        self._send_lock = threading.Lock()

    # -- what the chat side uses ------------------------------------------------------------

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        audience: Audience | None = None,
        wider: Audience | None = None,
        sources: Sequence[str] | None = None,
        **options: Any,
    ) -> Answer:
        payload = {
            "question": question,
            "history": [t.model_dump() for t in history],
            "options": options,
            "audience": audience.as_dict() if audience is not None else None,
            "wider": wider.as_dict() if wider is not None else None,
            "sources": list(sources) if sources is not None else None,
            "correlation_id": correlation_id.get(),
        }
        result = self.call(TaskName.ANSWER, payload, self.settings.index.answer_timeout)
        return Answer.model_validate(result)

    def is_empty(self) -> bool:
        return int(self.query("count")) == 0

    def sources_status(self) -> list[dict[str, Any]]:
        return list(self.query("sources"))

    def current_versions(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        return dict(self.query("versions", doc_ids=list(doc_ids)))

    def visible_documents(self, audience: Audience) -> dict[str, list[str]]:
        return dict(self.query("visible", audience=audience.as_dict()))

    def summarize(self, texts: Sequence[str], *, key_count: int = 3) -> ThreadSummary:
        """`Knowledge.summarize` on the index owner (its embedder and language model)."""
        found = self.query(
            "summarize", timeout=self.settings.index.answer_timeout, texts=list(texts), key_count=key_count
        )
        return ThreadSummary.model_validate(found)

    def search(self, query: str, *, top_k: int = 8, audience: Audience | None = None) -> list[RetrievedChunk]:
        found = self.query(
            "search", query=query, top_k=top_k, audience=audience.as_dict() if audience is not None else None
        )
        return [RetrievedChunk.model_validate(c) for c in found]

    def index_info(self, timeout: float = QUERY_TIMEOUT) -> dict[str, Any]:
        return dict(self.query("info", timeout=timeout))

    def close(self) -> None:
        self.redis.close()

    # -- the round trip ---------------------------------------------------------------------

    def query(self, op: str, *, timeout: float | None = None, **args: Any) -> Any:
        limit = min(QUERY_TIMEOUT, self.settings.index.answer_timeout) if timeout is None else timeout
        return self.call(TaskName.INDEX_QUERY, {"op": op, **args}, limit)

    def call(self, name: TaskName, payload: dict[str, Any], timeout: float) -> Any:
        task_id = uuid.uuid4().hex
        try:
            with self._send_lock:
                self.app.send_task(
                    str(name),
                    args=[payload],
                    argsrepr=f"<{payload.get('op', name)}>",  # a question and its audience: not for logs
                    task_id=task_id,
                    queue=str(QUEUE_OF[name]),
                    expires=timeout,
                    retry=False,
                    ignore_result=True,
                )
            got: Any = self.redis.blpop([self.keys.reply(task_id)], timeout=max(1, math.ceil(timeout)))
        except Exception as exc:
            raise OwnerUnavailable(f"could not reach the index owner through Redis: {exc}") from exc
        if got is None:
            raise OwnerUnavailable(
                f"the index owner did not reply within {timeout:g} s (index.owner = 'worker'): is the "
                "ingest worker running (`lore worker -Q ingest`), and not overloaded? "
                "`lore doctor` checks the workers."
            )
        reply = json.loads(got[1])
        if not reply.get("ok"):
            raise RemoteIndexError(str(reply.get("error")), str(reply.get("type", "")))
        return reply.get("result")
