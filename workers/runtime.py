"""What a worker process needs for its tasks, built lazily once per process.

Built after the fork (prefork children each get their own), never at import: a feedback
worker loads the embedding model only when it clusters questions (`lore.cluster_gaps`, which
uses `knowledge.embedder` and never opens the index), and the process that runs syncs is the
one that opens an embedded index.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from redis import Redis

from config.settings import Settings
from workers.names import Keys
from workers.progress import RedisBoard

if TYPE_CHECKING:
    from feedback.db import Database
    from knowledge.service import Knowledge


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis.prefix)
        self._lock = threading.Lock()

    @cached_property
    def redis(self) -> Redis:
        assert self.settings.redis.url
        return Redis.from_url(
            self.settings.redis.url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )

    @cached_property
    def board(self) -> RedisBoard:
        return RedisBoard(self.redis, self.keys, ttl=self.settings.worker.lock_ttl * 2)

    @cached_property
    def knowledge(self) -> Knowledge:
        from feedback.generators import lookup
        from knowledge.service import Knowledge

        return Knowledge(self.settings, served=lookup(self.settings))  # follows answer-model promotions

    @cached_property
    def database(self) -> Database:
        from feedback.db import Database

        db = Database.from_settings(self.settings)
        db.ensure_schema()
        return db


_runtimes: dict[tuple[int, int], Runtime] = {}
_guard = threading.Lock()


def runtime_for(settings: Settings) -> Runtime:
    key = (os.getpid(), id(settings))  # a forked child must not reuse its parent's connections
    with _guard:
        if key not in _runtimes:
            _runtimes[key] = Runtime(settings)
        return _runtimes[key]
