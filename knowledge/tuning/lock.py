"""One tuning run (training, promotion, rollback, dropping old collections) at a time.

With `redis.url`, a Redis key (`<prefix>tune:lock`) set with NX and an expiry, renewed while the
run lasts, so it works across machines and a dead holder's lock runs out; without Redis, an
`flock` on `data_dir/models/tune.lock`, which the kernel releases when its process dies.
A second run waits for the first. The lock is re-entrant within a thread, so `promote` can take it
both alone (`lore tune rollback`) and inside a run that already holds it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from config.settings import Settings

log = logging.getLogger(__name__)

LOCK_TTL = 120  # seconds; renewed every third of it
POLL = 0.5

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LockBusy(TimeoutError):
    """Another tuning run held the lock for longer than we were willing to wait."""


_held: dict[str, tuple[int, int]] = {}  # lock name -> (owning thread id, depth)
_guard = threading.Lock()


def _name(settings: Settings) -> str:
    if settings.redis.url:
        return f"redis:{settings.redis.url}:{settings.redis.prefix}tune:lock"
    return f"file:{(settings.data_dir / 'models' / 'tune.lock').resolve()}"


@contextmanager
def run_lock(settings: Settings, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the tuning lock; wait for it (forever, or `timeout` seconds, then `LockBusy`)."""
    name, me = _name(settings), threading.get_ident()
    with _guard:
        owner, depth = _held.get(name, (0, 0))
        if owner == me:
            _held[name] = (me, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[name] = (me, _held[name][1] - 1)
        return
    release = _acquire_redis(settings, timeout) if settings.redis.url else _acquire_file(settings, timeout)
    with _guard:
        _held[name] = (me, 1)
    try:
        yield
    finally:
        with _guard:
            del _held[name]
        release()


def _deadline(timeout: float | None) -> float:
    return float("inf") if timeout is None else time.monotonic() + timeout


def _acquire_file(settings: Settings, timeout: float | None) -> Any:
    path = settings.data_dir / "models" / "tune.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held until release
    deadline, told = _deadline(timeout), False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                fh.close()
                raise LockBusy(f"another tuning run holds {path}") from None
            if not told:
                log.info("another tuning run is in progress; waiting for it")
                told = True
            time.sleep(POLL)
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()

    def release() -> None:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()

    return release


def _acquire_redis(settings: Settings, timeout: float | None) -> Any:
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(str(settings.redis.url))
    key, token = f"{settings.redis.prefix}tune:lock", uuid.uuid4().hex
    deadline, told = _deadline(timeout), False
    while not client.set(key, token, nx=True, ex=LOCK_TTL):
        if time.monotonic() >= deadline:
            client.close()
            raise LockBusy(f"another tuning run holds the Redis lock {key}")
        if not told:
            log.info("another tuning run is in progress; waiting for it")
            told = True
        time.sleep(POLL)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LOCK_TTL / 3):
            try:
                if not int(cast(Any, client).eval(_RENEW, 1, key, token, LOCK_TTL)):
                    log.error("the tuning lock %s expired and was taken by another run", key)
                    return
            except RedisError as exc:  # a short blip: the lock outlives it
                log.warning("could not renew the tuning lock: %s", exc)

    thread = threading.Thread(target=renew, name="lore-tune-lock", daemon=True)
    thread.start()

    def release() -> None:
        stop.set()
        thread.join(timeout=5)
        try:
            cast(Any, client).eval(_RELEASE, 1, key, token)
        finally:
            client.close()

    return release


def held(settings: Settings) -> bool:
    """Whether a tuning run holds the lock now (anywhere), without waiting."""
    try:
        with run_lock(settings, timeout=0):
            return False
    except LockBusy:
        return True
