"""The conversation core on its own: a real Knowledge (extractive) behind memory doubles of the
chat-facing ports. The Slack tests cover the same flows through the real adapter."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.core import (
    AnswerReply,
    ConversationService,
    ErrorReply,
    IncomingMessage,
    MemoryStateStore,
    Notice,
    Progress,
    Surface,
    Target,
    VoteInput,
)
from knowledge.answer import Answer, Citation, Turn
from tests.bot.fakes import ListThreads, MemoryOutbox, MemoryTasks
from workers.ports import SyncHandle, SyncStatus


def message(text="how do I set up the VPN?", **kw) -> IncomingMessage:
    base = dict(
        platform="test",
        channel="C1",
        message_id="100.1",
        author="U1",
        text=text,
        mentions_bot=True,
        reply_thread="100.1",
        delivery_id=None,
    )
    return IncomingMessage(**(base | kw))


@pytest.fixture
def kn(lore_settings, embedder):
    from knowledge.service import Knowledge

    knowledge = Knowledge(lore_settings(), embedder=embedder)
    yield knowledge
    knowledge.close()


def service(engine, tasks=None, clock=time.monotonic, window=60, **chat) -> ConversationService:
    from bot.core.ratelimit import RateLimiter
    from config.settings import ChatSettings

    settings = ChatSettings(**({"user_per_minute": 100, "channel_per_minute": 100} | chat))
    return ConversationService(
        engine,
        tasks or MemoryTasks(),
        settings,
        state=MemoryStateStore(clock=clock),
        user_hash=lambda platform, user: f"h:{platform}:{user}",
        sources=["handbook", "wiki"],
        limiter=RateLimiter(
            user_per_minute=settings.user_per_minute,
            channel_per_minute=settings.channel_per_minute,
            window=window,
        ),
    )


def surface(outbox=None, threads=None, allowed=()) -> Surface:
    return Surface("test", outbox or MemoryOutbox(), threads or ListThreads(), frozenset(allowed))


class Recording:
    """Wraps an engine: which thread ran it, with what history; optionally slow."""

    def __init__(self, inner, delay: float = 0.0):
        self.inner, self.delay = inner, delay
        self.calls: list[tuple[str, list[Turn], str]] = []

    def answer(self, question, history=(), **access):
        self.calls.append((question, list(history), threading.current_thread().name))
        time.sleep(self.delay)
        return self.inner.answer(question, history, **access)


async def test_answer_flow_progress_then_answer_then_record(kn):
    tasks = MemoryTasks()
    svc, where = service(kn, tasks), surface()
    outcome = await svc.handle_message(message(), where)
    assert outcome.status == "answered"
    [sent] = where.outbox.sent
    progress, answer = sent.replies
    assert isinstance(progress, Progress) and progress.text == "Searching the docs…"
    assert isinstance(answer, AnswerReply) and answer.is_last and "WireGuard" in answer.text
    assert sent.ref.target == Target("C1", thread="100.1", user="U1")
    [record] = tasks.interactions
    assert record.answer.answer_id == outcome.answer_id == answer.answer.answer_id
    assert record.correlation_id == outcome.correlation_id and record.user_hash == "h:test:U1"
    assert (record.platform, record.channel, record.thread) == ("test", "C1", "100.1")


async def test_the_engine_runs_on_worker_threads_and_the_loop_stays_responsive(kn):
    engine = Recording(kn, delay=0.5)
    svc = service(engine)
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await svc.handle_message(message(), surface())
    ticker.cancel()
    [(_, _, thread_name)] = engine.calls
    assert thread_name.startswith("lore-answer") and thread_name != threading.current_thread().name
    assert ticks >= 20  # the loop kept running while the engine slept for 0.5 s


async def test_should_respond_rules(kn):
    svc, where = service(kn), surface(allowed={"C1", "C2"})
    cases = {
        "a bot's message": message(author_is_bot=True),
        "an edit": message(is_edit=True),
        "channel not in the allowlist": message(channel="C9"),
        "not addressed to Lore": message(mentions_bot=False),
    }
    for reason, msg in cases.items():
        assert await svc.should_respond(msg, where) == reason
    assert await svc.should_respond(message(channel="D9", is_direct=True, mentions_bot=False), where) is None
    follow_up = message(mentions_bot=False, thread="100.1", message_id="101.1")
    assert await svc.should_respond(follow_up, where) == "not addressed to Lore"
    await svc.remember_thread("test", "C1", "100.1")
    assert await svc.should_respond(follow_up, where) is None


async def test_duplicates_by_delivery_id_and_by_message(kn):
    svc, where = service(kn), surface()
    assert (await svc.handle_message(message(delivery_id="Ev1"), where)).status == "answered"
    assert (await svc.handle_message(message(delivery_id="Ev1"), where)).status == "duplicate"
    assert (await svc.handle_message(message(delivery_id="Ev2"), where)).status == "duplicate"  # same message
    assert len(where.outbox.sent) == 1


async def test_dedupe_memory_expires_after_its_ttl(kn):
    now = [1000.0]
    svc, where = service(kn, clock=lambda: now[0]), surface()
    assert (await svc.handle_message(message(delivery_id="Ev1"), where)).status == "answered"
    now[0] += 599
    assert (await svc.handle_message(message(delivery_id="Ev1"), where)).status == "duplicate"
    now[0] += 1000  # past the (at least 10-minute) TTL
    assert (await svc.handle_message(message(delivery_id="Ev1"), where)).status == "answered"


async def test_follow_ups_get_the_bounded_thread_context(kn):
    engine = Recording(kn)
    long_turn = "word " * 400
    turns = [Turn(role="user", text=f"old question {i}") for i in range(10)]
    turns += [
        Turn(role="user", text="how do I set up the VPN?"),
        Turn(role="assistant", text="Use WireGuard."),
    ]
    threads = ListThreads(turns)
    svc = service(engine, context_turns=4, context_tokens=60)
    msg = message("and split tunnelling?", mentions_bot=False, thread="100.1", message_id="105.1")
    await svc.remember_thread("test", "C1", "100.1")
    assert (await svc.handle_message(msg, surface(threads=threads))).status == "answered"
    [(question, history, _)] = engine.calls
    assert question == "and split tunnelling?"
    assert history[-2:] == turns[-2:] and len(history) <= 4
    assert threads.asked == [("C1", "100.1", "105.1")]

    threads.turns = [Turn(role="user", text=long_turn)]
    await svc.handle_message(message("again?", thread="100.1", message_id="106.1"), surface(threads=threads))
    [(text_history)] = [h for _, h, _ in engine.calls[1:]]
    assert len(text_history) == 1 and text_history[0].text.endswith("…") and len(text_history[0].text) < 300


async def test_without_thread_access_it_still_answers(kn):
    engine = Recording(kn)
    svc = service(engine)
    msg = message(thread="100.1", message_id="101.1")
    outcome = await svc.handle_message(msg, surface(threads=ListThreads(fail=True)))
    assert outcome.status == "answered" and engine.calls[0][1] == []


class LongEngine:
    def answer(self, question, history=(), **access):
        paragraphs = [
            f"Paragraph {i}. " + "This sentence is filler text for splitting. " * 20 for i in range(12)
        ]
        citation = Citation(
            n=1, title="Doc", url="https://x/doc", source="s", path="doc.md", doc_id="d", score=0.9
        )
        return Answer(
            question=question,
            text="\n\n".join(paragraphs),
            abstained=False,
            citations=[citation],
            model="fake",
            prompt_version="1",
        )


async def test_long_answers_are_split_and_only_the_last_part_carries_sources_and_buttons():
    outbox = MemoryOutbox(max_message_len=2000)  # two ~900-character paragraphs per message
    svc = service(LongEngine())
    await svc.handle_message(message(), surface(outbox))
    parts = [s.current for s in outbox.sent]
    assert len(parts) == 6 and all(isinstance(p, AnswerReply) for p in parts)
    assert [p.part for p in parts] == list(range(1, 7)) and {p.parts for p in parts} == {6}
    assert all(len(p.text) <= 2000 for p in parts)
    assert [p.is_last for p in parts] == [False] * 5 + [True]
    assert isinstance(outbox.sent[0].replies[0], Progress)  # the first part replaced the progress message
    assert "\n\n".join(p.text for p in parts) == LongEngine().answer("q").text.strip()


class Exploding:
    def answer(self, question, history=(), **access):
        raise RuntimeError("kaboom")


async def test_failures_become_an_error_reply_with_the_correlation_id(caplog):
    outbox = MemoryOutbox()
    svc = service(Exploding())
    outcome = await svc.handle_message(message(), surface(outbox))
    assert outcome.status == "failed"
    [sent] = outbox.sent
    error = sent.current
    assert isinstance(error, ErrorReply) and error.correlation_id == outcome.correlation_id
    assert outcome.correlation_id in error.text
    [record] = [r for r in caplog.records if r.getMessage() == "answering failed"]
    assert record.exc_info is not None


class FailingOutbox(MemoryOutbox):
    """Progress fails; so does every update: the error still gets out as a new message."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    async def send(self, target, reply):
        self.calls += 1
        if isinstance(reply, Progress):
            raise ConnectionError("network down")
        return await super().send(target, reply)


