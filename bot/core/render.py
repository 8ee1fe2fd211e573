"""Platform-neutral wording: what Lore says, whatever the platform. Adapters only format it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from knowledge.answer import Citation

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

USAGE_ASK = "Ask me something about the docs, e.g. `/ask how do I set up the VPN?`"
HELLO = "Hi! Ask me a question about the docs and I'll answer with sources."
THANKS_UP = "Thanks for the feedback! 👍"
THANKS_DOWN = "Thanks for the feedback. Tell us what was wrong in the form, if you have a moment."
THANKS_DETAILS = "Thanks — your feedback was recorded and helps us fix the docs and the answers."
REINDEX_REFUSED = "Sorry, only Lore admins can run /reindex. Ask an admin if the docs look out of date."
ANSWER_EXPIRED = "That answer is too old to share now. Ask again with /ask and share the new one."
PRIVATE_HINT = (
    "Some passages were left out because not everyone here may read them. "
    "Answer privately to see an answer with your own access."
)
QUESTION_EXPIRED = "That question is too old to answer privately now. Ask me again in a direct message."


def error_text(correlation_id: str) -> str:
    return f"Sorry, something went wrong while answering. Please try again (reference: {correlation_id})."


def rate_limited_text(scope: str, retry_after_s: int) -> str:
    who = "you're" if scope == "user" else "this channel is"
    return f"Sorry, {who} asking faster than I can keep up. Please try again in {retry_after_s} s."


def updated_date(updated_at: str) -> str:
    """'2024-05-01T10:00:00+00:00' -> '2024-05-01'; '' when unknown or not a date."""
    return updated_at[:10] if _DATE.match(updated_at or "") else ""


def source_line(citation: Citation) -> str:
    """`1. Title — https://… (updated 2024-05-01)`: the plain form, for text-only surfaces."""
    date = updated_date(citation.updated_at)
    return f"{citation.n}. {citation.title} — {citation.url}" + (f" (updated {date})" if date else "")


# ---- /reindex ------------------------------------------------------------------------------------


def reindex_started_text(sources: list[str], joined: list[str]) -> str:
    parts = []
    new = [s for s in sources if s not in joined]
    if new:
        parts.append(f"Reindexing {', '.join(new)}: queued…")
    if joined:
        parts.append(f"A sync of {', '.join(joined)} was already running; following it…")
    return " ".join(parts)


def reindex_progress_text(progress: Mapping[str, Mapping[str, Any] | None]) -> str:
    """One line per source from the workers' live progress (None = queued, not started)."""
    lines = ["Reindexing…"]
    for source, p in progress.items():
        if p is None:
            lines.append(f"• {source}: queued")
            continue
        phase = p.get("phase", "running")
        seen, total = p.get("seen"), p.get("total")
        count = f" {seen}/{total} documents" if total else (f" {seen} documents" if seen else "")
        pct = f" ({p['percent']:.0f}%)" if isinstance(p.get("percent"), int | float) and total else ""
        lines.append(f"• {source}: {phase}{count}{pct}")
    return "\n".join(lines)


def reindex_summary_text(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The end of a /reindex: per source, added, changed, deleted, skipped and the time."""
    failed = [s for s, r in results.items() if r.get("error")]
    lines = ["Reindex finished." if not failed else f"Reindex finished with errors in {', '.join(failed)}."]
    for source, r in results.items():
        if r.get("error"):
            lines.append(f"• {source}: failed, index unchanged for it: {r['error']}")
            continue
        skipped = r.get("skipped", 0)
        skipped_n = len(skipped) if isinstance(skipped, list) else int(skipped or 0)
        lines.append(
            f"• {source}: {r.get('added', 0)} added, {r.get('changed', 0)} changed, "
            f"{r.get('deleted', 0)} deleted, {skipped_n} skipped in {float(r.get('seconds', 0)):.1f} s"
        )
    return "\n".join(lines)
