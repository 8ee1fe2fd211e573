"""One sync per source across every worker: a Redis lock with expiry, renewed while it runs.

Keys (see `names.Keys`): `lock:<source>` holds the running sync's task id with a TTL of
`worker.lock_ttl`; `queued:<source>` holds the id of a sync that was requested but has not
started. A request while either exists gets that id back instead of queueing another sync.

The lock TTL is below the broker's visibility timeout, so when a dead worker's sync is
redelivered its lock has already expired and the new delivery can take it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from workers.names import Keys

log = logging.getLogger(__name__)

# KEYS: lock, queued. ARGV: new task id, queued ttl. -> {holder id, 1} or {new id, 0}
_CLAIM = """
local running = redis.call('GET', KEYS[1])
if running then return {running, 1} end
local queued = redis.call('GET', KEYS[2])
if queued then return {queued, 1} end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return {ARGV[1], 0}
"""
# KEYS: lock, queued. ARGV: task id, lock ttl. -> nil when acquired, else the holder's id
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  return false
end
return redis.call('GET', KEYS[1])
"""
# KEYS: lock. ARGV: task id, ttl. -> 1 if still ours (and extended)
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lock, queued. ARGV: task id, queued ttl (0 = plain release)
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2]) end
if tonumber(ARGV[2]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


def _eval(redis: Redis, script: str, keys: list[str], *args: str | int) -> Any:
    return cast(Any, redis).eval(script, len(keys), *keys, *args)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def claim_request(redis: Redis, keys: Keys, source: str, task_id: str, queued_ttl: int) -> tuple[str, bool]:
    """Reserve a new sync of `source` under `task_id`, or get the id of the one already
    running or queued. Returns (task id to report, joined)."""
    holder, joined = _eval(redis, _CLAIM, [keys.lock(source), keys.queued(source)], task_id, queued_ttl)
    return _text(holder), bool(int(joined))


def holder(redis: Redis, keys: Keys, source: str) -> str | None:
    value = redis.get(keys.lock(source))
    return None if value is None else _text(value)


class LockLost(Exception):
    """Another worker took this source's lock (ours expired): stop, the other one will finish."""


class SourceLock:
    def __init__(self, redis: Redis, keys: Keys, source: str, task_id: str, ttl: int) -> None:
        self.redis, self.keys, self.source, self.task_id, self.ttl = redis, keys, source, task_id, ttl
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_renew: Callable[[], None] = lambda: None  # e.g. refresh the progress entry

    def _keys(self) -> list[str]:
        return [self.keys.lock(self.source), self.keys.queued(self.source)]

    def acquire(self) -> str | None:
        """None when acquired; otherwise the task id of the sync that holds it."""
        got = _eval(self.redis, _ACQUIRE, self._keys(), self.task_id, self.ttl)
        return None if got is None else _text(got)

    def release(self, *, requeued_ttl: int = 0) -> None:
        """Drop the lock. With `requeued_ttl`, mark this task as the queued sync (a retry is
        coming), so requests in the meantime join it."""
        self._stop_renewing()
        _eval(self.redis, _RELEASE, self._keys(), self.task_id, requeued_ttl)

    def check(self) -> None:
        if self._lost.is_set():
            raise LockLost(f"lost the sync lock of {self.source}")

    # -- renewal -----------------------------------------------------------------

    def __enter__(self) -> SourceLock:
        self._thread = threading.Thread(target=self._renew_loop, name=f"lore-lock-{self.source}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop_renewing()

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                ours = _eval(self.redis, _RENEW, [self.keys.lock(self.source)], self.task_id, self.ttl)
            except RedisError as exc:  # keep trying: the lock outlives a short blip
                log.warning("could not renew the sync lock of %s: %s", self.source, exc)
                continue
            if not int(ours):
                log.error("sync lock of %s was lost (expired and taken); stopping this sync", self.source)
                self._lost.set()
                return
            try:
                self.on_renew()
            except Exception:  # a progress refresh must never stop the renewal
                log.exception("lock renewal hook failed")
