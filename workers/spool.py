"""A local durable outbox for tasks that could not be sent because Redis was unreachable.

SQLite (WAL) under data_dir: `put` is one small transaction, so recording a vote while Redis
is down costs about a millisecond. A daemon flusher resends in order every few seconds and
deletes a row only after its publish succeeded. Ids chosen by the sender (answer_id,
vote_id, the task id) make a resend after a crash harmless.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spooled:
    id: int
    task_name: str
    task_id: str
    args: list[Any]
    queue: str


class Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a spooled vote survives a power cut
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " task_name TEXT NOT NULL, task_id TEXT NOT NULL, args TEXT NOT NULL, queue TEXT NOT NULL,"
            " created_at REAL NOT NULL)"
        )
        self._pending = self._count()

    def _count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def put(self, task_name: str, task_id: str, args: list[Any], queue: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (task_name, task_id, args, queue, created_at) VALUES (?, ?, ?, ?, ?)",
                (task_name, task_id, json.dumps(args), queue, time.time()),
            )
            self._pending += 1

    def pending(self) -> int:
        return self._pending

    def peek(self, limit: int = 100) -> list[Spooled]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, task_name, task_id, args, queue FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Spooled(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def delete(self, item_id: int) -> None:
        with self._lock:
            if self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,)).rowcount:
                self._pending -= 1

    def flush(self, send: Callable[[Spooled], None]) -> int:
        """Send everything in order; stop at the first failure. Returns how many were sent."""
        sent = 0
        while batch := self.peek():
            for item in batch:
                send(item)  # raises while Redis is still away: the row stays
                self.delete(item.id)
                sent += 1
        return sent

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Flusher:
    """Resends the spool every `interval` seconds while it holds anything."""

    def __init__(self, spool: Spool, send: Callable[[Spooled], None], interval: float) -> None:
        self.spool, self.send, self.interval = spool, send, interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lore-spool", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set() or not self.spool.pending():
                continue
            try:
                sent = self.spool.flush(self.send)
                log.info("spool: sent %d spooled records now that Redis is back", sent)
            except Exception as exc:
                log.debug("spool: Redis still unreachable (%s); %d waiting", exc, self.spool.pending())

    def stop(self, *, final_flush: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if final_flush and self.spool.pending():
            try:
                self.spool.flush(self.send)
            except Exception as exc:
                log.warning(
                    "spool: %d records stay spooled until the next start (%s)", self.spool.pending(), exc
                )
