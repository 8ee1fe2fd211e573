"""Rate limits: moving windows ("at most N events per W seconds for each key") on the `limits`
library, kept in Redis when `redis.url` is set, so every process and replica counts against the
same budget, else in this process's memory.

The core limits each person and each channel (`RateLimiter`, every chat adapter); the web
console adds a budget per client address for the public chat and counts failed sign-ins
(`bot.web.security`), on the same `Windows`.

Redis trouble never turns limits off, and never locks anyone out: a failing call is answered
from an in-process window instead, and Redis is tried again `retry_redis_after` seconds later,
with a warning in the log. Calls to Redis run on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from config.settings import ChatSettings, RedisSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    scope: str = ""  # "user" or "channel" when refused
    retry_after: float = 0.0  # seconds until the refusing window has room

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after))


@dataclass(frozen=True)
class Budget:
    """At most `limit` events per `window` seconds for `key`."""

    key: str
    limit: int
    window: int

    @property
    def item(self) -> RateLimitItem:
        return _item(self.limit, self.window)


@functools.lru_cache(maxsize=64)
def _item(limit: int, window: int) -> RateLimitItem:
    return RateLimitItemPerSecond(limit, window, namespace="lore")


@dataclass(frozen=True)
class Refusal:
    budget: Budget
    wait: float  # seconds until it has room again


class Windows:
    """Moving windows in Redis (`redis_url`) or memory, with the in-memory fallback above."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "lore:limits",
        timeout: float = 0.5,
        retry_redis_after: float = 10.0,
    ) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: RedisStorage | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            self._redis = RedisStorage(
                redis_url,
                key_prefix=prefix,
                wrap_exceptions=True,  # every Redis failure is a StorageError
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
            self._shared = MovingWindowRateLimiter(self._redis)
        self.retry_redis_after = retry_redis_after
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def _run(self, op: Callable[[MovingWindowRateLimiter], T]) -> T:
        """`op` on Redis when it is configured and up, else on memory; one decision's calls all
        go to the same place."""
        shared = self._shared
        if shared is not None and time.monotonic() >= self._down_until:
            try:
                return op(shared)
            except StorageError as exc:
                with self._lock:
                    self._down_until = time.monotonic() + self.retry_redis_after
                log.warning(
                    "Redis unavailable for rate limits (%s); this process counts on its own for %.0f s",
                    exc.storage_error,
                    self.retry_redis_after,
                )
        return op(self._memory)

    async def _call(self, op: Callable[[MovingWindowRateLimiter], T]) -> T:
        if self._shared is None:
            return self._run(op)
        return await asyncio.to_thread(self._run, op)

    async def take(self, *budgets: Budget) -> Refusal | None:
        """Count one event against every budget if all have room (None); else the first full one,
        and count nothing."""

        def op(limiter: MovingWindowRateLimiter) -> Refusal | None:
            for budget in budgets:
                if not limiter.test(budget.item, budget.key):
                    return Refusal(budget, _wait(limiter, budget))
            for budget in budgets:
                if not limiter.hit(budget.item, budget.key):  # another process took the last room
                    return Refusal(budget, _wait(limiter, budget))
            return None

        return await self._call(op)

    async def full(self, *budgets: Budget) -> Refusal | None:
        """The first budget without room, counting nothing."""

        def op(limiter: MovingWindowRateLimiter) -> Refusal | None:
            for budget in budgets:
                if not limiter.test(budget.item, budget.key):
                    return Refusal(budget, _wait(limiter, budget))
            return None

        return await self._call(op)

    async def count(self, *budgets: Budget) -> None:
        """Count one event against each budget (where it has room)."""

        def op(limiter: MovingWindowRateLimiter) -> None:
            for budget in budgets:
                limiter.hit(budget.item, budget.key)

        await self._call(op)

    async def forget(self, budget: Budget) -> None:
        """Empty one budget's window."""
        await self._call(lambda limiter: limiter.clear(budget.item, budget.key))

    def close(self) -> None:
        if self._redis is not None:
            self._redis.storage.close()


def _wait(limiter: MovingWindowRateLimiter, budget: Budget) -> float:
    reset_at, _remaining = limiter.get_window_stats(budget.item, budget.key)
    return max(0.0, reset_at - time.time())


def make_windows(redis: RedisSettings) -> Windows:
    """Windows in Redis under `redis.prefix` + "limits" when configured, else in memory."""
    if not redis.url:
        return Windows()
    return Windows(redis.url, prefix=f"{redis.prefix}limits", timeout=redis.connect_timeout)


class RateLimiter:
    """Per-person and per-channel budgets for the conversation core. A message counts against
    both only when both allow it."""

    def __init__(
        self,
        *,
        user_per_minute: int,
        channel_per_minute: int,
        windows: Windows | None = None,
        window: int = 60,
    ) -> None:
        self.user_per_minute, self.channel_per_minute, self.window = (
            user_per_minute,
            channel_per_minute,
            window,
        )
        self.windows = windows or Windows()

    async def check(self, user: str, channel: str) -> RateDecision:
        refused = await self.windows.take(
            Budget(f"user:{user}", self.user_per_minute, self.window),
            Budget(f"channel:{channel}", self.channel_per_minute, self.window),
        )
        if refused is None:
            return RateDecision(True)
        scope = refused.budget.key.split(":", 1)[0]
        return RateDecision(False, scope, refused.wait)

    def close(self) -> None:
        self.windows.close()


def make_rate_limiter(chat: ChatSettings, redis: RedisSettings | None = None) -> RateLimiter:
    """The core's limiter: `chat.user_per_minute` and `chat.channel_per_minute`, on Redis when
    `redis.url` is set (every process shares the budgets), else in memory."""
    windows = make_windows(redis) if redis is not None else Windows()
    return RateLimiter(
        user_per_minute=chat.user_per_minute, channel_per_minute=chat.channel_per_minute, windows=windows
    )