async def test_even_if_the_progress_message_fails_the_user_hears_about_it(kn):
    outbox = FailingOutbox()
    outcome = await service(kn).handle_message(message(), surface(outbox))
    assert outcome.status == "failed"
    [sent] = outbox.sent
    assert isinstance(sent.current, ErrorReply)


async def test_recording_failures_do_not_cost_the_user_the_answer(kn, caplog):
    tasks = MemoryTasks()
    tasks.fail_records = True
    outbox = MemoryOutbox()
    outcome = await service(kn, tasks).handle_message(message(), surface(outbox))
    assert outcome.status == "answered" and isinstance(outbox.sent[0].current, AnswerReply)
    assert any("could not hand interaction" in r.getMessage() for r in caplog.records)


async def test_rate_limits_per_user_and_per_channel(kn):
    svc, where = service(kn, window=2, user_per_minute=2, channel_per_minute=3), surface()
    results = [
        (await svc.handle_message(message(author=a, message_id=f"{i}.0"), where)).status
        for i, a in enumerate(["U1", "U1", "U1", "U2", "U3"])
    ]
    assert results == ["answered", "answered", "rate_limited", "answered", "rate_limited"]
    notices = [s for s in where.outbox.sent if isinstance(s.current, Notice)]
    assert [n.ref.target.user for n in notices] == ["U1", "U3"] and all(
        n.ref.target.ephemeral for n in notices
    )
    assert "you're asking faster" in notices[0].current.text and "this channel is" in notices[1].current.text
    await asyncio.sleep(2.1)  # the windows slide (2 s here, a minute in use)
    assert (await svc.handle_message(message(author="U1", message_id="9.0"), where)).status == "answered"


