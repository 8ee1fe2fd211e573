"""Live sync progress and each source's last result, readable from any process.

With Redis: `sync:progress:<source>` (JSON, expires unless refreshed, so a dead worker's
entry disappears), the hash `sync:last` and a short `sync:history` list. Embedded: the same
data in `data_dir/sync-status.json`, written atomically by the process that runs syncs.
`ProgressReporter` throttles writes: a sync calls back for every batch.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol, cast

from redis import Redis

from workers.names import Keys
from workers.ports import SyncStatus

HISTORY_LEN = 200


class Board(Protocol):
    def update(self, source: str, data: dict[str, Any]) -> None: ...

    def finish(self, source: str, result: dict[str, Any]) -> None: ...

    def event(self, data: dict[str, Any]) -> None: ...

    def snapshot(self) -> SyncStatus: ...

    def history(self, limit: int = HISTORY_LEN) -> list[dict[str, Any]]: ...


class RedisBoard:
    def __init__(self, redis: Redis, keys: Keys, ttl: int) -> None:
        self.redis, self.keys, self.ttl = redis, keys, ttl

    def update(self, source: str, data: dict[str, Any]) -> None:
        self.redis.set(self.keys.progress(source), json.dumps(data), ex=self.ttl)

    def finish(self, source: str, result: dict[str, Any]) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.progress(source))
        pipe.hset(self.keys.last, source, json.dumps(result))
        pipe.lpush(self.keys.history, json.dumps({"event": "finished", **result}))
        pipe.ltrim(self.keys.history, 0, HISTORY_LEN - 1)
        pipe.execute()

    def event(self, data: dict[str, Any]) -> None:
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.history, json.dumps({"at": time.time(), **data}))
        pipe.ltrim(self.keys.history, 0, HISTORY_LEN - 1)
        pipe.execute()

    def snapshot(self) -> SyncStatus:
        status = SyncStatus()
        prefix = self.keys.progress("")
        names = sorted(self.redis.scan_iter(match=_glob_escape(prefix) + "*", count=500))
        values: list[Any] = cast(list[Any], self.redis.mget(names)) if names else []
        for key, raw in zip(names, values, strict=True):
            if raw is not None:
                status.running[_text(key)[len(prefix) :]] = json.loads(raw)
        for source, raw in self.redis.hgetall(self.keys.last).items():  # type: ignore[union-attr]
            status.last[_text(source)] = json.loads(raw)
        return status

    def history(self, limit: int = HISTORY_LEN) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(self.keys.history, 0, limit - 1)]  # type: ignore[union-attr]


class FileBoard:
    """Embedded mode: one process runs syncs and writes; any process may read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] = self._load()
        self._data["running"] = {}  # whatever a previous process was running is not running now

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            data = {}
        return {
            "running": data.get("running", {}),
            "last": data.get("last", {}),
            "history": data.get("history", []),
        }

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._data), encoding="utf-8")
        os.replace(tmp, self.path)

    def update(self, source: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._data["running"][source] = {**data, "pid": os.getpid()}
            self._save()

    def finish(self, source: str, result: dict[str, Any]) -> None:
        with self._lock:
            self._data["running"].pop(source, None)
            self._data["last"][source] = result
            self._push({"event": "finished", **result})
            self._save()

    def event(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._push({"at": time.time(), **data})
            self._save()

    def _push(self, item: dict[str, Any]) -> None:
        self._data["history"] = [item, *self._data["history"]][:HISTORY_LEN]

    def snapshot(self) -> SyncStatus:
        with self._lock:
            return SyncStatus(running=dict(self._data["running"]), last=dict(self._data["last"]))

    def history(self, limit: int = HISTORY_LEN) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._data["history"][:limit])


def read_file_board(path: Path) -> SyncStatus:
    """What another process's FileBoard shows, without its running entries if that process is gone."""
    board = FileBoard.__new__(FileBoard)
    board.path = path
    data = board._load()
    running = {s: p for s, p in data["running"].items() if _alive(int(p.get("pid", 0)))}
    return SyncStatus(running=running, last=data["last"])


class ProgressReporter:
    """Turns `Knowledge.sync` progress callbacks into at most a few board writes a second."""

    def __init__(self, board: Board, source: str, task_id: str, *, min_interval: float = 0.5) -> None:
        self.board, self.source, self.task_id, self.min_interval = board, source, task_id, min_interval
        self._last_write = 0.0
        self._last_phase = ""
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, progress: Any) -> None:
        data = progress.as_dict()
        data.pop("skipped", None)  # the count is enough while running
        now = time.time()
        with self._lock:
            self._data = {**data, "task_id": self.task_id, "updated_at": now}
            if data["phase"] == self._last_phase and now - self._last_write < self.min_interval:
                return
            self._last_phase, self._last_write = data["phase"], now
            self.board.update(self.source, self._data)

    def start(self, **extra: Any) -> None:
        self._data = {"source": self.source, "phase": "starting", "task_id": self.task_id, **extra}
        self.heartbeat()

    def heartbeat(self) -> None:
        """Rewrite the latest progress (refreshes its expiry while a long batch embeds)."""
        with self._lock:
            if self._data:
                self._data["updated_at"] = time.time()
                self.board.update(self.source, self._data)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
