"""Whose rights each answer is given with (issue 19), in the real conversation core.

The engine is `AccessEngine` (it keeps the engine's access contract over a few labelled
documents and records the audience it was asked for): the thing under test is the core's
decision. The Slack and Discord suites drive the same decisions through the real adapters.
"""

from __future__ import annotations

import json
import logging

import pytest

from bot.core import (
    AnswerReply,
    ConversationService,
    IncomingMessage,
    MemoryStateStore,
    Notice,
    Surface,
    Target,
)
from bot.core.access import EXTERNAL_REFUSED, SHARE_EXTERNAL_REFUSED, SHARE_REFUSED, AccessRules
from bot.core.render import ANSWER_EXPIRED, QUESTION_EXPIRED
from config.settings import ChatSettings, Settings
from knowledge.access import PUBLIC_AUDIENCE
from tests.bot.fakes import AccessEngine, Doc, ListThreads, MemoryOutbox, MemoryTasks

MARKER = "CANARY-7Q2X"  # only in the restricted document: must never reach a channel or a log
DOCS = [
    Doc("handbook", "it/vpn.md", "Install WireGuard for the VPN from Self Service."),
    Doc(
        "handbook", "hr/salary-bands.md", f"Salary bands for engineers are set by HR. {MARKER}", ("group:hr",)
    ),
    Doc("handbook", "hr/leave.md", "Everyone gets 25 days of paid leave a year."),
    Doc("eng", "deploys.md", "Production deploys need the release pipeline."),
]
HR = "slack:U0HR"


def settings(**over) -> Settings:
    base = {
        "groups": {"hr": [HR, "slack:group:S0HR", "email:*@hr.example.com"]},
        "slack": {"channel_sources": [{"channel": "C0ENG", "sources": ["eng"]}]},
    }
    return Settings(**(base | over))


class Directory:
    """The Directory port: extra principals per user, shared channels, optional failures."""

    def __init__(self, extra=None, external=(), fail_people=False, fail_channels=False):
        self.extra = extra or {}
        self.external = set(external)
        self.fail_people, self.fail_channels = fail_people, fail_channels
        self.asked: list[str] = []

    async def principals(self, user):
        self.asked.append(user)
        if self.fail_people:
            raise ConnectionError("users.info is down")
        return frozenset(self.extra.get(user, ()))

    async def is_external(self, channel):
        if self.fail_channels:
            raise ConnectionError("conversations.info is down")
        return channel in self.external


def service(engine, *, access=None, **chat) -> ConversationService:
    return ConversationService(
        engine,
        MemoryTasks(),
        ChatSettings(**({"user_per_minute": 100, "channel_per_minute": 100} | chat)),
        state=MemoryStateStore(),
        user_hash=lambda platform, user: f"h:{platform}:{user}",
        access=access or AccessRules.from_settings(settings()),
    )


def surface(directory=None, outbox=None) -> Surface:
    return Surface("slack", outbox or MemoryOutbox(), ListThreads(), directory=directory)


_ids = iter(range(10**6))


def message(text="what are the salary bands?", *, user="U0HR", channel="C1", **kw) -> IncomingMessage:
    n = next(_ids)
    base = dict(
        platform="slack",
        channel=channel,
        message_id=f"{n}.0",
        author=user,
        text=text,
        mentions_bot=True,
        reply_thread=f"{n}.0",
        principals=frozenset({f"slack:{user}"}),
    )
    return IncomingMessage(**(base | kw))


def replies(where: Surface) -> list:
    return [r for sent in where.outbox.sent for r in sent.replies]


def answers(where: Surface) -> list[AnswerReply]:
    return [r for r in replies(where) if isinstance(r, AnswerReply)]


def notices(where: Surface) -> list[str]:
    return [r.text for r in replies(where) if isinstance(r, Notice)]


# ---- who the answer is for -----------------------------------------------------------------


