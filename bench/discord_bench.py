"""Discord adapter: event-loop lag while questions are answered, and time to the first visible
reaction.

Lore's real bot (discord.py `commands.Bot`, the real embedded task client) runs against the local
Discord gateway + REST emulator, answering with MiniLM and the extractive generator over the
example handbook. Each scenario sends MESSAGE_CREATE events (DMs from different users, so each
reaction is unambiguous) and measures:

- event-loop lag: a sampler task sleeps 5 ms in a loop and records how late it wakes up, for the
  whole scenario (p50, p99, max). The emulator shares the loop, so this is an upper bound;
- first reaction: MESSAGE_CREATE dispatched -> the first typing POST or message POST for that
  channel reaching the emulator's REST API;
- answer: MESSAGE_CREATE dispatched -> the message carrying the answer's vote buttons;
- heartbeats: the largest gap between two heartbeats the gateway received during the scenario
  (the interval is 1 s here; the last beat before it and its end count), and whether the
  session was ever resumed or re-identified.

    .venv/bin/python bench/discord_bench.py                  # 20 at once, then one at a time
    .venv/bin/python bench/discord_bench.py --burst 50 --data /tmp/lore-bench-data
    .venv/bin/python bench/discord_bench.py --on-loop      # the contrast: the engine ON the event loop
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

from _common import HANDBOOK, percentile, scratch, settings_for

from tests.emulators.discord_emu import (
    DiscordEmulator,
    make_guild,
    make_text_channel,
    make_user,
    message_create,
    patch_discord,
)

QUESTIONS = [
    "how do I set up the VPN?",
    "what is the per diem in New York?",
    "how many days of parental leave do we get?",
    "who do I page for a SEV1?",
    "how do I request new software?",
    "can I carry over unused PTO?",
]
HEARTBEAT_MS = 1000
_users = itertools.count(1)


class LagSampler:
    """How late a 5 ms sleep wakes up: what any other coroutine (a heartbeat) would suffer."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.period)
            self.lags_ms.append(max(0.0, (time.monotonic() - started - self.period) * 1000))

    def __enter__(self) -> LagSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def scenario(emu: DiscordEmulator, n: int, *, at_once: bool, label: str) -> dict[str, Any]:
    sent: dict[str, float] = {}  # DM channel -> dispatched at
    resumes, identifies = emu.resume_count, emu.identify_count
    started = time.monotonic()

    def answered(channel: str) -> float | None:
        for m in emu.history.get(channel, []):
            if m["author"]["id"] == emu.bot_user["id"] and m.get("components"):
                return answer_at.setdefault(channel, time.monotonic())
        return None

    answer_at: dict[str, float] = {}

    async def watch() -> None:
        while len(answer_at) < n:
            for channel in sent:
                answered(channel)
            await asyncio.sleep(0.002)

    with LagSampler() as lag:
        watcher = asyncio.create_task(watch())
        for i in range(n):
            user = make_user(1_500_000_000_000_000_000 + next(_users), f"user{i}")
            channel = str(1_600_000_000_000_000_000 + next(_users))
            msg = message_create(QUESTIONS[i % len(QUESTIONS)], user, channel)
            sent[channel] = time.monotonic()
            await emu.dispatch("MESSAGE_CREATE", msg)
            if not at_once:
                await _until(lambda ch=channel: ch in answer_at, 120)
        await asyncio.wait_for(watcher, 600)
    first: dict[str, float] = {}
    for call in emu.calls:
        parts = call.path.split("/")
        if (
            call.method == "POST"
            and len(parts) == 4
            and parts[1] == "channels"
            and parts[3] in ("typing", "messages")
        ):
            first.setdefault(parts[2], call.at)
    reaction_ms = [(first[ch] - at) * 1000 for ch, at in sent.items()]
    answer_ms = [(answer_at[ch] - at) * 1000 for ch, at in sent.items()]
    finished = time.monotonic()
    received = [got for got, _ in emu.heartbeats]
    before = [t for t in received if t < started][-1:]  # the last beat before, so a stall at the start counts
    beats = [*before, *(t for t in received if t >= started), finished]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    return {
        "scenario": label,
        "questions": n,
        "lag_p50_ms": percentile(lag.lags_ms, 50),
        "lag_p99_ms": percentile(lag.lags_ms, 99),
        "lag_max_ms": max(lag.lags_ms),
        "reaction_p50_ms": percentile(reaction_ms, 50),
        "reaction_p99_ms": percentile(reaction_ms, 99),
        "answer_p50_ms": percentile(answer_ms, 50),
        "answer_p99_ms": percentile(answer_ms, 99),
        "heartbeat_gap_max_s": max(gaps) if gaps else float("nan"),
        "reconnects": (emu.resume_count - resumes) + (emu.identify_count - identifies),
    }


