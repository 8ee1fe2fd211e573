"""The plain functions behind the sync tasks, shared by Celery workers and the in-process
executor: run a sync, classify failures, build the last-result record, compute backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.locks import LockLost

if TYPE_CHECKING:
    from knowledge.service import Knowledge
    from knowledge.sync import SyncProgress


class SyncFailed(Exception):
    """A sync ended with an error (after any retries). The message is the recorded reason."""


class HandBack(Exception):
    """The worker is shutting down: stop this sync at a batch boundary and requeue it."""


def run_sync(
    knowledge: Knowledge, source: str, *, full: bool, on_progress: Callable[[SyncProgress], None]
) -> SyncProgress:
    """`Knowledge.sync`, with exceptions turned into a failed result marked transient or not.

    Source problems already come back as `.error`/`.transient`; this adds the index side
    (a busy or unreachable Qdrant) and configuration errors (an unknown source). Every sync that
    ends (not one stopped by `LockLost` or `HandBack`) is counted in `workers.metrics`.
    """
    from knowledge.sync import SyncProgress
    from workers.metrics import observe_sync

    started = time.monotonic()
    try:
        result = knowledge.sync(source, full=full, on_progress=on_progress)
    except (LockLost, HandBack):
        raise
    except KeyError as exc:  # unknown source: configuration, retrying won't help
        result = SyncProgress(source=source, phase="failed", error=str(exc.args[0]), transient=False)
    except Exception as exc:
        result = SyncProgress(
            source=source, phase="failed", error=f"{type(exc).__name__}: {exc}", transient=is_transient(exc)
        )
    observe_sync(source, result, time.monotonic() - started)
    return result


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the network, a timeout, a 5xx, a busy index. Not: bad config, bad data."""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    from knowledge.sources import SourceUnavailable
    from knowledge.store import DataDirLocked

    if isinstance(exc, SourceUnavailable):
        return exc.transient
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    if isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | httpx.TransportError
        | ResponseHandlingException
        | RedisConnectionError
        | RedisTimeout
        | DataDirLocked,
    ):
        return True
    # Qdrant local mode: the storage folder is held by another process (busy, not broken).
    return isinstance(exc, RuntimeError) and "already accessed by another instance" in str(exc)


def last_result(
    progress: SyncProgress, *, task_id: str, state: str, attempt: int, **extra: Any
) -> dict[str, Any]:
    """What `lore sync status` shows for a source: its summary plus how the run ended."""
    data = progress.summary()
    data.update(
        source=progress.source,
        task_id=task_id,
        state=state,  # done, failed, retrying
        attempt=attempt,
        error=progress.error,
        transient=progress.transient,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        finished_ts=time.time(),
        **extra,
    )
    return data


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential with jitter: base, 2·base, 4·base … up to cap (attempt starts at 0)."""
    delay = min(cap, base * 2**attempt)
    return float(round(delay * random.uniform(0.8, 1.0), 2))  # noqa: S311 - jitter, not security
