"""`bot.discord.translate` on recorded payloads (tests/emulators/payloads/discord/, shaped after
discord.py's `discord/types` TypedDicts): pure functions, no network, no client."""

from __future__ import annotations

import json
import re

import pytest

from bot.core import actions
from bot.core.messages import AnswerReply, ErrorReply, Ignored, IncomingMessage, Notice, Progress
from bot.core.ports import UnsupportedReply
from bot.core.split import split_text
from bot.discord import translate
from feedback.schema import VOTE_REASONS
from knowledge.answer import Answer, Citation
from tests.emulators.discord_emu import PAYLOADS, PERM_MANAGE_GUILD

BOT = "1300000000000000001"
BOT_ROLE = "1430000000000000001"
GUILD, SUPPORT, DM = "1400000000000000001", "1400000000000000002", "1400000000000000004"
ALICE = "1400000000000000010"


def recorded(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def translate_(name: str, **kw) -> IncomingMessage | Ignored:
    kw.setdefault("bot_id", BOT)
    return translate.message_from_payload(recorded(name), **kw)


# ---- incoming messages -------------------------------------------------------------------------


def test_a_dm_is_direct_and_answered_at_the_top_level():
    msg = translate_("message_create_dm")
    assert isinstance(msg, IncomingMessage)
    assert (msg.platform, msg.channel, msg.author, msg.workspace) == ("discord", DM, ALICE, None)
    assert msg.is_direct and not msg.mentions_bot and not msg.author_is_bot
    assert (msg.thread, msg.reply_thread, msg.reply_to) == (None, None, None)
    assert msg.text == "how many days of paid leave do we get?"
    assert msg.delivery_id is None  # de-duplication is on the message id (replays after a resume)


def test_a_guild_mention_is_answered_in_a_thread_started_on_it():
    msg = translate_("message_create_guild_mention")
    assert isinstance(msg, IncomingMessage)
    assert msg.mentions_bot and not msg.is_direct and msg.workspace == GUILD
    assert msg.text == "how do I set up the VPN?"  # Lore's mention removed
    assert (msg.channel, msg.thread, msg.reply_thread) == (SUPPORT, None, msg.message_id)
    assert msg.reply_to is None


def test_reply_mode_answers_with_a_reply_to_the_message_instead():
    msg = translate_("message_create_guild_mention", answer_in="reply")
    assert isinstance(msg, IncomingMessage)
    assert (msg.reply_thread, msg.reply_to) == (None, msg.message_id)
    dm = translate_("message_create_dm", answer_in="reply")
    assert isinstance(dm, IncomingMessage) and dm.reply_to is None  # DMs stay plain


def test_the_legacy_nickname_mention_is_recognised_and_removed():
    msg = translate_("message_create_nick_mention")
    assert isinstance(msg, IncomingMessage)
    assert msg.mentions_bot and msg.text == "hey , where is the office printer?"


def test_a_message_in_a_thread_belongs_to_the_parent_channel_and_the_thread():
    msg = translate_("message_create_thread_follow_up", thread_parent=SUPPORT)
    assert isinstance(msg, IncomingMessage)
    thread = recorded("message_create_thread_follow_up")["channel_id"]
    assert (msg.channel, msg.thread, msg.reply_thread) == (SUPPORT, thread, thread)
    assert not msg.mentions_bot  # answered only if Lore answered in this thread before (the core knows)
    unknown = translate_("message_create_thread_follow_up")  # no parent known: a plain channel message
    assert isinstance(unknown, IncomingMessage) and (unknown.channel, unknown.thread) == (thread, None)


def test_bots_webhooks_and_lore_itself_are_marked_as_bots():
    webhook = translate_("message_create_webhook")
    assert isinstance(webhook, IncomingMessage) and webhook.author_is_bot and webhook.mentions_bot
    plain = recorded("message_create_dm")
    plain["author"] = plain["author"] | {"bot": True}
    other = translate.message_from_payload(plain, bot_id=BOT)
    assert isinstance(other, IncomingMessage) and other.author_is_bot
    plain["author"] = {"id": BOT, "username": "Lore"}  # Discord echoes Lore's own posts
    itself = translate.message_from_payload(plain, bot_id=BOT)
    assert isinstance(itself, IncomingMessage) and itself.author_is_bot


def test_a_mention_of_lores_managed_role_counts_as_a_mention():
    msg = translate_("message_create_role_mention", bot_role_ids=[BOT_ROLE])
    assert isinstance(msg, IncomingMessage)
    assert msg.mentions_bot and msg.text == "what is the per diem in New York?"
    other = translate_("message_create_role_mention", bot_role_ids=["1"])
    assert isinstance(other, IncomingMessage) and not other.mentions_bot


def test_a_reply_that_pings_lore_is_a_mention_even_without_the_text():
    msg = translate_("message_create_reply_to_lore")
    assert isinstance(msg, IncomingMessage)
    assert msg.mentions_bot and msg.text == "does that work on Linux too?"


def test_system_messages_and_broken_payloads_are_ignored():
    assert translate_("message_create_thread_created") == Ignored("message type 18")
    broken = recorded("message_create_dm")
    del broken["author"]
    assert isinstance(translate.message_from_payload(broken, bot_id=BOT), Ignored)


def test_thread_history_becomes_turns_oldest_first_with_the_starter():
    recorded_history = recorded("thread_history")
    messages = [*recorded_history["messages"], recorded_history["starter"]]
    follow_up = recorded_history["messages"][0]["id"]  # the newest: the question being answered now
    turns = translate.thread_turns(
        messages, bot_id=BOT, before=follow_up, skip_texts=[translate.progress_content("Searching the docs…")]
    )
    assert [(t.role, t.text) for t in turns] == [
        ("user", "how do I set up the VPN?"),  # the starter, in the parent channel, mention removed
        ("assistant", "Install WireGuard from Self Service and sign in with Okta [1]."),
        ("user", "thanks ! does it work on Linux?"),
    ]  # not another bot, not a leftover progress message, not an empty message, not the follow-up


def test_thread_names_fit_discords_limit():
    assert translate.thread_name("how do I set up the VPN?\nthanks") == "how do I set up the VPN?"
    long = translate.thread_name("why " * 60)
    assert len(long) <= translate.THREAD_NAME_MAX and long.endswith("…") and "  " not in long
    assert translate.thread_name("   ") == "Lore"


def test_ask_is_a_message_addressed_to_lore():
    msg = translate.ask_message(
        interaction_id="77", question="  vpn?  ", user=ALICE, channel=SUPPORT, guild=GUILD
    )
    assert (msg.message_id, msg.text, msg.mentions_bot, msg.is_direct) == ("77", "vpn?", True, False)
    dm = translate.ask_message(interaction_id="78", question="vpn?", user=ALICE, channel=DM)
    assert dm.is_direct


def test_who_may_reindex():
    admins = {"admin_users": [1], "admin_roles": [9]}
    assert translate.is_admin(1, [], 0, **admins)  # a configured user
    assert translate.is_admin(2, [5, 9], 0, **admins)  # a configured role
    assert translate.is_admin(2, [], PERM_MANAGE_GUILD, **admins)  # Manage Server
    assert translate.is_admin(2, [], 1 << 3, **admins)  # Administrator
    assert not translate.is_admin(2, [5], int(recorded("role")["permissions"]) | (1 << 11), **admins)


# ---- ids in components and the feedback form ---------------------------------------------------


def test_custom_ids_carry_the_answer_id_and_parse_back():
    answer_id = "0f9c2a7b4d3e4f5a8b9c0d1e2f3a4b5c"
    for kind in ("up", "down"):
        custom_id = actions.vote_id(kind, answer_id)
        assert re.fullmatch(actions.VOTE_TEMPLATE, custom_id) and len(custom_id) <= 100
        assert actions.parse_button(custom_id) == actions.ButtonAction(kind, answer_id)
    assert actions.parse_button(actions.share_id(answer_id)) == actions.ButtonAction("share", answer_id)
    for junk in ("", "fb:sideways:abc", "fb:up:", "share:a b", "lore:feedback:up", "fb:up:" + "x" * 65):
        assert actions.parse_button(junk) is None


def test_the_submitted_form_gives_the_reason_and_the_trimmed_correction():
    data = recorded("interaction_modal_submit_feedback")["data"]
    form = translate.parse_feedback_form(data)
    assert form == translate.FeedbackForm(
        "0f9c2a7b4d3e4f5a8b9c0d1e2f3a4b5c", "outdated", "Use the new VPN client, v3."
    )
    rows = {  # the classic layout: one action row per field
        "custom_id": "fb:form:abc",
        "components": [
            {"type": 1, "components": [{"type": 3, "custom_id": "reason", "values": ["made-up"]}]},
            {"type": 1, "components": [{"type": 4, "custom_id": "correction", "value": "x" * 5000}]},
        ],
    }
    parsed = translate.parse_feedback_form(rows)
    assert isinstance(parsed, translate.FeedbackForm)
    assert parsed.reason is None and len(parsed.correction or "") == translate.CORRECTION_MAX
    assert isinstance(translate.parse_feedback_form({"custom_id": "lore:ask", "components": []}), Ignored)
    assert set(VOTE_REASONS) >= {"outdated", "wrong"}


# ---- outgoing ------------------------------------------------------------------------------------


def cite(n: int, title: str = "VPN", url: str = "https://wiki.example/hb/vpn.md", **kw) -> Citation:
    base = dict(
        n=n,
        title=title,
        url=url,
        source="handbook",
        path="vpn.md",
        doc_id=f"handbook:{n}",
        updated_at="2024-05-01T10:00:00+00:00",
        score=0.8,
    )
    return Citation(**(base | kw))


def answer(text: str = "Install WireGuard [1].", citations=None, **kw) -> Answer:
    return Answer(
        question="q",
        text=text,
        abstained=False,
        citations=[cite(1)] if citations is None else citations,
        model="m",
        prompt_version="1",
        **kw,
    )


def test_an_answer_is_its_text_with_a_sources_embed_and_vote_buttons():
    a = answer()
    out = translate.render(AnswerReply(a, a.text))
    assert out.content == "Install WireGuard [1]."
    [embed] = out.embeds
    assert embed["title"] == "Sources"
    assert embed["description"] == "**1.** [VPN](https://wiki.example/hb/vpn.md) · updated 2024-05-01"
    assert [b.custom_id for b in out.buttons] == [f"fb:up:{a.answer_id}", f"fb:down:{a.answer_id}"]
    assert [b.emoji for b in out.buttons] == ["👍", "👎"]


def test_titles_are_escaped_links_kept_intact_and_file_urls_not_linked():
    citations = [
        cite(1, title="Setup [draft] *new*", url="https://wiki.example/a (old).md"),
        cite(2, title="Local", url="file:///srv/docs/local.md", path="local.md", updated_at=""),
    ]
    embed = translate.sources_embed(citations, notice="the language model was unreachable")
    assert embed is not None
    first, second = embed["description"].split("\n")
    assert (
        first
        == r"**1.** [Setup \[draft\] \*new\*](https://wiki.example/a%20%28old%29.md) · updated 2024-05-01"
    )
    assert second == "**2.** Local (local.md)"
    assert embed["footer"]["text"] == "ℹ️ the language model was unreachable"


def test_many_sources_stay_inside_the_embed_limit():
    embed = translate.sources_embed([cite(i, title="T" * 190) for i in range(1, 60)])
    assert embed is not None
    assert len(embed["description"]) <= translate.EMBED_DESCRIPTION_MAX
    assert embed["description"].endswith("…")


def test_only_the_last_part_carries_sources_and_buttons_and_shares_are_credited():
    a = answer("x " * 3000)
    parts = split_text(a.text, translate.MAX_CONTENT)
    rendered = [
        translate.render(AnswerReply(a, t, i, len(parts), shareable=True, shared_by=ALICE))
        for i, t in enumerate(parts, 1)
    ]
    assert len(rendered) > 1 and all(len(r.content) <= translate.MAX_CONTENT for r in rendered)
    assert [bool(r.buttons) for r in rendered] == [False] * (len(rendered) - 1) + [True]
    assert rendered[0].embeds == [{"type": "rich", "description": f"Shared by <@{ALICE}>"}]
    assert all(not r.embeds for r in rendered[1:-1])
    assert [b.custom_id for b in rendered[-1].buttons][-1] == f"share:{a.answer_id}"


def test_an_abstention_has_no_sources_embed_but_can_still_be_voted_on():
    a = answer("I couldn't find this in the docs.", citations=[])
    out = translate.render(AnswerReply(a, a.text))
    assert out.embeds == [] and len(out.buttons) == 2


def test_progress_errors_and_notices():
    assert translate.render(Progress()).content == "⏳ Searching the docs…"
    assert translate.render(Progress()).buttons == []
    error = translate.render(ErrorReply("abc123def456", "Sorry, something went wrong."))
    assert error.content == "⚠️ Sorry, something went wrong. (reference: abc123def456)"
    notice = translate.render(Notice("y" * 2500))
    assert len(notice.content) == translate.MAX_CONTENT and notice.content.endswith("…")


def test_unknown_replies_are_an_explicit_error():
    with pytest.raises(UnsupportedReply):
        translate.render(object())  # type: ignore[arg-type]


# ---- permissions (issue 19) ----------------------------------------------------------------------


def test_principals_are_the_author_and_the_members_roles_in_guild_messages():
    plain = translate_("message_create_guild_mention")
    assert plain.principals == frozenset({f"discord:{ALICE}"})
    with_roles = translate_("message_create_guild_mention_with_roles")
    assert with_roles.principals == frozenset(
        {f"discord:{ALICE}", "discord:role:1400000000000000005", "discord:role:1400000000000000006"}
    )
    dm = translate_("message_create_dm")
    assert dm.principals == frozenset({f"discord:{ALICE}"})  # a DM carries no roles


def test_roles_come_from_an_interactions_member_too():
    submitted = recorded("interaction_modal_submit_feedback")
    assert translate.member_roles(submitted) == [str(r) for r in submitted["member"]["roles"]]
    assert translate.member_roles({"member": {"roles": ["1400000000000000005"]}}) == ["1400000000000000005"]
    assert translate.member_roles({}) == []
    ask = translate.ask_message(
        interaction_id="1",
        question="q",
        user=ALICE,
        channel=SUPPORT,
        guild=GUILD,
        roles=["1400000000000000005"],
    )
    assert ask.principals == {f"discord:{ALICE}", "discord:role:1400000000000000005"}
    in_dm = translate.ask_message(interaction_id="2", question="q", user=ALICE, channel=DM, roles=["5"])
    assert in_dm.principals == {f"discord:{ALICE}"}


def test_answer_privately_is_a_button_and_a_hint_on_the_last_part_only():
    a = answer()
    out = translate.render(AnswerReply(a, a.text, answer_privately=True))
    assert [b.custom_id for b in out.buttons][-1] == f"private:{a.answer_id}"
    assert out.buttons[-1].label == "Answer privately"
    assert any("left out" in (e.get("description") or "") for e in out.embeds)
    first = translate.render(AnswerReply(a, a.text, part=1, parts=2, answer_privately=True))
    assert first.buttons == [] and not any("left out" in (e.get("description") or "") for e in first.embeds)
    plain = translate.render(AnswerReply(a, a.text))
    assert all(not b.custom_id.startswith("private:") for b in plain.buttons)
    assert re.fullmatch(actions.PRIVATE_TEMPLATE, out.buttons[-1].custom_id)


# ---- auto-answer channels -------------------------------------------------------------------


def test_a_forum_posts_first_message_is_its_threads_top():
    data = recorded("message_create_forum_post")
    msg = translate.message_from_payload(data, bot_id="1", thread_parent="1249736999999999999")
    assert msg.channel == "1249736999999999999" and msg.thread == msg.message_id == data["channel_id"]
    assert msg.reply_thread == msg.thread  # answered inside the post
    text = translate.forum_post_text("VPN on macOS Sonoma", msg.text)
    assert text == "VPN on macOS Sonoma\nIt keeps timing out after I sign in with Okta. Any ideas?"
    assert translate.forum_post_text("It keeps", msg.text) == msg.text  # no title said twice
    assert translate.forum_post_text("Where is the VPN guide?", "") == "Where is the VPN guide?"


def test_human_repliers_in_a_thread():
    starter = recorded("message_create_forum_post")
    later = [
        starter | {"id": "1249737500000000001", "author": {"id": "2", "bot": True}},  # another bot
        starter | {"id": "1249737500000000002", "author": {"id": "1"}},  # Lore
        starter | {"id": "1249737500000000003", "author": {"id": "77"}},  # a person
        starter | {"id": "1249737500000000004", "type": 18, "author": {"id": "78"}},  # a system message
        starter | {"id": "1249737500000000005", "webhook_id": "9", "author": {"id": "9"}},
    ]
    found = translate.human_repliers([*later, starter], bot_id="1", starter=starter["id"])
    assert found == ["77"]


def test_pause_emoji():
    reaction = recorded("message_reaction_add_pause")
    assert translate.pause_emoji(reaction["emoji"]["name"]) is True
    assert translate.pause_emoji("⏸") is True  # without the variation selector
    assert translate.pause_emoji("▶️") is False
    assert translate.pause_emoji("👍") is None and translate.pause_emoji(None) is None
