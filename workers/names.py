"""Task names, queues and Redis key names: constants the senders and the workers share.

Nothing here imports Celery. `bot` reaches `workers` only through `workers.ports` and `workers.client`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from feedback.schema import EscalationRecord, ExpertReplyRecord, InteractionRecord, VoteRecord

FeedbackRecord = InteractionRecord | VoteRecord | EscalationRecord | ExpertReplyRecord


class Queue(StrEnum):
    INGEST = "ingest"  # syncs: heavy, low concurrency (one process owns an embedded index)
    FEEDBACK = "feedback"  # light: interaction and vote writes, and the sync dispatcher
    # Questions for the process that owns the index (index.owner = "worker"): the ingest worker
    # of an embedded index serves it beside its syncs; with a Qdrant server, `lore worker -Q answer`.
    ANSWER = "answer"
    TRAIN = "train"  # retraining (`lore tune`): long, one at a time, never in the way of votes or syncs


class TaskName(StrEnum):
    SYNC_SOURCE = "lore.sync_source"
    SYNC_ALL = "lore.sync_all"
    RECORD_INTERACTION = "lore.record_interaction"
    RECORD_VOTE = "lore.record_vote"
    RECORD_ESCALATION = "lore.record_escalation"  # "Ask an expert" clicked (bot/core/escalation.py)
    RECORD_EXPERT_REPLY = "lore.record_expert_reply"  # an expert's (or an accepted) reply in its thread
    EXPORT_DATASETS = "lore.export_datasets"
    ANSWER = "lore.answer"  # a question, answered by the index owner; the reply goes to Keys.reply
    INDEX_QUERY = "lore.index_query"  # a read of the owner's index: counts, sources, versions, info
    CLUSTER_GAPS = "lore.cluster_gaps"  # cluster the questions (feedback/gaps.py) and store the run
    GAPS_DIGEST = "lore.gaps_digest"  # post the top new gaps to gaps.digest_channel
    TUNE_RETRIEVER = "lore.tune_retriever"  # train, measure and maybe promote a retriever (workers/tuning.py)
    TUNE_GENERATOR = "lore.tune_generator"  # fine-tune, measure and maybe promote the answer model
    CHANGE_MODEL = "lore.change_model"  # promote a retriever or roll back (the console's Models page)


QUEUE_OF: dict[TaskName, Queue] = {
    TaskName.SYNC_SOURCE: Queue.INGEST,
    TaskName.SYNC_ALL: Queue.FEEDBACK,
    TaskName.RECORD_INTERACTION: Queue.FEEDBACK,
    TaskName.RECORD_VOTE: Queue.FEEDBACK,
    TaskName.RECORD_ESCALATION: Queue.FEEDBACK,
    TaskName.RECORD_EXPERT_REPLY: Queue.FEEDBACK,
    TaskName.EXPORT_DATASETS: Queue.FEEDBACK,  # reads the database and writes files; no index
    TaskName.ANSWER: Queue.ANSWER,
    TaskName.INDEX_QUERY: Queue.ANSWER,
    TaskName.CLUSTER_GAPS: Queue.FEEDBACK,  # reads the database, embeds questions; no index
    TaskName.GAPS_DIGEST: Queue.FEEDBACK,
    TaskName.TUNE_RETRIEVER: Queue.TRAIN,
    TaskName.TUNE_GENERATOR: Queue.TRAIN,
    TaskName.CHANGE_MODEL: Queue.TRAIN,  # a full model's promotion re-indexes every source
}


def record_task(record: FeedbackRecord) -> tuple[TaskName, str, dict[str, Any]]:
    """The task that stores `record`, its task id and its payload. The id is what a redelivery
    repeats, so each record is stored once; a reply's acceptance is a record of its own."""
    payload = record.model_dump(mode="json")
    if isinstance(record, InteractionRecord):
        return TaskName.RECORD_INTERACTION, f"interaction-{record.answer_id}", payload
    if isinstance(record, VoteRecord):
        return TaskName.RECORD_VOTE, f"vote-{record.vote_id}", payload
    if isinstance(record, EscalationRecord):
        return TaskName.RECORD_ESCALATION, f"escalation-{record.answer_id}", payload
    key = f"{record.reply_id}:{'accepted' if record.accepted else 'posted'}"
    return TaskName.RECORD_EXPERT_REPLY, f"expert-{key}", payload


class Keys:
    """Lore's own Redis keys, under the configured prefix (`redis.prefix`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def lock(self, source: str) -> str:  # task id of the running sync
        return f"{self.prefix}sync:lock:{source}"

    def queued(self, source: str) -> str:  # task id of a requested sync not started yet
        return f"{self.prefix}sync:queued:{source}"

    def progress(self, source: str) -> str:
        return f"{self.prefix}sync:progress:{source}"

    def stored(self, task_id: str) -> str:  # set by the worker once a record is in the database
        return f"{self.prefix}stored:{task_id}"

    def reply(self, task_id: str) -> str:  # a list the index owner pushes its reply to
        return f"{self.prefix}reply:{task_id}"

    def queue(self, queue: str) -> str:  # the broker's list of waiting messages (kombu's Redis transport)
        return f"{self.prefix}{queue}"

    @property
    def last(self) -> str:  # hash: source -> JSON of its last result
        return f"{self.prefix}sync:last"

    @property
    def history(self) -> str:  # list of recent sync events, newest first
        return f"{self.prefix}sync:history"
