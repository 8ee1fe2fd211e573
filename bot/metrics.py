"""Prometheus metrics of the chat side, counted in the conversation core (one place each).

- `lore_answers_total{platform,outcome}`: once per question the core tried to answer; outcome
  is `answered`, `abstained` or `error`;
- `lore_answer_seconds{platform,stage}`: per answer; stage `retrieve` and `generate` are the
  engine's own timings, `total` is what the asker waited (progress message to answer);
- `lore_votes_total{platform,vote}`: per vote recorded, `up` or `down`.

No label carries a user, channel or question. The web process serves these, the queue depths
(`workers.client.queue_depth_collector`) and, in embedded mode, the in-process syncs' metrics
at `/metrics` (`render_metrics`).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from knowledge.answer import Answer

ANSWERS = Counter(
    "lore_answers_total", "Questions Lore tried to answer, by platform and outcome.", ["platform", "outcome"]
)
ANSWER_SECONDS = Histogram(
    "lore_answer_seconds",
    "Answer latency by stage: retrieve and generate (the engine), total (as the asker waited).",
    ["platform", "stage"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120),
)
VOTES = Counter("lore_votes_total", "Votes recorded, by platform and kind (up, down).", ["platform", "vote"])


def answered(platform: str, answer: Answer, total_seconds: float) -> None:
    ANSWERS.labels(platform, "abstained" if answer.abstained else "answered").inc()
    ANSWER_SECONDS.labels(platform, "retrieve").observe(answer.timings.retrieve_ms / 1000)
    ANSWER_SECONDS.labels(platform, "generate").observe(answer.timings.generate_ms / 1000)
    ANSWER_SECONDS.labels(platform, "total").observe(total_seconds)


def failed(platform: str) -> None:
    ANSWERS.labels(platform, "error").inc()


def voted(platform: str, value: str) -> None:
    VOTES.labels(platform, value).inc()


def render_metrics(extra: CollectorRegistry | None = None) -> bytes:
    """This process's metrics in the Prometheus text format, plus `extra` (e.g. queue depths)."""
    body = generate_latest(REGISTRY)
    return body + generate_latest(extra) if extra is not None else body
