"""The console's Overview: per day over a chosen range, questions by platform, the 👍 share, the
abstention rate, escalations to experts (and the expert answers captured) and the p50/p95 answer
time. Plain numbers; the page draws them as charts.

Questions, the abstention rate and the answer times count what Lore posted (answers and
"I couldn't find this"). Questions an auto-answer channel saw and Lore kept quiet on
(`feedback.schema.silent`) are counted apart, as `silent`: nobody asked Lore, so they would
inflate the abstention rate with answers nobody saw.

Percentiles are computed here in Python from each day's answer times, so SQLite and PostgreSQL
agree (SQLite has no percentile function).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from feedback.models import Escalation, ExpertAnswer, Interaction, Vote
from feedback.store import SessionFactory, silent_only

MAX_DAYS = 366


def day_range(date_from: date | None, date_to: date | None, *, default_days: int = 30) -> tuple[date, date]:
    """The range asked for, clipped to `MAX_DAYS` (default: the last `default_days` days)."""
    end = date_to or datetime.now(UTC).date()
    start = date_from or end - timedelta(days=default_days - 1)
    if start > end:
        start, end = end, start
    return max(start, end - timedelta(days=MAX_DAYS - 1)), end


def overview(sessions: SessionFactory, date_from: date, date_to: date) -> dict[str, Any]:
    start = datetime.combine(date_from, time.min, tzinfo=UTC)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)
    days = [(date_from + timedelta(days=i)).isoformat() for i in range((date_to - date_from).days + 1)]
    per_platform: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(days, 0))
    abstained = dict.fromkeys(days, 0)
    silent = dict.fromkeys(days, 0)
    times: dict[str, list[float]] = {d: [] for d in days}
    with sessions() as session:
        for created, platform, was_abstained, total_ms, was_silent in session.execute(
            select(
                Interaction.created_at,
                Interaction.platform,
                Interaction.abstained,
                Interaction.total_ms,
                silent_only(),
            ).where(Interaction.created_at >= start, Interaction.created_at < end)
        ):
            day = created.astimezone(UTC).date().isoformat()
            if was_silent:
                silent[day] += 1
                continue
            per_platform[platform][day] += 1
            abstained[day] += bool(was_abstained)
            times[day].append(float(total_ms))
        up = dict.fromkeys(days, 0)
        down = dict.fromkeys(days, 0)
        for created, value in session.execute(
            select(Vote.created_at, Vote.value).where(Vote.created_at >= start, Vote.created_at < end)
        ):
            day = created.astimezone(UTC).date().isoformat()
            (up if value == "up" else down)[day] += 1
        escalations = dict.fromkeys(days, 0)
        expert_answers = dict.fromkeys(days, 0)
        for counts, column in (
            (escalations, Escalation.created_at),
            (expert_answers, ExpertAnswer.created_at),
        ):
            for (created,) in session.execute(select(column).where(column >= start, column < end)):
                counts[created.astimezone(UTC).date().isoformat()] += 1

    def share(part: int, whole: int) -> float | None:
        return round(100 * part / whole, 1) if whole else None

    def percentile(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    questions = [sum(per_platform[p][d] for p in per_platform) for d in days]
    total_up, total_down = sum(up.values()), sum(down.values())
    all_times = [t for d in days for t in times[d]]
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "days": days,
        "questions": {p: [per_platform[p][d] for d in days] for p in sorted(per_platform)},
        "up_share": [share(up[d], up[d] + down[d]) for d in days],
        "abstention": [share(abstained[d], q) for d, q in zip(days, questions, strict=True)],
        "p50_ms": [percentile(times[d], 50) for d in days],
        "p95_ms": [percentile(times[d], 95) for d in days],
        "escalations": [escalations[d] for d in days],
        "expert_answers": [expert_answers[d] for d in days],
        "silent": [silent[d] for d in days],
        "totals": {
            "questions": sum(questions),
            "up": total_up,
            "down": total_down,
            "up_share": share(total_up, total_up + total_down),
            "abstention": share(sum(abstained.values()), sum(questions)),
            "p50_ms": percentile(all_times, 50),
            "p95_ms": percentile(all_times, 95),
            "escalations": sum(escalations.values()),
            "expert_answers": sum(expert_answers.values()),
            "silent": sum(silent.values()),
        },
    }
