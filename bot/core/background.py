"""Work an adapter starts after acknowledging its platform, kept until done and drained on
shutdown: answers in flight are finished, not dropped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self, label: str) -> None:
        self.label = label
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background. The task is referenced until it ends (so it isn't
        garbage-collected mid-flight), and a failure is logged rather than lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background %s failed", task.get_name(), exc_info=exc)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Wait for in-flight work, including work that starts meanwhile; cancel what is still
        running after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=left)
        late = set(self._tasks)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d %s tasks still running at shutdown were cancelled", len(late), self.label)
