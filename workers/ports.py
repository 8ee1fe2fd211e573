"""The port the chat side codes against: `TaskClient`, and the `SyncHandle`/`SyncStatus` it returns;
and the errors of an index asked remotely (`index.owner = "worker"`), which the chat side may catch.

Only types live here. The implementations (`workers.sender.CeleryTaskClient`,
`workers.inprocess.InProcessTaskClient`) import this module, and the factory that picks one
(`workers.client.make_task_client`) imports them; nothing imports the factory back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from feedback.schema import EscalationRecord, ExpertReplyRecord, InteractionRecord, VoteRecord


@dataclass
class SyncHandle:
    """A requested sync: `joined` is true when one was already running and we attached to it."""

    task_id: str
    source: str
    joined: bool = False


@dataclass
class SyncStatus:
    """Running syncs (with live progress) and the last result of each source."""

    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> progress dict
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> last summary


PROMOTING = "promoting"  # a tuning run's step that starts the promotion's rebuild


@dataclass
class TuneRequest:
    """A retriever-tuning run as asked (`lore tune retriever`, the `lore.tune_retriever` task)."""

    method: Literal["full", "adapter"]
    synthetic: int
    max_minutes: float
    promote: Literal["auto", "never"] = "auto"
    pairs_file: Path | None = None
    requested_by: str | None = None


@dataclass
class GeneratorRequest:
    """An answer-model fine-tuning run as asked (`lore tune generator`, `lore.tune_generator`)."""

    provider: Literal["openai", "local"]
    format: Literal["sft", "dpo"]
    max_minutes: float
    promote: Literal["auto", "never"] = "auto"
    requested_by: str | None = None


class TaskClient(Protocol):
    def record_interaction(self, record: InteractionRecord) -> None:
        """Never blocks the caller for long and never loses the record."""

    def record_vote(self, record: VoteRecord) -> None:
        """Never blocks the caller for long and never loses the vote."""

    def record_escalation(self, record: EscalationRecord) -> None:
        """Like a vote: never blocks for long, never loses it."""

    def record_expert_reply(self, record: ExpertReplyRecord) -> None:
        """Like a vote: never blocks for long, never loses it."""

    def request_sync(self, source: str, *, full: bool = False, requested_by: str | None = None) -> SyncHandle:
        """Queue a sync of one source, or join the one already running."""

    def sync_status(self) -> SyncStatus: ...

    def request_gap_report(self, *, requested_by: str | None = None) -> str:
        """Queue a clustering of the questions (`lore.cluster_gaps`); returns its task id."""
        ...

    def close(self) -> None: ...


class OwnerUnavailable(RuntimeError):
    """The index owner did not reply in time (or Redis is unreachable). The message says what to run."""


class RemoteIndexError(RuntimeError):
    """The owner replied with an error (e.g. the index was built with another model)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
