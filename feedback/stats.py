"""`lore feedback stats`: answers and votes by day and platform, and the most down-voted questions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from feedback.models import Interaction, Vote
from feedback.store import SessionFactory, posted, silent_only


def feedback_stats(session_factory: SessionFactory, *, days: int = 30, top: int = 10) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(days=days)
    up = func.sum(case((Vote.value == "up", 1), else_=0))
    down = func.sum(case((Vote.value == "down", 1), else_=0))
    with session_factory() as session:
        rows: dict[tuple[str, str], dict[str, Any]] = {}

        def row(day: Any, platform: str) -> dict[str, Any]:
            key = (str(day)[:10], platform)
            return rows.setdefault(
                key, {"day": key[0], "platform": platform, "answers": 0, "up": 0, "down": 0}
            )

        answer_day = func.date(Interaction.created_at)
        for day, platform, n, abstained in session.execute(
            select(
                answer_day,
                Interaction.platform,
                func.count(),
                func.sum(case((Interaction.abstained, 1), else_=0)),
            )
            .where(Interaction.created_at >= since, posted())
            .group_by(answer_day, Interaction.platform)
        ):
            r = row(day, platform)
            r["answers"], r["abstained"] = int(n), int(abstained or 0)
        vote_day = func.date(Vote.created_at)
        for day, platform, n_up, n_down in session.execute(
            select(vote_day, Vote.platform, up, down)
            .where(Vote.created_at >= since)
            .group_by(vote_day, Vote.platform)
        ):
            r = row(day, platform)
            r["up"], r["down"] = int(n_up or 0), int(n_down or 0)
        by_day = [{"abstained": 0, **r} for _k, r in sorted(rows.items(), reverse=True)]

        # Current votes only: someone who changed their mind to "up" no longer counts as "down".
        worst = session.execute(
            select(
                Interaction.question,
                down.label("down"),
                up.label("up"),
                func.count(func.distinct(Interaction.answer_id)),
            )
            .join(Vote, Vote.answer_id == Interaction.answer_id)
            .where(Vote.created_at >= since)
            .group_by(Interaction.question)
            .having(down > 0)
            .order_by(down.desc(), Interaction.question)
            .limit(top)
        ).all()
        reasons = session.execute(
            select(Vote.reason, func.count())
            .where(Vote.value == "down", Vote.created_at >= since)
            .group_by(Vote.reason)
        ).all()
        totals = session.execute(
            select(func.count(), up, down).select_from(Vote).where(Vote.created_at >= since)
        ).one()
        answers = session.scalar(
            select(func.count()).select_from(Interaction).where(Interaction.created_at >= since, posted())
        )
        silent = session.scalar(
            select(func.count())
            .select_from(Interaction)
            .where(Interaction.created_at >= since, silent_only())
        )
    return {
        "days": days,
        "totals": {
            "answers": int(answers or 0),
            "silent": int(silent or 0),  # auto-answer questions Lore kept quiet on (not answers)
            "votes": int(totals[0]),
            "up": int(totals[1] or 0),
            "down": int(totals[2] or 0),
        },
        "by_day": by_day,
        "down_reasons": {str(reason or "none"): int(n) for reason, n in reasons},
        "most_downvoted": [
            {"question": q, "down": int(d or 0), "up": int(u or 0), "answers": int(a)} for q, d, u, a in worst
        ],
    }
