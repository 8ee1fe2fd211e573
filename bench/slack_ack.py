"""Slack adapter latency: how fast events are acked and the progress message appears while
answers are computed in the background.

Lore's real adapter (Bolt AsyncApp over Socket Mode) runs against the local Slack emulator, with
the real answer engine (MiniLM + the extractive generator over the example handbook) and the
real embedded task client. Each scenario sends N `app_mention` envelopes (all at once, or at a
fixed rate) and measures, per event:

- ack latency: envelope sent -> the adapter's ack received on the websocket (the emulator's timing);
- progress: envelope sent -> the "Searching the docs…" chat.postMessage reaching the Web API;
- answer: envelope sent -> the chat.update carrying the answer.

    .venv/bin/python bench/slack_ack.py                 # 200 events: a burst, then 2/s
    .venv/bin/python bench/slack_ack.py --events 50 --rate 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from _common import HANDBOOK, percentile, scratch, settings_for

from tests.emulators.slack import APP_TOKEN, BOT_TOKEN, BOT_USER_ID, SlackEmulator, app_mention_event

QUESTIONS = [
    "how do I set up the VPN?",
    "what is the per diem in New York?",
    "how many days of parental leave do we get?",
    "who do I page for a SEV1?",
    "how do I request new software?",
    "can I carry over unused PTO?",
]


async def scenario(slack: SlackEmulator, n: int, rate: float, *, label: str) -> dict[str, Any]:
    sent: list[tuple[str, str, float]] = []  # (envelope id, event ts, sent at)
    interval = 1 / rate if rate else 0.0
    started = time.monotonic()
    for i in range(n):
        if interval:
            await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
        ts = slack.next_ts()
        event = app_mention_event(
            f"<@{BOT_USER_ID}> {QUESTIONS[i % len(QUESTIONS)]}", f"U{i % 40}", f"C{i % 8}", ts
        )
        envelope = await slack.send_event(event)
        sent.append((envelope, ts, slack._sent_at[envelope]))
    threads = {ts for _, ts, _ in sent}

    def answered() -> set[str]:
        posts = {c.args["ts"]: c for c in slack.calls_to("chat.update") if c.status == 200}
        return {
            m.get("thread_ts") for ch in slack.messages.values() for m in ch if m["ts"] in posts
        } & threads

    await slack.wait_until(lambda: len(answered()) == n, timeout=600, what=f"{n} answers")
    acks = {a.envelope_id: a.latency for a in slack.acks}
    progress_at = {c.args.get("thread_ts"): c.at for c in slack.calls_to("chat.postMessage")}
    update_at: dict[str, float] = {}
    for call in slack.calls_to("chat.update"):
        for ch in slack.messages.values():
            for m in ch:
                if m["ts"] == call.args["ts"] and m.get("thread_ts") in threads:
                    update_at.setdefault(m["thread_ts"], call.at)
    ack_ms = [acks[e] * 1000 for e, _, _ in sent]
    progress_ms = [(progress_at[ts] - at) * 1000 for _, ts, at in sent]
    answer_ms = [(update_at[ts] - at) * 1000 for _, ts, at in sent]
    elapsed = max(update_at.values()) - started
    return {
        "scenario": label,
        "events": n,
        "ack_p50_ms": percentile(ack_ms, 50),
        "ack_p99_ms": percentile(ack_ms, 99),
        "ack_max_ms": max(ack_ms),
        "progress_p50_ms": percentile(progress_ms, 50),
        "progress_p99_ms": percentile(progress_ms, 99),
        "answer_p50_ms": percentile(answer_ms, 50),
        "answer_p99_ms": percentile(answer_ms, 99),
        "answers_per_s": n / elapsed,
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    from bot.services import build_services
    from bot.slack.app import build_slack_app
    from knowledge.service import Knowledge

    data = args.data or scratch("slack") / "data"
    sources = [
        {"name": "handbook", "type": "directory", "path": str(HANDBOOK), "include": ["**/*.md", "**/*.html"]}
    ]
    results = []
    async with SlackEmulator() as slack:
        settings = settings_for(
            data,
            sources,
            slack={"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_url": slack.base_url},
            chat={"user_per_minute": 100_000, "channel_per_minute": 100_000},
        )
        kn = Knowledge(settings)
        t0 = time.monotonic()
        kn.sync("handbook")
        print(f"synced the handbook in {time.monotonic() - t0:.1f} s", flush=True)
        services = build_services(settings, knowledge=kn)
        adapter = build_slack_app(settings, services.conversation)
        await adapter.start()
        handler = AsyncSocketModeHandler(adapter.app, APP_TOKEN)
        await handler.connect_async()
        try:
            await scenario(slack, 6, 0, label="warm-up")  # load the model, open connections
            for rate in args.rate:
                slack.calls.clear()
                slack.acks.clear()
                label = "burst (all at once)" if rate == 0 else f"{rate:g} events/s"
                result = await scenario(slack, args.events, rate, label=label)
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            await handler.close_async()
            await adapter.drain(30)
            await adapter.close()
            await services.aclose()
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | events | ack p50 | ack p99 | progress p50 | progress p99 "
        "| answer p50 | answer p99 | answers/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['scenario']} | {r['events']} | {r['ack_p50_ms']:.1f} ms | {r['ack_p99_ms']:.1f} ms "
            f"| {r['progress_p50_ms']:.0f} ms | {r['progress_p99_ms']:.0f} ms "
            f"| {r['answer_p50_ms'] / 1000:.1f} s | {r['answer_p99_ms'] / 1000:.1f} s "
            f"| {r['answers_per_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, nargs="+", default=[0, 2], help="events/s; 0 = all at once")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--data", type=Path, help="data dir to (re)use; the sync is incremental (default: fresh)"
    )
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval, in seconds (an experiment)"
    )
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    results = asyncio.run(main(args))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