async def _until(cond: Any, timeout: float) -> None:  # noqa: ASYNC109 - a benchmark's patience
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("no answer")
        await asyncio.sleep(0.002)


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bot.discord.app import build_discord_bot
    from bot.services import build_services
    from knowledge.service import Knowledge

    data = args.data or scratch("discord") / "data"
    sources = [
        {"name": "handbook", "type": "directory", "path": str(HANDBOOK), "include": ["**/*.md", "**/*.html"]}
    ]
    guild = make_guild(channels=[make_text_channel(None, None, "support")])
    results = []
    async with DiscordEmulator(guilds=[guild], heartbeat_interval_ms=HEARTBEAT_MS) as emu:
        with patch_discord(emu):
            settings = settings_for(
                data,
                sources,
                discord={"token": "bench-token"},
                chat={"user_per_minute": 100_000, "channel_per_minute": 100_000},
            )
            kn = Knowledge(settings)
            t0 = time.monotonic()
            kn.sync("handbook")
            print(f"synced the handbook in {time.monotonic() - t0:.1f} s", flush=True)
            services = build_services(settings, knowledge=kn)
            if args.on_loop:  # what Lore must never do: the blocking engine on the event loop
                conversation: Any = services.conversation

                async def on_the_loop(fn: Any, *fn_args: Any) -> Any:
                    return fn(*fn_args)

                conversation.run_blocking = on_the_loop
            bot = build_discord_bot(settings, services.conversation, guild_ready_timeout=0.05)
            await bot.start_session()
            gateway = asyncio.create_task(bot.connect())
            await bot.wait_until_ready()
            try:
                await scenario(emu, 6, at_once=True, label="warm-up")  # load the model, open connections
                suffix = " (engine on the loop)" if args.on_loop else ""
                for label, n, at_once in [
                    (f"{args.burst} at once{suffix}", args.burst, True),
                    (f"one at a time{suffix}", args.sequential, False),
                ]:
                    emu.calls.clear()
                    result = await scenario(emu, n, at_once=at_once, label=label)
                    results.append(result)
                    print(json.dumps(result), flush=True)
            finally:
                await bot.shutdown(30)
                await gateway
                await services.aclose()
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | questions | loop lag p50 | loop lag p99 | loop lag max | first reaction p50 "
        "| first reaction p99 | answer p50 | answer p99 | max heartbeat gap | reconnects |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['scenario']} | {r['questions']} | {r['lag_p50_ms']:.1f} ms | {r['lag_p99_ms']:.1f} ms "
            f"| {r['lag_max_ms']:.0f} ms | {r['reaction_p50_ms']:.0f} ms | {r['reaction_p99_ms']:.0f} ms "
            f"| {r['answer_p50_ms'] / 1000:.2f} s | {r['answer_p99_ms'] / 1000:.2f} s "
            f"| {r['heartbeat_gap_max_s']:.2f} s | {r['reconnects']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=20, help="questions sent at once")
    parser.add_argument("--sequential", type=int, default=20, help="questions sent one after another")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--on-loop", action="store_true", help="an experiment: run the answer engine on the event loop"
    )
    parser.add_argument(
        "--data", type=Path, help="data dir to (re)use; the sync is incremental (default: fresh)"
    )
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    results = asyncio.run(main(args))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
