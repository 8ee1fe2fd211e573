"""`StateStore` implementations: SQLite under `data_dir` (embedded mode), Redis (shared by
processes), and in memory (tests and benchmarks).

The state is what makes Lore behave across a restart: the threads it answered in (follow-ups
there need no mention, for `chat.thread_ttl`), the cached `/ask` answers that Share posts, and
the delivery ids that keep a redelivered event from being answered twice. So without Redis it
lives in a file, not in the process.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from config.settings import RedisSettings

T = TypeVar("T")

log = logging.getLogger(__name__)


class MemoryStateStore:
    """One process's state with expiry (forgotten on restart: for tests and benchmarks).

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


class SqliteStateStore:
    """The same contract in one SQLite file, for embedded mode: it survives a restart.

    Expiry times are wall-clock (they must mean the same after a restart); expired rows are
    ignored at once and deleted every `purge_every` seconds. Calls run on a worker thread, so a
    slow disk never stalls the event loop. Like the Redis store, a failing file never costs an
    answer: `first_time` answers true, `seen` and `get` answer "no", `put` stores nothing, and
    each says so in the log.
    """

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, purge_every: float = 300
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._purge_every = purge_every
        self._purged = 0.0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a crash of the process; cheap writes
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
            " expires_at REAL NOT NULL) WITHOUT ROWID"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS state_expires_at ON state (expires_at)")

    async def _run(self, what: str, fn: Callable[[float], T], failed: T) -> T:
        def call() -> T:
            with self._lock:
                now = self._clock()
                if now - self._purged > self._purge_every:
                    self._db.execute("DELETE FROM state WHERE expires_at <= ?", (now,))
                    self._purged = now
                return fn(now)

        try:
            return await asyncio.to_thread(call)
        except sqlite3.Error as exc:
            log.warning("chat state file %s failed (%s); %s", self.path, exc, what)
            return failed

    async def first_time(self, key: str, ttl: float) -> bool:
        def mark(now: float) -> bool:
            # One statement: a new key, or an expired one taken over; a live one is left alone.
            cur = self._db.execute(
                "INSERT INTO state (key, value, expires_at) VALUES (?, '1', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
                " WHERE state.expires_at <= ?",
                (key, now + ttl, now),
            )
            return cur.rowcount == 1

        return await self._run(f"treating {key} as new", mark, True)

    async def seen(self, key: str) -> bool:
        return await self.get(key) is not None

    async def put(self, key: str, value: str, ttl: float) -> None:
        def store(now: float) -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO state (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, now + ttl),
            )

        await self._run(f"{key} not stored", store, None)

    async def get(self, key: str) -> str | None:
        def read(now: float) -> str | None:
            row = self._db.execute(
                "SELECT value FROM state WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(f"{key} not read", read, None)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def make_state_store(redis: RedisSettings, data_dir: Path) -> SqliteStateStore | RedisStateStore:
    """Redis (under `redis.prefix` + "chat:") when configured, so several processes share it;
    else a SQLite file in `data_dir`, so the state outlives the process."""
    if redis.url:
        return RedisStateStore(
            redis.url, prefix=f"{redis.prefix}chat:", connect_timeout=redis.connect_timeout
        )
    return SqliteStateStore(data_dir / "chat-state.sqlite3")
