"""`StateStore` implementations: in memory (embedded mode) and Redis (shared by processes)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from config.settings import RedisSettings

log = logging.getLogger(__name__)


class MemoryStateStore:
    """One process's state with expiry.

    Entries live in one insertion-ordered bucket per TTL, so each bucket is also in expiry order
    and purging stops at its first live entry; `max_entries` bounds memory regardless.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 500_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._buckets: dict[float, OrderedDict[str, tuple[float, str]]] = {}
        self._where: dict[str, float] = {}  # key -> its bucket

    def __len__(self) -> int:
        return len(self._where)

    def _purge(self, now: float) -> None:
        for bucket in self._buckets.values():
            while bucket:
                key, (expires, _) = next(iter(bucket.items()))
                if expires > now and len(self._where) <= self._max:
                    break
                del bucket[key]
                del self._where[key]

    def _live(self, key: str, now: float) -> str | None:
        ttl = self._where.get(key)
        if ttl is None:
            return None
        expires, value = self._buckets[ttl][key]
        if expires <= now:
            self._drop(key)
            return None
        return value

    def _drop(self, key: str) -> None:
        ttl = self._where.pop(key, None)
        if ttl is not None:
            del self._buckets[ttl][key]

    def _set(self, key: str, value: str, ttl: float, now: float) -> None:
        self._drop(key)
        self._buckets.setdefault(ttl, OrderedDict())[key] = (now + ttl, value)
        self._where[key] = ttl

    async def first_time(self, key: str, ttl: float) -> bool:
        now = self._clock()
        self._purge(now)
        if self._live(key, now) is not None:
            return False
        self._set(key, "1", ttl, now)
        return True

    async def seen(self, key: str) -> bool:
        return self._live(key, self._clock()) is not None

    async def put(self, key: str, value: str, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        self._set(key, value, ttl, now)

    async def get(self, key: str) -> str | None:
        return self._live(key, self._clock())


class RedisStateStore:
    """The same contract on Redis: `SET NX EX` makes `first_time` atomic across processes.

    Redis trouble never costs an answer: if it is unreachable, `first_time` answers true (a
    possible duplicate answer is better than a silent bot), `seen` and `get` answer "no", `put`
    stores nothing, and each says so in the log.
    """

    def __init__(self, url: str, *, prefix: str = "lore:chat:", connect_timeout: float = 0.5) -> None:
        import redis.asyncio as aioredis

        # Short timeouts: a chat message must never hang on a down Redis.
        self._redis: Any = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout,
            socket_timeout=2 * connect_timeout + 1,
        )
        self._prefix = prefix

    async def first_time(self, key: str, ttl: float) -> bool:
        try:
            return bool(await self._redis.set(self._prefix + key, "1", nx=True, ex=max(1, int(ttl))))
        except Exception as exc:  # redis.ConnectionError and friends: fail open, loudly
            log.warning("Redis unavailable for de-duplication (%s); treating %s as new", exc, key)
            return True

    async def seen(self, key: str) -> bool:
        try:
            return bool(await self._redis.exists(self._prefix + key))
        except Exception as exc:
            log.warning("Redis unavailable (%s); assuming %s unseen", exc, key)
            return False

    async def put(self, key: str, value: str, ttl: float) -> None:
        try:
            await self._redis.set(self._prefix + key, value, ex=max(1, int(ttl)))
        except Exception as exc:
            log.warning("Redis unavailable (%s); %s not stored", exc, key)

    async def get(self, key: str) -> str | None:
        try:
            value = await self._redis.get(self._prefix + key)
        except Exception as exc:
            log.warning("Redis unavailable (%s); %s not read", exc, key)
            return None
        return None if value is None else str(value)

    async def close(self) -> None:
        await self._redis.aclose()


def make_state_store(redis: RedisSettings) -> MemoryStateStore | RedisStateStore:
    """Redis (under `redis.prefix` + "chat:") when configured, so several processes share it."""
    if not redis.url:
        return MemoryStateStore()
    return RedisStateStore(redis.url, prefix=f"{redis.prefix}chat:", connect_timeout=redis.connect_timeout)