async def test_votes_are_recorded_with_stable_ids_and_thanked(kn):
    tasks = MemoryTasks()
    svc, where = service(kn, tasks), surface()
    private = Target("C1", "100.1", "U1", ephemeral=True)
    first = await svc.vote(VoteInput("test", "U1", "a1", "up", key="click-1"), where, private)
    again = await svc.vote(VoteInput("test", "U1", "a1", "up", key="click-1"), where, private)
    detailed = await svc.vote(
        VoteInput("test", "U1", "a1", "down", reason="outdated", correction=" fix it ", key="form"),
        where,
        private,
    )
    odd = await svc.vote(VoteInput("test", "U1", "a1", "down", reason="made-up"), where, private)
    assert first.vote_id == again.vote_id != detailed.vote_id  # a redelivered click is the same vote
    assert (detailed.reason, detailed.correction, detailed.user_hash) == ("outdated", "fix it", "h:test:U1")
    assert odd.reason is None
    assert len(tasks.votes) == 4
    texts = [s.current.text for s in where.outbox.sent]
    assert texts[0].startswith("Thanks for the feedback!") and texts[2].startswith("Thanks — your feedback")
    assert all(s.ref.target.ephemeral for s in where.outbox.sent)


def status(running=None, last=None) -> SyncStatus:
    return SyncStatus(running=running or {}, last=last or {})


