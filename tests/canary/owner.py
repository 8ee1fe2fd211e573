"""The canary in worker-owner mode (`index.owner = "worker"`): one real `lore worker -Q ingest`
process, at DEBUG, owns a copy of the canary index (`canary_template`) and answers the chat side
over the real Redis queue; the chat side (the test process: the Bolt app, the discord.py bot, the
web chat) asks it through `RemoteKnowledge` and opens no index of its own.

One owner serves the whole session (`canary_owner` in tests/conftest.py): starting one costs
seconds. Each test that asks it gets it through `index_owner`: answering, and with the chat state
of earlier tests forgotten (their emulators reused channel ids and timestamps), as a fresh chat
deployment would have it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from tests.canary.corpus import CanaryCorpus
from tests.conftest import free_port
from tests.ops.conftest import REDIS_URL, Proc, base_env, drop_prefix, new_prefix

READY = "answer server ready"
ANSWERED = "for a chat process"  # the owner's line for each answer it sent a chat process


class IndexOwner:
    def __init__(self, tmp: Path, template: Path, sources: list[dict[str, Any]]) -> None:
        self.tmp = tmp
        self.prefix = new_prefix()
        self.metrics_port = free_port()
        self.starts = 0
        data = tmp / "owner-data"
        shutil.copytree(template, data)  # indexed once per run; the owner opens this copy
        self.env = base_env(
            tmp,
            data_dir=str(data),
            sources=sources,
            # The group must exist for the access rule; its members are the chat side's business
            # (an audience reaches the owner as grants).
            groups={"secret": ["web:nobody"]},
            llm={"provider": "extractive"},
            redis={"url": REDIS_URL, "prefix": self.prefix},
            index={"owner": "worker"},
            worker={"metrics_port": self.metrics_port},
            log_level="debug",
        )
        self.proc = self._start()

    @property
    def chat(self) -> dict[str, Any]:
        """A chat process's settings for asking this owner (and opening no index of its own)."""
        return {
            "redis": {"url": REDIS_URL, "prefix": self.prefix},
            "index": {"owner": "worker", "answer_timeout": 60},
        }

    def _start(self) -> Proc:
        self.starts += 1  # each start logs READY once, to the same file
        name = f"owner-{uuid.uuid4().hex[:6]}@%h"
        return Proc("owner", ["worker", "-Q", "ingest", "-n", name], self.env, self.tmp)

    def log(self) -> str:
        """Everything the owner wrote, over all its starts (each appends to the same files)."""
        return self.proc.err() + self.proc.out()

    def answered(self) -> int:
        """How many answers the owner has sent chat processes so far."""
        return self.proc.err().count(ANSWERED)

    def served(self, services: Any, *, since: int) -> int:
        """How many answers the owner has sent since `since`, once sure that `services` (a chat
        side's) asks it and has no index of its own."""
        data = services.settings.data_dir
        assert getattr(services.knowledge, "remote", False), services.knowledge
        assert not (data / "edge").exists() and not (data / "qdrant").exists(), data
        return self.answered() - since

    async def answering(self) -> None:
        await self.proc.wait_for(lambda: self.proc.err().count(READY) >= self.starts, 180, READY)

    async def ready(self) -> IndexOwner:
        """Answering (started again if an earlier test left it stopped), and no chat state left
        from earlier tests."""
        if not self.proc.alive():
            self.proc.kill()  # closes its log files; the new process appends to them
            self.proc = self._start()
        await self.answering()
        redis = Redis.from_url(REDIS_URL)
        try:
            for pattern in (f"{self.prefix}chat:*", f"{self.prefix}limits*"):
                keys = list(redis.scan_iter(match=pattern, count=1000))
                if keys:
                    redis.delete(*keys)
        finally:
            redis.close()
        return self

    async def restart(self) -> None:
        """SIGTERM (a clean exit) and a new process over the same data directory."""
        self.proc.terminate()
        assert await self.proc.stopped(60) == 0, self.proc.tail()
        self.proc.kill()  # closes its log files
        self.proc = self._start()
        await self.answering()

    async def exposed(self, canary: CanaryCorpus) -> list[str]:
        """Markers or restricted paths in the owner's log output or its /metrics."""
        async with httpx.AsyncClient(timeout=30) as client:
            metrics = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        assert "lore_" in metrics, metrics[:400]
        assert " DEBUG " in self.proc.err(), self.proc.tail()  # the log checked is DEBUG's
        found = [f"log: {x}" for x in canary.exposed(self.log())]
        return found + [f"metrics: {x}" for x in canary.leaks(metrics)]

    def close(self) -> None:
        self.proc.kill()
        drop_prefix(self.prefix)


async def restarted(lore: Any, owner: IndexOwner | None, connect: Callable[[], Awaitable[Any]]) -> Any:
    """The chat process `lore` stopped and `connect()`ed again over the same data directory; the
    index owner, if any, restarted in between (the owner is what reopens the index then)."""
    await lore.stop()
    if owner is not None:
        await owner.restart()
    return await connect()
