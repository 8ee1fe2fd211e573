"""What the Discord adapter added to the conversation core, generically, checked on the core alone
(memory doubles of the chat ports; the answer engine is a stub: these are about routing)."""

from __future__ import annotations

from bot.core import (
    ConversationService,
    IncomingMessage,
    MemoryStateStore,
    Notice,
    Surface,
    Target,
    VoteInput,
)
from config.settings import ChatSettings
from knowledge.answer import Answer
from tests.bot.fakes import MemoryOutbox, MemoryTasks


class Stub:
    def answer(self, question, history=()):
        return Answer(question=question, text="Forty-two.", abstained=False, model="m", prompt_version="1")


def service(tasks=None) -> ConversationService:
    return ConversationService(
        Stub(),
        tasks or MemoryTasks(),
        ChatSettings(user_per_minute=100, channel_per_minute=100),
        state=MemoryStateStore(),
        user_hash=lambda platform, user: f"{platform}:{user}",
    )


async def test_reply_to_reaches_the_targets_of_an_answer():
    svc, outbox = service(), MemoryOutbox()
    msg = IncomingMessage(
        platform="test", channel="C1", message_id="9", author="U1", text="q?", mentions_bot=True, reply_to="9"
    )
    outcome = await svc.handle_message(msg, Surface("test", outbox))
    assert outcome.status == "answered"
    assert [s.ref.target.reply_to for s in outbox.sent] == ["9"]


async def test_a_vote_can_be_recorded_without_a_notice():
    tasks, outbox = MemoryTasks(), MemoryOutbox()
    svc = service(tasks)
    target = Target("C1", user="U1", ephemeral=True, interaction="token")
    record = await svc.vote(
        VoteInput("test", "U1", "a1", "down", key="k"), Surface("test", outbox), target, notify=False
    )
    assert record is not None and [v.value for v in tasks.votes] == ["down"]
    assert outbox.sent == []  # the adapter answered the click another way (Discord: the form)
    await svc.vote(
        VoteInput("test", "U1", "a1", "down", reason="wrong", key="k2"), Surface("test", outbox), target
    )
    assert isinstance(outbox.sent[0].current, Notice) and outbox.sent[0].current.text.startswith("Thanks")


async def test_a_failed_share_is_explained_through_the_same_interaction():
    svc, outbox = service(), MemoryOutbox()
    target = Target("C1", user="U1", interaction="token", reply_to="5")
    outcome = await svc.share("gone", "U1", Surface("test", outbox), target)
    assert outcome.status == "ignored"
    [sent] = outbox.sent
    assert sent.ref.target == Target("C1", user="U1", ephemeral=True, interaction="token")
