"""A local durable outbox for every interaction and vote, kept until it is confirmed stored.

Publishing to Redis is not enough to be safe: kombu's Redis transport pops a message and only
then records it as unacked, so a worker killed in between loses it, and a Redis without
persistence loses everything queued when it restarts. So every record goes here first (one
small SQLite transaction in WAL mode), is published, and stays until the worker that stored
it confirms (a `stored:<task id>` key in Redis).

The caller's write does not wait for the disk (`synchronous=NORMAL`: durable at once against a
crash of the process, which is what kills bots); the flusher thread makes it durable against a
power cut too, with a checkpoint (which fsyncs) on its own connection before each publish. An
fsync can take tens of milliseconds on a busy disk, and a vote must not.

Unconfirmed rows are published again after `confirm_timeout`, backing off; the ids chosen by
the sender (answer_id, vote_id and the task id) make every resend harmless.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_BACKOFF = 3600.0  # an unconfirmed record is retried at least hourly


@dataclass(frozen=True)
class Spooled:
    id: int
    task_name: str
    task_id: str
    args: list[Any]
    queue: str
    attempts: int = 0


class Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._sync_db: sqlite3.Connection | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # fsyncs happen in `sync`, off the caller's path
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " task_name TEXT NOT NULL, task_id TEXT NOT NULL, args TEXT NOT NULL, queue TEXT NOT NULL,"
            " created_at REAL NOT NULL, sent_at REAL, attempts INTEGER NOT NULL DEFAULT 0)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for name, ddl in (("sent_at", "REAL"), ("attempts", "INTEGER NOT NULL DEFAULT 0")):
            if name not in columns:  # a spool file from before confirmations
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {ddl}")
        self._pending = self._scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")

    def _scalar(self, sql: str, *args: Any) -> int:
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def _select(self, where: str, *args: Any) -> list[Spooled]:
        # `where` is always one of this class's constant fragments; values are bound parameters.
        sql = f"SELECT id, task_name, task_id, args, queue, attempts FROM outbox WHERE {where}"  # noqa: S608
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Spooled(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def put(self, task_name: str, task_id: str, args: list[Any], queue: str) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (task_name, task_id, args, queue, created_at) VALUES (?, ?, ?, ?, ?)",
                (task_name, task_id, json.dumps(args), queue, time.time()),
            )
            self._pending += 1
            return int(cur.lastrowid or 0)

    def pending(self) -> int:
        """Records not published yet (Redis was down, or is busy being retried)."""
        return self._pending

    def unconfirmed(self) -> int:
        """Records published but not yet confirmed stored."""
        return self._scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")

    def total(self) -> int:
        return self._scalar("SELECT count(*) FROM outbox")

    def unsent(self, limit: int = 100) -> list[Spooled]:
        return self._select("sent_at IS NULL ORDER BY id LIMIT ?", limit)

    def all(self, limit: int = 1000, after: int = 0) -> list[Spooled]:
        return self._select("id > ? ORDER BY id LIMIT ?", after, limit)

    def sent(self, limit: int = 500) -> list[Spooled]:
        return self._select("sent_at IS NOT NULL ORDER BY id LIMIT ?", limit)

    def due(self, timeout: float, limit: int = 100) -> list[Spooled]:
        """Published long enough ago that it should have been confirmed: publish again.
        The wait doubles with every attempt, so a long worker outage doesn't flood the queue."""
        return self._select(
            "sent_at IS NOT NULL AND sent_at + min(? * (1 << min(attempts - 1, 12)), ?) < ?"
            " ORDER BY id LIMIT ?",
            timeout,
            MAX_BACKOFF,
            time.time(),
            limit,
        )

    def mark_sent(self, item_id: int) -> None:
        with self._lock:
            now = time.time()
            first = self._db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ? AND sent_at IS NULL",
                (now, item_id),
            ).rowcount
            if first:
                self._pending -= 1
            else:  # a resend of an unconfirmed record
                self._db.execute(
                    "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?", (now, item_id)
                )

    def _recount(self) -> None:
        self._pending = self._scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")

    def delete(self, item_ids: Sequence[int]) -> None:
        if not item_ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in item_ids])
        self._recount()

    def flush(self, send: Callable[[Spooled], None]) -> int:
        """Publish everything not yet published, in order; stop at the first failure."""
        sent = 0
        while batch := self.unsent():
            for item in batch:
                send(item)  # raises while Redis is still away: the row stays unsent
                self.mark_sent(item.id)
                sent += 1
        return sent

    def confirm(self, stored: Callable[[list[str]], list[bool]]) -> int:
        """Delete the published records that `stored` says have reached the database."""
        done = 0
        last = 0
        while batch := [s for s in self.sent(limit=500) if s.id > last]:
            flags = stored([s.task_id for s in batch])
            ids = [s.id for s, ok in zip(batch, flags, strict=True) if ok]
            self.delete(ids)
            done += len(ids)
            last = batch[-1].id
            if len(batch) < 500:
                break
        return done

    def sync(self) -> None:
        """Make every write so far survive a power cut: a checkpoint of the WAL, which fsyncs it
        and the database. On a connection of its own, so writers go on meanwhile."""
        with self._sync_lock:
            if self._sync_db is None:
                self._sync_db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._sync_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        with self._sync_lock:
            if self._sync_db is not None:
                self._sync_db.close()
                self._sync_db = None
        with self._lock:
            self._db.close()


class Flusher:
    """When woken (each new record wakes it) and every `interval` seconds: publish what is
    unsent, drop what is confirmed, and publish again what stayed unconfirmed for too long."""

    def __init__(
        self,
        spool: Spool,
        send: Callable[[Spooled], None],
        interval: float,
        *,
        stored: Callable[[list[str]], list[bool]] | None = None,
        confirm_timeout: float = 120,
    ) -> None:
        self.spool, self.send, self.interval = spool, send, interval
        self.stored, self.confirm_timeout = stored, confirm_timeout
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._failing = False  # the last tick could not reach Redis
        self._thread = threading.Thread(target=self._run, name="lore-spool", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception as exc:
                if not self._failing:
                    log.warning("spool: Redis unreachable (%s); records wait in the local spool", exc)
                self._failing = True
                log.debug("spool: Redis unreachable (%s); %d unsent", exc, self.spool.pending())

    def tick(self) -> None:
        if self.spool.pending():
            self.spool.sync()  # what is about to be published survives a power cut first
            sent = self.spool.flush(self.send)
            if self._failing:
                log.info("spool: published %d records that were waiting for Redis", sent)
        self._failing = False
        if self.stored is None:
            return
        self.spool.confirm(self.stored)
        for item in self.spool.due(self.confirm_timeout):
            log.warning(
                "spool: %s %s not confirmed after %d tries; publishing it again",
                item.task_name,
                item.task_id,
                item.attempts,
            )
            self.send(item)
            self.spool.mark_sent(item.id)

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