async def test_reindex_follows_its_own_task_and_ignores_retries_and_older_results(kn):
    old = {"task_id": "older", "state": "done", "added": 9}
    statuses = [
        status(last={"handbook": old}),  # an earlier sync's result: not ours
        status(
            running={
                "handbook": {"task_id": "t1", "phase": "indexing", "seen": 1, "total": 4, "percent": 25}
            },
            last={"handbook": old},
        ),
        status(last={"handbook": {"task_id": "t1", "state": "retrying", "error": "timeout"}}),
        status(
            last={
                "handbook": {
                    "task_id": "t1",
                    "state": "done",
                    "added": 3,
                    "changed": 1,
                    "deleted": 0,
                    "skipped": [{"path": "x", "reason": "empty"}],
                    "seconds": 2.5,
                    "error": None,
                }
            }
        ),
    ]
    tasks = MemoryTasks(statuses, handles={"handbook": SyncHandle("t1", "handbook", joined=True)})
    where = surface()
    outcome = await service(kn, tasks).reindex(
        "handbook",
        platform="test",
        user="UA",
        is_admin=True,
        surface=where,
        target=Target("C1"),
        poll_every=0,
    )
    assert outcome.status == "done" and tasks.requested == [("handbook", "h:test:UA")]
    [sent] = where.outbox.sent
    texts = [r.text for r in sent.replies]
    assert texts[0] == "A sync of handbook was already running; following it…"
    assert "Reindexing…\n• handbook: queued" in texts  # while only an older result is known
    assert "Reindexing…\n• handbook: indexing 1/4 documents (25%)" in texts
    assert "Reindexing…\n• handbook: retrying after an error" in texts
    assert texts[-1] == "Reindex finished.\n• handbook: 3 added, 1 changed, 0 deleted, 1 skipped in 2.5 s"


async def test_reindex_refusals_and_unknown_sources(kn, caplog):
    tasks, where = MemoryTasks([status()]), surface()
    svc = service(kn, tasks)
    refused = await svc.reindex(
        None, platform="test", user="U1", is_admin=False, surface=where, target=Target("C1")
    )
    unknown = await svc.reindex(
        "nope", platform="test", user="UA", is_admin=True, surface=where, target=Target("C1")
    )
    assert (refused.status, unknown.status) == ("refused", "refused") and tasks.requested == []
    refusal, unknown_text = (s.current.text for s in where.outbox.sent)
    assert refusal.startswith("Sorry, only Lore admins") and unknown_text.startswith("Unknown source 'nope'")
    assert all(s.ref.target.ephemeral and s.ref.target.user in ("U1", "UA") for s in where.outbox.sent)
    assert any("refused /reindex (all) from non-admin test user U1" in r.getMessage() for r in caplog.records)


async def test_share_reposts_a_cached_answer_and_expired_ones_are_explained(kn):
    svc, where = service(kn), surface()
    ask_target = Target("C1", user="U1", ephemeral=True, interaction="handle")
    outcome = await svc.ask(message(is_direct=False), where, ask_target)
    assert outcome.status == "answered"
    private_answer = where.outbox.sent[0].current
    assert isinstance(private_answer, AnswerReply) and private_answer.shareable
    shared = await svc.share(outcome.answer_id, "U1", where, Target("C1", user="U1"))
    assert shared.status == "answered"
    public = where.outbox.sent[1].current
    assert public.shared_by == "U1" and not public.shareable and public.answer.answer_id == outcome.answer_id
    assert (await svc.should_respond(message(mentions_bot=False, thread=shared.ref.id), where)) is None
    missing = await svc.share("gone", "U1", where, Target("C1"))
    assert missing.status == "ignored" and where.outbox.sent[-1].current.text.startswith(
        "That answer is too old"
    )


class FortyTwo:
    """Answers at once without the index: for tests about where replies go, not what they say."""

    def answer(self, question, history=(), **access):
        return Answer(question=question, text="Forty-two.", abstained=False, model="m", prompt_version="1")