async def test_a_dm_is_answered_with_the_askers_own_rights():
    engine = AccessEngine(DOCS)
    where = surface(Directory({"U0HR": {"email:ann@hr.example.com"}}))
    outcome = await service(engine).handle_message(message(is_direct=True, channel="D1"), where)
    assert outcome.status == "answered"
    [call] = engine.calls
    assert call.audience.grants == {"public", "slack:U0HR", "email:ann@hr.example.com", "group:hr"}
    assert call.wider is None and call.sources is None
    [reply] = answers(where)
    assert MARKER in reply.text and not reply.answer_privately  # nothing to offer in a DM


async def test_a_channel_answer_uses_the_channels_audience_and_offers_answer_privately():
    engine = AccessEngine(DOCS)
    where = surface(Directory())
    await service(engine).handle_message(message(), where)
    [call] = engine.calls
    assert call.audience.grants == {"public", "channel:slack:C1"}
    assert call.wider is not None and "group:hr" in call.wider.grants  # the asker's, for counting
    [reply] = answers(where)
    assert MARKER not in reply.text and reply.answer.withheld == 1
    assert reply.answer_privately and reply.is_last


async def test_no_answer_privately_button_when_nothing_was_left_out():
    engine = AccessEngine(DOCS)
    where = surface(Directory())
    # Someone outside HR: their own search finds nothing more than the channel's.
    await service(engine).handle_message(message(user="U0DEV"), where)
    [reply] = answers(where)
    assert reply.answer.withheld == 0 and not reply.answer_privately
    # An HR member asking about something public: nothing left out either.
    await service(engine).handle_message(message("which VPN client to install?"), where)
    assert not answers(where)[-1].answer_privately


async def test_a_group_dm_is_a_channel_answer():
    engine = AccessEngine(DOCS)
    await service(engine).handle_message(message(channel="G0MPIM"), surface(Directory()))
    assert engine.calls[0].audience.grants == {"public", "channel:slack:G0MPIM"}  # not a DM with Lore


async def test_a_follow_up_in_a_channel_thread_gets_the_channel_audience():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    first = message()
    await svc.handle_message(first, where)
    thread = first.reply_thread
    follow = message(
        "and the salary bands for managers?", thread=thread, reply_thread=thread, mentions_bot=False
    )
    assert (await svc.handle_message(follow, where)).status == "answered"
    assert [c.audience.grants for c in engine.calls] == [{"public", "channel:slack:C1"}] * 2
    assert all(MARKER not in r.text for r in answers(where))


async def test_an_ephemeral_ask_in_a_channel_is_private_to_the_asker():
    engine = AccessEngine(DOCS)
    where = surface(Directory())
    target = Target("C1", user="U0HR", ephemeral=True, interaction="https://hooks.example/1")
    await service(engine).ask(message(), where, target)
    [call] = engine.calls
    assert "group:hr" in call.audience.grants and call.wider is None
    [reply] = answers(where)
    assert MARKER in reply.text and reply.shareable and not reply.answer_privately


async def test_channel_sources_scope_questions_asked_in_that_channel_only():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    await svc.handle_message(message("how do production deploys work?", channel="C0ENG"), where)
    await svc.ask(message("deploys?", channel="C0ENG"), where, Target("C0ENG", user="U0HR", ephemeral=True))
    await svc.handle_message(message("how do production deploys work?", channel="D1", is_direct=True), where)
    assert [c.sources for c in engine.calls] == [["eng"], ["eng"], None]


async def test_a_shared_channel_gets_public_content_only_even_for_ask():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory(external={"C0EXT"}))
    await svc.handle_message(message(channel="C0EXT"), where)
    await svc.ask(message(channel="C0EXT"), where, Target("C0EXT", user="U0HR", ephemeral=True))
    assert [c.audience for c in engine.calls] == [PUBLIC_AUDIENCE, PUBLIC_AUDIENCE]
    assert all(c.wider is None for c in engine.calls)  # no "Answer privately" from a shared channel
    assert all(MARKER not in r.text and not r.answer_privately for r in answers(where))


