"""The core's small parts: bounded context, rate limits, the state stores (memory and real Redis),
and the platform-neutral wording."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bot.core.context import approx_tokens, bounded_context
from bot.core.ratelimit import RateLimiter
from bot.core.render import reindex_summary_text, source_line
from bot.core.state import MemoryStateStore, RedisStateStore
from knowledge.answer import Citation, Turn


def turns(*texts: str) -> list[Turn]:
    return [Turn(role="user" if i % 2 == 0 else "assistant", text=t) for i, t in enumerate(texts)]


def test_context_keeps_the_last_turns_within_the_budget():
    history = turns(*(f"turn number {i}" for i in range(10)))  # 3-4 tokens each
    assert bounded_context(history, max_turns=3, max_tokens=1000) == history[-3:]
    kept = bounded_context(history, max_turns=10, max_tokens=10)
    assert kept == history[-len(kept) :] and sum(approx_tokens(t.text) for t in kept) <= 10
    assert bounded_context(history, max_turns=0, max_tokens=100) == []
    assert bounded_context(turns("a", "  ", "b"), max_turns=5, max_tokens=100) == [
        Turn(role="user", text="a"),
        Turn(role="user", text="b"),
    ]


def test_an_oversized_newest_turn_is_truncated_not_dropped():
    [kept] = bounded_context(turns("x " * 50, "word " * 500), max_turns=5, max_tokens=40)
    assert kept.role == "assistant" and kept.text.endswith("…") and approx_tokens(kept.text) <= 40


def test_approx_tokens_counts_words_punctuation_and_long_words():
    assert approx_tokens("") == 0
    assert approx_tokens("Hello, world!") == 4
    assert approx_tokens("a" * 60) == 10


async def test_rate_limiter_windows_slide():
    limiter = RateLimiter(user_per_minute=2, channel_per_minute=3, window=2)
    assert (await limiter.check("u1", "c")).allowed and (await limiter.check("u1", "c")).allowed
    refused = await limiter.check("u1", "c")
    assert (refused.allowed, refused.scope, refused.retry_after_s) == (False, "user", 2)
    assert (await limiter.check("u2", "c")).allowed
    assert (await limiter.check("u3", "c")).scope == "channel"  # refused: counts against no one
    await asyncio.sleep(1.0)
    assert (await limiter.check("u1", "c")).retry_after_s == 1
    await asyncio.sleep(1.1)  # the first two events left the window
    assert (await limiter.check("u1", "c")).allowed


@pytest.mark.redis
async def test_rate_limits_on_redis_are_one_budget_for_every_process():
    from bot.core.ratelimit import make_rate_limiter
    from config.settings import ChatSettings, RedisSettings

    chat = ChatSettings(user_per_minute=3, channel_per_minute=100)
    redis = RedisSettings(url="redis://127.0.0.1:6379/0", prefix=f"lore:test:{uuid.uuid4().hex}:")
    a, b = make_rate_limiter(chat, redis), make_rate_limiter(chat, redis)  # two processes' limiters
    try:
        assert a.windows.shared
        assert [(await x.check("slack:U1", f"c{i}")).allowed for i, x in enumerate([a, b, a, b])] == [
            True,
            True,
            True,
            False,
        ]
        assert (await a.check("slack:U2", "c9")).allowed  # per person
    finally:
        keys = a.windows._redis.storage.keys(f"{redis.prefix}*")
        if keys:
            a.windows._redis.storage.delete(*keys)
        a.close()
        b.close()


async def test_rate_limits_still_apply_when_redis_is_down(caplog):
    from bot.core.ratelimit import Windows

    limiter = RateLimiter(user_per_minute=2, channel_per_minute=100, windows=Windows("redis://127.0.0.1:1/0"))
    try:
        decisions = [(await limiter.check("u1", "c")).allowed for _ in range(3)]
    finally:
        limiter.close()
    assert decisions == [True, True, False]  # this process's own window meanwhile
    warned = [r.getMessage() for r in caplog.records if "Redis unavailable for rate limits" in r.getMessage()]
    assert len(warned) == 1  # then Redis is left alone for a while, not retried on every message


async def test_memory_state_store_expires_and_bounds_itself():
    now = [0.0]
    store = MemoryStateStore(clock=lambda: now[0], max_entries=100)
    assert await store.first_time("k", 10) and not await store.first_time("k", 10)
    await store.put("thread", "1", 1000)
    assert await store.seen("thread") and await store.get("thread") == "1"
    now[0] = 11
    assert await store.first_time("k", 10)  # expired, so new again
    assert await store.get("missing") is None
    for i in range(500):
        await store.first_time(f"event-{i}", 10)
    assert len(store) <= 101
    now[0] = 5000
    await store.first_time("late", 10)
    assert len(store) == 1 and not await store.seen("thread")


@pytest.mark.redis
async def test_redis_state_store_is_shared_and_expires():
    prefix = f"lore:test:{uuid.uuid4().hex}:"
    a, b = (
        RedisStateStore("redis://127.0.0.1:6379/0", prefix=prefix),
        RedisStateStore("redis://127.0.0.1:6379/0", prefix=prefix),
    )
    try:
        assert await a.first_time("event", 600)
        assert not await b.first_time("event", 600)  # another process sees the first delivery
        await a.put("answer", '{"x": 1}', 60)
        assert await b.get("answer") == '{"x": 1}' and await b.seen("answer")
        assert 590 <= await a._redis.ttl(prefix + "event") <= 600
    finally:
        await a._redis.delete(prefix + "event", prefix + "answer")
        await a.close()
        await b.close()


async def test_redis_state_store_fails_open_when_redis_is_down(caplog):
    store = RedisStateStore("redis://127.0.0.1:1/0")
    try:
        assert await store.first_time("event", 600)  # better a possible duplicate than silence
        assert not await store.seen("thread")
        await store.put("thread", "1", 60)
        assert await store.get("thread") is None
    finally:
        await store.close()
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


def test_source_line_and_reindex_summary():
    c = Citation(
        n=2,
        title="VPN",
        url="https://w/vpn",
        source="s",
        path="vpn.md",
        doc_id="d",
        updated_at="2024-05-01T10:00:00+00:00",
        score=0.8,
    )
    assert source_line(c) == "2. VPN — https://w/vpn (updated 2024-05-01)"
    assert source_line(c.model_copy(update={"updated_at": ""})) == "2. VPN — https://w/vpn"
    text = reindex_summary_text(
        {
            "a": {"added": 1, "changed": 2, "deleted": 3, "skipped": 4, "seconds": 1.25},
            "b": {"error": "remote unreachable"},
        }
    )
    assert text.splitlines() == [
        "Reindex finished with errors in b.",
        "• a: 1 added, 2 changed, 3 deleted, 4 skipped in 1.2 s",
        "• b: failed, index unchanged for it: remote unreachable",
    ]
