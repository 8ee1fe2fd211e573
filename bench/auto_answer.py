"""Auto-answer replay: a help channel's log played through Lore's real conversation core.

    .venv/bin/python bench/auto_answer.py [--min-confidence 0.6] [--json]

The log mixes the example handbook's questions (examples/handbook/questions.jsonl: 80 that the
handbook answers, 11 it does not), off-topic questions nobody's docs would answer, and chatter,
in a seeded order, each line from its own person (so the hourly throttles never decide). Every
line goes to `ConversationService.handle_message` as a new top-level message in an
`[[slack.auto_answer]]` channel, with the real question detector, language check, index
(handbook, extractive generator) and abstention; the outbox records what Lore would post.

Reported: the share of lines answered and left silent, per kind; and as a 👍 proxy, the share
of posted answers whose first citation is a document the question's reference lists (answers to
off-topic questions or chatter count as wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from typing import Any

from _common import HANDBOOK, scratch, settings_for

CHANNEL = "C0HELP01"

OFF_TOPIC = [
    "anyone know a good pizza place near the office?",
    "what time does the football game start tonight?",
    "how do I cook rice in a microwave?",
    "who won the world cup in 2018?",
    "does anyone know a good dentist in Berlin?",
    "what's the best way to learn rust?",
    "can someone recommend a podcast about economics?",
    "how do I get rid of fruit flies in my kitchen?",
    "is it going to rain tomorrow afternoon?",
    "what's a good gift for a 5 year old?",
    "how long should I boil an egg for a runny yolk?",
    "does anybody know how to fix a squeaky door hinge?",
    "which hiking trails near the city are good in winter?",
    "how do you say thank you in Japanese?",
    "what's the capital of Australia?",
    "how do I change a bike tyre?",
    "any tips for a first marathon?",
    "where can I buy a cheap standing desk for home?",
    "how do I convert a video to a gif on linux?",
    "what's the difference between an espresso and a ristretto?",
]

CHATTER = [
    "morning all ☀️",
    "deploying the billing service now",
    "thanks, that fixed it!",
    "lgtm",
    "brb, grabbing coffee",
    "the build is green again 🎉",
    "anyone around?",
    "I'll look into it after lunch",
    "ok",
    "merged, thanks for the review",
    "heads up: the staging db restarts at 5pm",
    "haha same",
    "welcome to the channel, Mira!",
    "can someone review my PR when they get a chance?",
    "who's joining the retro later?",
    "out today, back tomorrow",
    "oops, wrong channel",
    "nice work on the release everyone",
    "I'm on call this weekend",
    "+1",
    "ticket filed: IT-5120",
    "how was the offsite?",
    "it works now, never mind",
    "sharing the slides from today's demo",
    "closing this thread, resolved",
]


def channel_log(seed: int = 20261206) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for row in (json.loads(line) for line in (HANDBOOK / "questions.jsonl").read_text().splitlines() if line):
        kind = "answerable" if row["sources"] else "not in the docs"
        lines.append({"text": row["question"], "kind": kind, "sources": row["sources"]})
    lines += [{"text": t, "kind": "off-topic", "sources": []} for t in OFF_TOPIC]
    lines += [{"text": t, "kind": "chatter", "sources": []} for t in CHATTER]
    random.Random(seed).shuffle(lines)
    return lines


class RecordingOutbox:
    """What Lore would post, by the thread it would post in."""

    max_message_len = 3000

    def __init__(self) -> None:
        self.posted: dict[str, list[Any]] = {}

    async def send(self, target: Any, reply: Any) -> Any:
        from bot.core.messages import MessageRef

        self.posted.setdefault(target.thread or "", []).append(reply)
        return MessageRef(target, target.channel, f"{time.time():.6f}")

    async def update(self, ref: Any, reply: Any) -> Any:
        self.posted.setdefault(ref.target.thread or "", []).append(reply)
        return ref


async def replay(lines: list[dict[str, Any]], min_confidence: float | None = None) -> list[dict[str, Any]]:
    from bot.core.messages import AnswerReply, IncomingMessage
    from bot.core.ports import Surface
    from bot.services import build_services
    from knowledge.service import Knowledge

    data = scratch("auto-answer")
    source = {"name": "handbook", "type": "directory", "path": str(HANDBOOK)}
    settings = settings_for(
        data / "data",
        [source],
        slack={
            "auto_answer": [
                {
                    "channel": CHANNEL,
                    "channel_per_hour": 100_000,
                    "user_per_hour": 100,
                    "min_confidence": min_confidence,
                }
            ]
        },
        chat={"user_per_minute": 1000, "channel_per_minute": 1000},
    )
    kn = Knowledge(settings)
    assert kn.sync("handbook").error is None
    services = build_services(settings, knowledge=kn)
    outbox = RecordingOutbox()
    surface = Surface("slack", outbox)
    results = []
    try:
        for i, line in enumerate(lines):
            ts = f"1765000000.{i:06d}"
            msg = IncomingMessage(
                platform="slack",
                channel=CHANNEL,
                message_id=ts,
                author=f"U{i:05d}",
                text=line["text"],
                reply_thread=ts,
            )
            started = time.perf_counter()
            outcome = await services.conversation.handle_message(msg, surface)
            ms = (time.perf_counter() - started) * 1000
            replies = outbox.posted.get(ts, [])
            answers = [r for r in replies if isinstance(r, AnswerReply)]
            cited = answers[0].answer.citations[0].path if answers and answers[0].answer.citations else None
            results.append(
                line
                | {
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "answered": bool(answers),
                    "offered": bool(replies) and not answers,
                    "cited": cited,
                    "correct": bool(answers) and cited in line["sources"],
                    "ms": ms,
                }
            )
    finally:
        await services.aclose()
    return results


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def share(n: int, d: int) -> float:
        return round(n / d, 3) if d else 0.0

    kinds = Counter(r["kind"] for r in results)
    per_kind = {
        kind: {
            "lines": n,
            "answered": share(sum(r["answered"] for r in results if r["kind"] == kind), n),
            "silent": share(
                sum(not r["answered"] and not r["offered"] for r in results if r["kind"] == kind), n
            ),
        }
        for kind, n in sorted(kinds.items())
    }
    answered = [r for r in results if r["answered"]]
    answerable = [r for r in results if r["kind"] == "answerable"]
    ms = sorted(r["ms"] for r in results)
    return {
        "lines": len(results),
        "answered": share(len(answered), len(results)),
        "silent": share(sum(not r["answered"] and not r["offered"] for r in results), len(results)),
        "answers_correct": share(sum(r["correct"] for r in answered), len(answered)),
        "answerable_answered_correctly": share(sum(r["correct"] for r in answerable), len(answerable)),
        "per_kind": per_kind,
        "p50_ms": round(ms[len(ms) // 2], 1),
        "p95_ms": round(ms[int(len(ms) * 0.95)], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print every line's result too")
    parser.add_argument("--min-confidence", type=float, default=None, help="the channel's min_confidence")
    args = parser.parse_args()
    results = asyncio.run(replay(channel_log(), args.min_confidence))
    print(json.dumps(summary(results), indent=2))
    wrong = [r for r in results if r["answered"] and not r["correct"]]
    print(f"answers citing another document ({len(wrong)}):")
    for r in wrong:
        expected = ", ".join(r["sources"]) or "no answer"
        print(f"  [{r['kind']}] {r['text']!r} -> {r['cited']} (expected {expected})")
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