async def test_refuse_mode_answers_nothing_in_a_shared_channel():
    engine = AccessEngine(DOCS)
    access = AccessRules.from_settings(settings(slack={"external_channels": "refuse"}))
    svc, where = service(engine, access=access), surface(Directory(external={"C0EXT"}))
    outcome = await svc.handle_message(message(channel="C0EXT"), where)
    assert outcome.status == "refused" and engine.calls == []
    assert notices(where) == [EXTERNAL_REFUSED] and answers(where) == []
    # Elsewhere Lore answers as usual.
    assert (await svc.handle_message(message(channel="C1"), where)).status == "answered"


async def test_a_failing_directory_means_fewer_rights_never_more(caplog):
    caplog.set_level(logging.WARNING)
    engine = AccessEngine(DOCS)
    # U0ANN is in HR only through her email, which the directory cannot tell today.
    directory = Directory({"U0ANN": {"email:ann@hr.example.com"}}, fail_people=True)
    where = surface(directory)
    await service(engine).handle_message(message(user="U0ANN", channel="D1", is_direct=True), where)
    [call] = engine.calls
    assert call.audience.grants == {"public", "slack:U0ANN"}
    assert MARKER not in answers(where)[0].text
    assert any("payload's principals only" in r.getMessage() for r in caplog.records)


async def test_when_the_directory_cannot_tell_a_channel_is_treated_as_shared():
    engine = AccessEngine(DOCS)
    where = surface(Directory(fail_channels=True))
    await service(engine).handle_message(message(), where)
    assert engine.calls[0].audience == PUBLIC_AUDIENCE


async def test_the_payloads_word_on_shared_channels_counts():
    engine = AccessEngine(DOCS)
    svc = service(engine)
    # The directory is down, but the payload says the channel is not shared.
    await svc.handle_message(message(shared_channel=False), surface(Directory(fail_channels=True)))
    # The payload says it is shared, whatever the directory thinks.
    await svc.handle_message(message(shared_channel=True), surface(Directory()))
    assert [c.audience for c in engine.calls] == [
        AccessRules.from_settings(settings()).policy.channel("slack", "C1"),
        PUBLIC_AUDIENCE,
    ]


async def test_without_a_directory_the_payloads_principals_are_all_there_is():
    engine = AccessEngine(DOCS)
    where = Surface("slack", MemoryOutbox(), ListThreads())
    await service(engine).handle_message(message(channel="D1", is_direct=True), where)
    assert engine.calls[0].audience.grants == {"public", "slack:U0HR", "group:hr"}


async def test_view_as_answers_as_that_principal_would_be_answered():
    engine = AccessEngine(DOCS)
    where = Surface("web", MemoryOutbox())
    msg = message(platform="web", user="admin", principals=frozenset({"web:admin"}), view_as="group:hr")
    await service(engine).handle_message(IncomingMessage(**(msg.__dict__ | {"is_direct": True})), where)
    assert engine.calls[0].audience.grants == {"public", "group:hr"}


# ---- "Answer privately" --------------------------------------------------------------------


async def channel_answer(svc, where) -> AnswerReply:
    await svc.handle_message(message(user="U0DEV"), where)  # asked by someone outside HR
    return answers(where)[-1]


async def test_answer_privately_answers_the_clicker_with_their_own_rights():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    # HR asks in the channel; the answer leaves the salary bands out.
    await svc.handle_message(message(), where)
    public = answers(where)[-1]
    assert public.answer_privately and MARKER not in public.text
    # Someone else in HR clicks: they get the private answer, with their rights.
    private = Target("C1", "9.0", "U0HR2", ephemeral=True)
    outcome = await svc.answer_privately(
        public.answer.answer_id, "U0HR2", frozenset({"slack:U0HR2", "slack:group:S0HR"}), where, private
    )
    assert outcome.status == "answered"
    call = engine.calls[-1]
    assert call.question == "what are the salary bands?" and call.wider is None
    assert call.audience.grants == {"public", "slack:U0HR2", "slack:group:S0HR", "group:hr"}
    last = where.outbox.sent[-1]
    assert last.ref.target.ephemeral and last.ref.target.user == "U0HR2"
    assert MARKER in last.current.text and not last.current.answer_privately