async def test_reply_to_reaches_the_targets_of_an_answer():
    outbox = MemoryOutbox()
    msg = message("q?", message_id="9", reply_thread=None, reply_to="9")
    outcome = await service(FortyTwo()).handle_message(msg, surface(outbox))
    assert outcome.status == "answered"
    assert [s.ref.target.reply_to for s in outbox.sent] == ["9"]


async def test_a_vote_can_be_recorded_without_a_notice():
    tasks, outbox = MemoryTasks(), MemoryOutbox()
    svc = service(FortyTwo(), tasks)
    target = Target("C1", user="U1", ephemeral=True, interaction="token")
    record = await svc.vote(
        VoteInput("test", "U1", "a1", "down", key="k"), surface(outbox), target, notify=False
    )
    assert record is not None and [v.value for v in tasks.votes] == ["down"]
    assert outbox.sent == []  # the adapter answered the click another way (Discord: the form)
    await svc.vote(VoteInput("test", "U1", "a1", "down", reason="wrong", key="k2"), surface(outbox), target)
    assert isinstance(outbox.sent[0].current, Notice) and outbox.sent[0].current.text.startswith("Thanks")


async def test_a_failed_share_is_explained_through_the_same_interaction():
    outbox = MemoryOutbox()
    target = Target("C1", user="U1", interaction="token", reply_to="5")
    outcome = await service(FortyTwo()).share("gone", "U1", surface(outbox), target)
    assert outcome.status == "ignored"
    [sent] = outbox.sent
    assert sent.ref.target == Target("C1", user="U1", ephemeral=True, interaction="token")


@pytest.mark.redis
async def test_two_processes_sharing_redis_answer_a_redelivered_event_once(kn):
    import uuid

    from bot.core.state import RedisStateStore
    from config.settings import ChatSettings

    prefix = f"lore:test:{uuid.uuid4().hex}:chat:"
    stores = [RedisStateStore("redis://127.0.0.1:6379/0", prefix=prefix) for _ in range(2)]
    services = [
        ConversationService(kn, MemoryTasks(), ChatSettings(), state=store, user_hash=lambda p, u: u)
        for store in stores
    ]
    outboxes = [MemoryOutbox(), MemoryOutbox()]
    try:
        outcomes = await asyncio.gather(
            *(
                svc.handle_message(message(delivery_id="EvSHARED"), surface(outbox))
                for svc, outbox in zip(services, outboxes, strict=True)
            )
        )
        assert sorted(o.status for o in outcomes) == ["answered", "duplicate"]
        assert sum(len(o.sent) for o in outboxes) == 1
        # Lore answered in the thread through one process; the other follows it too.
        follow_up = message(mentions_bot=False, thread="100.1", message_id="102.1")
        assert await services[1].should_respond(follow_up, surface()) is None
        assert await services[0].should_respond(follow_up, surface()) is None
    finally:
        keys = await stores[0]._redis.keys(prefix + "*")
        if keys:
            await stores[0]._redis.delete(*keys)
        for store in stores:
            await store.close()
        for svc in services:
            svc.close()


async def test_a_private_answer_is_recorded_without_the_thread_it_was_asked_from(kn):
    """An ephemeral /ask (here from inside a channel thread) and a DM are only the asker's: no
    thread is recorded, so the gaps digest never takes them for questions the channel saw."""
    from feedback.gaps import asked_where

    tasks = MemoryTasks()
    svc, where = service(kn, tasks), surface()
    ask = message("how many days of paid leave do we get?", message_id="cmd-1", thread="100.1")
    await svc.ask(ask, where, Target("C1", thread="100.1", user="U1", ephemeral=True))
    dm = message("how do I set up the VPN?", channel="D1", message_id="200.1", is_direct=True, thread="199.1")
    await svc.handle_message(dm, where)
    in_channel = message("when do production deploys happen?", message_id="300.1", reply_thread="300.1")
    await svc.handle_message(in_channel, where)
    threads = [(r.channel, r.thread) for r in tasks.interactions]
    assert threads == [("C1", None), ("D1", None), ("C1", "300.1")]
    assert [asked_where("slack", r.channel, "T1", r.thread) for r in tasks.interactions] == [
        "private",
        "dm",
        "channel",
    ]
