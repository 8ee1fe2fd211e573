"""The plain functions behind the background tasks, shared by Celery workers and the in-process
executor. `sync` runs one sync of a source, reports its progress and last result, and says how it
ended: done, failed, or retry in N seconds. The Celery task (`workers.tasks.sync_source`) maps
that onto `task.retry`; the in-process client (`workers.inprocess`) schedules it itself. Neither
decides anything about retries on its own. `record_feedback` is the one write behind both
feedback tasks and the in-process writer. `cluster_gaps` and `gaps_digest` are the content-gap
report (feedback/gaps.py) and its digest, behind their tasks and the in-process client."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import DBAPIError, OperationalError

from workers.locks import LockLost
from workers.names import TaskName

if TYPE_CHECKING:
    from config.settings import Settings, WorkerSettings
    from feedback.store import SessionFactory
    from knowledge.embeddings import Embedder
    from knowledge.service import Knowledge
    from knowledge.sync import SyncProgress
    from workers.progress import ProgressReporter


class SyncFailed(Exception):
    """A sync ended with an error (after any retries). The message is the recorded reason."""


class HandBack(Exception):
    """The worker is shutting down: stop this sync at a batch boundary and requeue it."""


@dataclass(frozen=True)
class SyncOutcome:
    """How a sync ended. `retry_in` (seconds) is set when `state` is "retry"."""

    state: Literal["done", "failed", "retry"]
    result: SyncProgress
    retry_in: float = 0.0

    @property
    def error(self) -> str | None:
        return self.result.error


def sync(
    knowledge: Knowledge,
    reporter: ProgressReporter,
    *,
    full: bool,
    attempt: int,
    policy: WorkerSettings,
    check: Callable[[], None] = lambda: None,
    **started: Any,
) -> SyncOutcome:
    """Sync `reporter.source` (attempt 0, 1, …), its progress and last result on `reporter.board`.

    `check` runs at every progress callback and may stop the sync by raising (`LockLost`,
    `HandBack`: they propagate, with no result recorded). `started` is shown while it starts
    (e.g. requested_by, worker). A transient failure with retries left (`policy.sync_max_retries`)
    ends as "retry" after an exponential backoff with jitter.
    """
    reporter.start(attempt=attempt, **started)

    def on_progress(progress: SyncProgress) -> None:
        check()
        reporter(progress)

    result = run_sync(knowledge, reporter.source, full=full, on_progress=on_progress)

    def finish(state: str, **extra: Any) -> None:
        reporter.board.finish(
            reporter.source,
            last_result(result, task_id=reporter.task_id, state=state, attempt=attempt, **extra),
        )

    if result.error and result.transient and attempt < policy.sync_max_retries:
        delay = backoff(attempt, policy.retry_backoff, policy.retry_backoff_max)
        finish("retrying", retry_in=delay)
        return SyncOutcome("retry", result, delay)
    state: Literal["done", "failed"] = "failed" if result.error else "done"
    finish(state)
    return SyncOutcome(state, result)


def run_sync(
    knowledge: Knowledge, source: str, *, full: bool, on_progress: Callable[[SyncProgress], None]
) -> SyncProgress:
    """`Knowledge.sync`, with exceptions turned into a failed result marked transient or not
    (`knowledge.transient.is_transient`).

    Source problems already come back as `.error`/`.transient`; this adds the index side
    (a busy or unreachable Qdrant) and configuration errors (an unknown source). Every sync that
    ends (not one stopped by `LockLost` or `HandBack`) is counted in `workers.metrics`.
    """
    from knowledge.sync import SyncProgress
    from knowledge.transient import is_transient
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


# A database blip: worth retrying a feedback write (the writes are idempotent).
FEEDBACK_TRANSIENT: tuple[type[Exception], ...] = (OperationalError, DBAPIError)


def record_feedback(sessions: SessionFactory, name: str, payload: dict[str, Any]) -> bool:
    """Store one interaction, vote, escalation or expert reply (`name` is its task's name). False
    if it was already stored."""
    from feedback.experts import record_escalation, record_expert_reply
    from feedback.schema import EscalationRecord, ExpertReplyRecord, InteractionRecord, VoteRecord
    from feedback.store import record_interaction, record_vote

    if name == TaskName.RECORD_VOTE:
        return record_vote(sessions, VoteRecord.model_validate(payload))
    if name == TaskName.RECORD_INTERACTION:
        return record_interaction(sessions, InteractionRecord.model_validate(payload))
    if name == TaskName.RECORD_ESCALATION:
        return record_escalation(sessions, EscalationRecord.model_validate(payload))
    if name == TaskName.RECORD_EXPERT_REPLY:
        return record_expert_reply(sessions, ExpertReplyRecord.model_validate(payload))
    raise ValueError(f"not a feedback task: {name}")


def cluster_gaps(
    sessions: SessionFactory, settings: Settings, embedder: Embedder, *, requested_by: str | None = None
) -> list[dict[str, Any]]:
    """Cluster the questions (both kinds, `feedback.gaps.cluster_questions`) and store the runs."""
    from feedback.gaps import cluster_questions

    return [r.as_dict() for r in cluster_questions(sessions, settings, embedder, requested_by=requested_by)]


def gaps_digest(
    sessions: SessionFactory,
    settings: Settings,
    post: Callable[[str, str], None],
    *,
    now: datetime | None = None,
    is_public: Callable[[str, str], bool] | None = None,
) -> dict[str, Any]:
    """Post the gaps asked about most during the last `gaps.digest_every` (from the latest run)
    to `gaps.digest_channel` through `post(channel, text)`. Nothing is posted when there are none.

    A whole channel reads the digest, so it quotes only questions asked in a channel everyone
    may read: asked there (`feedback.gaps.asked_where`), a channel no access rule grants anything
    (a restricted audience), and public on its platform (`is_public(platform, channel)`, by
    default `workers.post.channel_is_public`, asked once per channel). A digest channel shared
    with another organisation (`workers.post.channel_is_shared`) quotes none: counts only."""
    from config.settings import parse_duration
    from feedback.gaps import digest_gaps, latest_report
    from knowledge.access import AccessPolicy
    from workers.post import channel_is_public, channel_is_shared, digest_message

    g = settings.gaps
    if not g.digest_channel:
        return {"posted": False, "reason": "gaps.digest_channel is not set"}
    report = latest_report(sessions, "gaps")
    if report is None:
        return {"posted": False, "reason": "no clustering run yet"}
    since = (now or datetime.now(UTC)) - parse_duration(g.digest_every or "7d")
    granted = AccessPolicy(settings).everything().grants  # channels some rule grants documents
    check = is_public or (lambda platform, channel: channel_is_public(settings, platform, channel))
    public: dict[tuple[str, str], bool] = {}
    outsiders = channel_is_shared(settings, g.digest_channel)  # people of another organisation read it

    def shown(member: Mapping[str, Any]) -> bool:
        platform, channel = str(member["platform"]), str(member.get("channel") or "")
        if outsiders or member.get("where") != "channel" or f"channel:{platform}:{channel}" in granted:
            return False
        if (platform, channel) not in public:
            public[(platform, channel)] = check(platform, channel)
        return public[(platform, channel)]

    top = digest_gaps(report.clusters, since=since, top=g.digest_top, shown=shown)
    if not top:
        return {"posted": False, "reason": "no new gaps"}
    platform = g.digest_channel.partition(":")[0]
    post(g.digest_channel, digest_message(platform, top, since=since, url=g.console_url))
    return {"posted": True, "channel": g.digest_channel, "clusters": len(top)}