async def test_answer_privately_never_gives_more_than_the_clickers_rights():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    await svc.handle_message(message(), where)  # HR asked
    answer_id = answers(where)[-1].answer.answer_id
    target = Target("C1", user="U0DEV", ephemeral=True)
    await svc.answer_privately(answer_id, "U0DEV", frozenset({"slack:U0DEV"}), where, target)
    assert engine.calls[-1].audience.grants == {"public", "slack:U0DEV"}
    assert MARKER not in where.outbox.sent[-1].current.text


async def test_the_question_is_kept_only_when_the_button_is_offered_and_survives_in_the_store():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    await svc.handle_message(message("which VPN client to install?"), where)
    assert await svc.state.get(f"question:{answers(where)[-1].answer.answer_id}") is None
    await svc.handle_message(message(), where)
    kept = json.loads(await svc.state.get(f"question:{answers(where)[-1].answer.answer_id}"))
    assert kept["question"] == "what are the salary bands?" and kept["channel"] == "C1"
    assert MARKER not in json.dumps(kept)  # the question and the thread, never the answer


async def test_an_unknown_or_expired_question_is_explained_and_a_redelivered_click_answered_once():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    target = Target("C1", user="U0HR", ephemeral=True)
    outcome = await svc.answer_privately("nope", "U0HR", frozenset({HR}), where, target)
    assert outcome.status == "ignored" and notices(where) == [QUESTION_EXPIRED]
    await svc.handle_message(message(), where)
    answer_id = answers(where)[-1].answer.answer_id
    first = await svc.answer_privately(answer_id, "U0HR", frozenset({HR}), where, target, key="a1")
    again = await svc.answer_privately(answer_id, "U0HR", frozenset({HR}), where, target, key="a1")
    assert (first.status, again.status) == ("answered", "duplicate")


async def test_a_private_answer_in_a_shared_channel_is_still_public_only():
    engine = AccessEngine(DOCS)
    directory = Directory()
    svc, where = service(engine), surface(directory)
    await svc.handle_message(message(), where)
    answer_id = answers(where)[-1].answer.answer_id
    directory.external.add("C1")  # the channel became a Slack Connect channel meanwhile
    await svc.answer_privately(
        answer_id, "U0HR", frozenset({HR}), where, Target("C1", user="U0HR", ephemeral=True)
    )
    assert engine.calls[-1].audience == PUBLIC_AUDIENCE


# ---- Share in channel ----------------------------------------------------------------------


async def ask_privately(svc, where, text="what are the salary bands?", user="U0HR") -> AnswerReply:
    target = Target("C1", user=user, ephemeral=True, interaction="https://hooks.example/ask")
    await svc.ask(message(text, user=user), where, target)
    return answers(where)[-1]


async def test_share_refuses_an_answer_the_channel_may_not_read_and_says_why():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    reply = await ask_privately(svc, where)
    assert MARKER in reply.text
    posted_before = len(where.outbox.sent)
    outcome = await svc.share(reply.answer.answer_id, "U0HR", where, Target("C1", user="U0HR"))
    assert outcome.status == "refused"
    [sent] = where.outbox.sent[posted_before:]
    assert sent.ref.target.ephemeral and sent.ref.target.user == "U0HR"
    assert sent.current == Notice(SHARE_REFUSED)


