"""Which failures of a sync are worth retrying: the network, a timeout, a 5xx or 429, a busy index.
Not: bad configuration or bad data. One place, beside the code that raises them, so whoever
schedules retries (Celery or the in-process executor) need not know Qdrant's or Redis's errors."""

from __future__ import annotations


def is_transient(exc: BaseException) -> bool:
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
