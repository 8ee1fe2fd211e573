"""Per-user and per-channel sliding windows (one process's view; each process limits its own)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    scope: str = ""  # "user" or "channel" when refused
    retry_after: float = 0.0  # seconds until the refusing window has room

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after))


class SlidingWindow:
    """At most `limit` events per `window` seconds for each key."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}

    def _trim(self, key: str, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def wait(self, key: str) -> float:
        """0 when an event is allowed now, else the seconds until it would be."""
        now = self._clock()
        events = self._trim(key, now)
        return 0.0 if len(events) < self.limit else events[0] + self.window - now

    def add(self, key: str) -> None:
        self._events.setdefault(key, deque()).append(self._clock())

    def sweep(self) -> None:
        now = self._clock()
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
            del self._events[key]


class RateLimiter:
    """A message counts against both windows only when both allow it."""

    def __init__(
        self,
        *,
        user_per_minute: int,
        channel_per_minute: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = SlidingWindow(user_per_minute, window, clock)
        self.channels = SlidingWindow(channel_per_minute, window, clock)
        self._checks = 0

    def check(self, user: str, channel: str) -> RateDecision:
        self._checks += 1
        if self._checks % 1000 == 0:  # forget idle keys now and then
            self.users.sweep()
            self.channels.sweep()
        if wait := self.users.wait(user):
            return RateDecision(False, "user", wait)
        if wait := self.channels.wait(channel):
            return RateDecision(False, "channel", wait)
        self.users.add(user)
        self.channels.add(channel)
        return RateDecision(True)