async def test_share_posts_a_public_answer_and_refuses_to_post_in_a_shared_channel():
    engine = AccessEngine(DOCS)
    directory = Directory()
    svc, where = service(engine), surface(directory)
    reply = await ask_privately(svc, where, "which VPN client to install?")
    assert (
        await svc.share(reply.answer.answer_id, "U0HR", where, Target("C1", user="U0HR"))
    ).status == "answered"
    reply = await ask_privately(svc, where, "which VPN client to install?")
    directory.external.add("C1")
    assert (
        await svc.share(reply.answer.answer_id, "U0HR", where, Target("C1", user="U0HR"))
    ).status == "answered"
    access = AccessRules.from_settings(settings(slack={"external_channels": "refuse"}))
    svc = service(engine, access=access)
    directory.external.discard("C1")  # asked before the channel was shared
    reply = await ask_privately(svc, where, "which VPN client to install?")
    directory.external.add("C1")
    assert (
        await svc.share(reply.answer.answer_id, "U0HR", where, Target("C1", user="U0HR"))
    ).status == "refused"
    assert notices(where)[-1] == SHARE_EXTERNAL_REFUSED


async def test_a_channel_granted_a_document_may_have_it_shared():
    docs = [
        Doc(
            "handbook",
            "fin/q3.md",
            f"Q3 numbers are final. {MARKER}",
            ("group:finance", "channel:slack:C0FIN"),
        )
    ]
    engine = AccessEngine(docs)
    access = AccessRules.from_settings(settings(groups={"finance": ["slack:U0FIN"]}))
    svc, where = service(engine, access=access), surface(Directory())
    reply = await ask_privately(svc, where, "q3 numbers?", user="U0FIN")
    assert MARKER in reply.text
    assert (
        await svc.share(reply.answer.answer_id, "U0FIN", where, Target("C0FIN", user="U0FIN"))
    ).status == "answered"
    reply = await ask_privately(svc, where, "q3 numbers?", user="U0FIN")
    assert (
        await svc.share(reply.answer.answer_id, "U0FIN", where, Target("C1", user="U0FIN"))
    ).status == "refused"


async def test_sharing_into_the_askers_own_dm_is_not_restricted():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    target = Target("D1", user="U0HR", ephemeral=True, interaction="https://hooks.example/ask")
    await svc.ask(message(channel="D1", is_direct=True), where, target)
    reply = answers(where)[-1]
    assert MARKER in reply.text
    outcome = await svc.share(reply.answer.answer_id, "U0HR", where, Target("D1", user="U0HR"), direct=True)
    assert outcome.status == "answered"


async def test_only_the_person_an_answer_was_given_to_can_share_it():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    reply = await ask_privately(svc, where, "which VPN client to install?")
    outcome = await svc.share(reply.answer.answer_id, "U0DEV", where, Target("C1", user="U0DEV"))
    assert outcome.status == "ignored" and notices(where)[-1] == ANSWER_EXPIRED


async def test_the_kept_answer_records_whose_rights_it_was_given_with():
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    reply = await ask_privately(svc, where)
    kept = json.loads(await svc.state.get(f"answer:{reply.answer.answer_id}"))
    assert kept["user"] == "U0HR"
    assert kept["audience"] == AccessRules.from_settings(settings()).policy.person({HR}).key


# ---- nothing restricted in logs ------------------------------------------------------------


async def test_logs_carry_audience_labels_and_counts_never_document_text(caplog):
    caplog.set_level(logging.DEBUG)
    engine = AccessEngine(DOCS)
    svc, where = service(engine), surface(Directory())
    await svc.handle_message(message(channel="D1", is_direct=True), where)  # HR gets the marker
    await svc.handle_message(message(), where)
    reply = await ask_privately(svc, where)
    await svc.share(reply.answer.answer_id, "U0HR", where, Target("C1", user="U0HR"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert MARKER not in text and "Salary bands" not in text
    assert "withheld" in text and "audience channel slack:C1" in text


@pytest.mark.parametrize("platform", ["slack", "discord"])
async def test_the_rules_come_from_both_platforms_settings(platform):
    cfg = {platform: {"channel_sources": [{"channel": "123456", "sources": ["eng"]}]}}
    rules = AccessRules.from_settings(Settings(**cfg))
    assert rules.sources_for(platform, "123456", is_direct=False) == ("eng",)
    assert rules.sources_for(platform, "123456", is_direct=True) is None
    assert rules.sources_for(platform, "999999", is_direct=False) is None
