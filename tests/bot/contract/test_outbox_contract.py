"""What every `Outbox` must do, checked through each platform's real outbox against its emulator
(the `harness` fixture in conftest.py runs each test once per platform)."""

from __future__ import annotations

import pytest

from bot.core import ConversationService, IncomingMessage, MemoryStateStore, Surface
from bot.core.messages import AnswerReply, ErrorReply, Notice, Progress
from bot.core.ports import UnsupportedReply
from bot.core.split import MIN_LEN, split_text
from config.settings import ChatSettings
from knowledge.answer import Answer, Citation
from tests.bot.fakes import MemoryTasks

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]


def words(n_chars: int) -> str:
    out, i = [], 0
    while len(" ".join(out)) < n_chars:
        out.append(WORDS[i % len(WORDS)] + str(i))
        i += 1
    return " ".join(out)[:n_chars].rstrip()


def answer(text: str) -> Answer:
    cite = Citation(
        n=1,
        title="Contract doc",
        url="https://docs.example/contract",
        source="s",
        path="c.md",
        doc_id="s:c.md",
        updated_at="2024-01-02T00:00:00Z",
        score=0.9,
    )
    return Answer(question="q", text=text, abstained=False, citations=[cite], model="m", prompt_version="1")


async def test_max_message_len_is_usable(harness):
    assert isinstance(harness.outbox.max_message_len, int)
    assert harness.outbox.max_message_len >= MIN_LEN


async def test_send_then_update_replaces_the_same_message(harness):
    ref = await harness.outbox.send(harness.target, Progress("Searching the docs…"))
    assert ref.target == harness.target and ref.id
    [shown] = await harness.delivered()
    assert "Searching the docs…" in shown.text and not shown.has_feedback
    a = answer("The answer is 42 [1].")
    again = await harness.outbox.update(ref, AnswerReply(a, a.text))
    assert again.id == ref.id
    [shown] = await harness.delivered()
    assert shown.id == ref.id and "The answer is 42" in shown.text and shown.has_feedback
    assert "Contract doc" in shown.text and "Searching" not in shown.text


async def test_thread_targets_work_too(harness):
    ref = await harness.outbox.send(harness.thread_target, Notice("in the thread"))
    assert ref.target == harness.thread_target
    assert [d.text for d in await harness.delivered()] == ["in the thread"]


async def test_a_part_of_exactly_max_message_len_fits_in_one_message(harness):
    text = words(harness.outbox.max_message_len)
    assert len(text) <= harness.outbox.max_message_len
    a = answer(text)
    await harness.outbox.send(harness.target, AnswerReply(a, text))
    [shown] = await harness.delivered()
    assert all(w in shown.text for w in text.split())  # every word arrived, none cut off


async def test_long_answers_go_out_in_order_through_the_core(harness):

    half = harness.outbox.max_message_len // 2

    class Long:
        def answer(self, question, history=(), **access):
            return answer("\n\n".join(words(half) + f" END{i}." for i in range(7)))

    service = ConversationService(
        Long(), MemoryTasks(), ChatSettings(), state=MemoryStateStore(), user_hash=lambda p, u: u
    )
    msg = IncomingMessage(
        platform=harness.platform,
        channel=harness.target.channel,
        message_id="1.0",
        author="U1",
        text="q",
        mentions_bot=True,
    )
    outcome = await service.handle_message(msg, Surface(harness.platform, harness.outbox))
    assert outcome.status == "answered"
    shown = await harness.delivered()
    expected = split_text(Long().answer("q").text, harness.outbox.max_message_len)
    assert len(shown) == len(expected) > 1
    assert [s.has_feedback for s in shown] == [False] * (len(shown) - 1) + [True]
    ends = [
        int(t.split("END")[1].split(".")[0]) for s in shown for t in s.text.split() if t.startswith("END")
    ]
    assert ends == list(range(7))  # every paragraph, once, in order


async def test_errors_show_the_correlation_id(harness):
    await harness.outbox.send(harness.target, ErrorReply("cid123abc456", "Sorry, something went wrong."))
    [shown] = await harness.delivered()
    assert "cid123abc456" in shown.text


async def test_unknown_replies_are_an_explicit_error(harness):
    class Poll:
        pass

    with pytest.raises(UnsupportedReply):
        await harness.outbox.send(harness.target, Poll())  # type: ignore[arg-type]
    assert await harness.delivered() == []
