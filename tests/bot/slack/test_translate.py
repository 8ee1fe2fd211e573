"""Pure translation, on the recorded Slack payloads in tests/emulators/payloads/slack/."""

from __future__ import annotations

import json
import random

import pytest

from bot.core import actions
from bot.core.messages import AnswerReply, ErrorReply, Ignored, Notice, Progress
from bot.core.ports import UnsupportedReply
from bot.slack import translate
from feedback.schema import VOTE_REASONS
from knowledge.answer import Answer, Citation
from tests.emulators.slack import load_payload

RECORDED_BOT = "U06LQM3H2PX"  # Lore's user id in the recorded workspace (see "authorizations")
ANSWER_ID = "5f0c2a9e7b1d4c3e8a6f9b2d1c0e7a45"


def incoming(name: str):
    body = load_payload(name)
    assert body["authorizations"][0]["user_id"] == RECORDED_BOT
    return translate.message_from_event(body, RECORDED_BOT)


def test_app_mention():
    msg = incoming("app_mention")
    assert msg.platform == "slack" and msg.channel == "C05RK8T1B9D" and msg.message_id == "1718031203.471239"
    assert msg.text == "how do I rotate the staging database credentials?"  # Lore's mention removed
    assert msg.mentions_bot and not msg.is_direct and not msg.author_is_bot and not msg.is_edit
    assert msg.thread is None and msg.reply_thread == "1718031203.471239"  # answered in a new thread
    assert (msg.author, msg.workspace, msg.delivery_id) == ("U03E8A2KQ5T", "T03E5RJ7M4L", "Ev078JQ4NZ3K")
    assert msg.raw["event"]["type"] == "app_mention"


def test_direct_message():
    msg = incoming("message_im")
    assert msg.is_direct and not msg.mentions_bot
    assert msg.text == "what's our on-call escalation policy?"
    assert msg.thread is None and msg.reply_thread is None  # answered at the top level of the DM


def test_thread_reply_without_a_mention():
    msg = incoming("message_thread_reply")
    assert msg.thread == msg.reply_thread == "1718031203.471239"
    assert not msg.mentions_bot and not msg.is_direct and msg.author == "U04A1N7GZ2C"


def test_lores_own_message_is_a_bots():
    msg = incoming("message_bot")
    assert msg.author_is_bot and msg.author == RECORDED_BOT


def test_an_edit_is_marked_with_the_new_text():
    msg = incoming("message_changed")
    assert msg.is_edit and msg.mentions_bot
    assert msg.message_id == "1718031203.471239"  # the edited message, not the edit event
    assert msg.text == "how do I rotate the *production* database credentials?"


def test_other_subtypes_and_events_are_ignored_with_a_reason():
    assert incoming("message_deleted") == Ignored("message subtype message_deleted")
    body = load_payload("app_mention") | {"event": {"type": "reaction_added"}}
    assert translate.message_from_event(body, RECORDED_BOT) == Ignored("event type reaction_added")


def test_mentions_need_the_exact_user_id():
    assert translate.mentions("hi <@U1|lore> there", "U1") and not translate.mentions("<@U12>", "U1")
    assert translate.strip_mention("<@U1>   how\tdo <@U2> ?", "U1") == "how do <@U2> ?"


def test_slash_commands():
    ask = translate.ask_message(load_payload("slash_command_ask"))
    assert ask.text == "where is the incident postmortem template?" and ask.mentions_bot
    assert (ask.channel, ask.author, ask.is_direct) == ("C05RK8T1B9D", "U03E8A2KQ5T", False)
    reindex = load_payload("slash_command_reindex")
    assert translate.reindex_source(reindex["text"]) == "confluence"
    assert translate.is_direct_channel(reindex["channel_id"])
    assert translate.reindex_source("  ") is None


def test_lores_buttons_carry_the_answer_id():
    body = load_payload("block_actions_feedback_up")
    action, click = translate.button_action(body)
    assert action == actions.ButtonAction("up", ANSWER_ID)
    assert click == "lore_feedback_up:1718031299.114502"
    where = translate.action_context(body)
    assert (where.user, where.channel, where.thread) == ("U03E8A2KQ5T", "C05RK8T1B9D", "1718031203.471239")
    assert not where.is_ephemeral and where.message_ts == "1718031206.551719"


def test_share_click_on_an_ephemeral_answer():
    body = load_payload("block_actions_share_ephemeral")
    action, _ = translate.button_action(body)
    assert action == actions.ButtonAction("share", ANSWER_ID)
    where = translate.action_context(body)
    assert (
        where.is_ephemeral
        and where.thread is None
        and where.response_url.startswith("https://hooks.slack.com/")
    )


def test_foreign_button_values_are_not_lores():
    assert translate.button_action(load_payload("block_actions")) is None  # another app's "q_…" values
    for value in ["fb:up:", "fb:sideways:abc", "share:a b", "fb:up:" + "x" * 65, ""]:
        assert actions.parse_button(value) is None


def test_feedback_form_submission():
    form = translate.parse_feedback_view(load_payload("view_submission_feedback")["view"])
    assert form == translate.FeedbackForm(
        answer_id=ANSWER_ID,
        channel="C05RK8T1B9D",
        thread="1718031203.471239",
        reason="outdated",
        correction="The runbook moved to the new vault path last month: "
        "use `vault write database/rotate-root/staging-v2`.",
    )
    assert isinstance(translate.parse_feedback_view(load_payload("view_submission")["view"]), Ignored)


def test_the_modal_round_trips():
    view = translate.feedback_modal("abc", "C1", None)
    assert view["callback_id"] == translate.FEEDBACK_VIEW and len(view["title"]["text"]) <= 24
    options = view["blocks"][0]["element"]["options"]
    assert {o["value"]: o["text"]["text"] for o in options} == VOTE_REASONS
    view["state"] = {
        "values": {"reason": {"reason": {"selected_option": {"value": "wrong"}}}, "correction": {}}
    }
    assert translate.parse_feedback_view(view) == translate.FeedbackForm("abc", "C1", None, "wrong", None)
    view["state"]["values"]["reason"]["reason"]["selected_option"]["value"] = "made-up"
    assert translate.parse_feedback_view(view).reason is None


def test_thread_turns():
    messages = [
        {"ts": "1.000001", "user": "U1", "text": "<@UB> how do I deploy?"},
        {"ts": "1.000002", "user": "UB", "bot_id": "B1", "text": "Use the pipeline [1]."},
        {"ts": "1.000003", "user": "U9", "bot_id": "B9", "text": "another bot"},
        {"ts": "1.000004", "user": "UB", "bot_id": "B1", "text": "Searching the docs…"},
        {"ts": "1.000005", "subtype": "channel_join", "user": "U3", "text": "joined"},
        {"ts": "1.000006", "user": "U1", "text": "and on Fridays?"},
        {"ts": "1.000007", "user": "U1", "text": "later"},
    ]
    turns = translate.thread_turns(
        list(reversed(messages)), bot_user_id="UB", before="1.000007", skip_texts=["Searching the docs…"]
    )
    assert [(t.role, t.text) for t in turns] == [
        ("user", "how do I deploy?"),
        ("assistant", "Use the pipeline [1]."),
        ("user", "and on Fridays?"),
    ]


def answer(text="Install **WireGuard** [1].", n_citations=2, notice=None) -> Answer:
    citations = [
        Citation(
            n=i,
            title=f"Doc {i} & more",
            url=f"https://wiki.example/doc-{i}?a=1&b=2",
            source="hb",
            path=f"doc-{i}.md",
            doc_id=f"hb:doc-{i}",
            updated_at=f"2024-05-0{i % 9 + 1}T00:00:00Z",
            score=0.8,
        )
        for i in range(1, n_citations + 1)
    ]
    return Answer(
        question="q",
        text=text,
        abstained=False,
        citations=citations,
        model="m",
        prompt_version="1",
        notice=notice,
    )


def test_answer_blocks():
    a = answer(notice="the language model was unreachable")
    text, blocks = translate.render(AnswerReply(a, a.text, shareable=True))
    assert text == "Install *WireGuard* [1]."
    kinds = [b["type"] for b in blocks]
    assert kinds == ["section", "context", "section", "actions"]
    assert blocks[0]["text"] == {"type": "mrkdwn", "text": "Install *WireGuard* [1]."}
    assert "unreachable" in blocks[1]["elements"][0]["text"]
    assert blocks[2]["text"]["text"] == (
        "*Sources*\n"
        "1. <https://wiki.example/doc-1?a=1&amp;b=2|Doc 1 &amp; more> · updated 2024-05-02\n"
        "2. <https://wiki.example/doc-2?a=1&amp;b=2|Doc 2 &amp; more> · updated 2024-05-03"
    )
    buttons = blocks[3]["elements"]
    assert [b["value"] for b in buttons] == [
        f"fb:up:{a.answer_id}",
        f"fb:down:{a.answer_id}",
        f"share:{a.answer_id}",
    ]
    assert [b["action_id"] for b in buttons] == ["lore_feedback_up", "lore_feedback_down", "lore_share"]


def test_only_the_last_part_has_sources_and_buttons_and_parts_are_labelled():
    a = answer()
    _, first = translate.render(AnswerReply(a, "part one", part=1, parts=2))
    _, last = translate.render(AnswerReply(a, "part two", part=2, parts=2, shared_by="U7"))
    assert [b["type"] for b in first] == ["section", "context"]
    assert first[1]["elements"][0]["text"] == "Part 1 of 2"
    assert [b["type"] for b in last] == ["section", "context", "section", "actions"]
    _, shared = translate.render(AnswerReply(a, "all", shared_by="U7"))
    assert shared[0]["elements"][0]["text"] == "Shared by <@U7>"


def test_only_lores_own_template_mentions_and_only_from_a_user_id():
    a = answer(notice="ask <!here>")
    text, blocks = translate.render(AnswerReply(a, "<!channel> @everyone", shared_by="U7"))
    assert text == "&lt;!channel&gt; @\u2060everyone"
    assert [b["elements"][0]["text"] for b in blocks if b["type"] == "context"] == [
        "Shared by <@U7>",
        "ℹ️ ask &lt;!here&gt;",
    ]
    _, forged = translate.render(AnswerReply(a, "x", shared_by="U7> <!channel"))
    assert forged[0]["elements"][0]["text"] == "Shared by U7&gt; &lt;!channel"
    assert translate.render(Progress("<!here> looking…"))[0] == "&lt;!here&gt; looking…"


def test_non_web_links_are_shown_not_linked():
    c = answer().citations[0].model_copy(update={"url": "file:///srv/docs/doc-1.md", "updated_at": ""})
    assert translate.source_line(c) == "1. Doc 1 &amp; more (doc-1.md)"


def test_other_replies():
    assert translate.render(Progress("Searching the docs…"))[0] == "Searching the docs…"
    text, blocks = translate.render(ErrorReply("abc123def456", "Sorry, something went wrong."))
    assert (
        text == "Sorry, something went wrong. (reference: abc123def456)"
        and "abc123def456" in blocks[0]["text"]["text"]
    )
    text, blocks = translate.render(Notice("a < b & c"))
    assert text == "a &lt; b &amp; c" and blocks[0]["text"]["text"] == text

    class Poll:
        pass

    with pytest.raises(UnsupportedReply):
        translate.render(Poll())  # type: ignore[arg-type]


def _block_text(blocks) -> int:
    total = 0
    for b in blocks:
        total += len(b.get("text", {}).get("text", ""))
        total += sum(len(e.get("text", "")) for e in b.get("elements", []) if isinstance(e.get("text"), str))
    return total


@pytest.mark.parametrize("seed", range(5))
def test_any_part_fits_slacks_block_limits(seed):
    rng = random.Random(seed)
    alphabet = [
        "word ",
        "& ",
        "<b> ",
        "**bold** ",
        "[link](https://x.example/a?b=1&c=2) ",
        "\n\n",
        "`code` ",
        "\n",
    ]
    for _ in range(40):
        text = "".join(rng.choice(alphabet) for _ in range(2000))[: translate.MAX_PART]
        if rng.random() < 0.2:
            text = "&" * translate.MAX_PART  # the pathological case: every character escapes to five
        a = answer(n_citations=rng.randint(0, 10))
        fallback, blocks = translate.render(AnswerReply(a, text, shareable=True))
        assert len(blocks) <= 50 and len(fallback) <= 3000
        assert all(len(b["text"]["text"]) <= 3000 for b in blocks if "text" in b)
        assert _block_text(blocks) <= 12_000
        json.dumps(blocks)


# ---- permissions (issue 19) ----------------------------------------------------------------------


def test_whether_the_channel_is_shared_comes_from_the_event_when_it_says():
    assert incoming("app_mention").shared_channel is False
    body = load_payload("app_mention") | {"is_ext_shared_channel": True}
    assert translate.message_from_event(body, RECORDED_BOT).shared_channel is True
    del body["is_ext_shared_channel"]
    assert translate.message_from_event(body, RECORDED_BOT).shared_channel is None
    assert translate.ask_message(load_payload("slash_command_ask")).shared_channel is None


def test_principals_from_recorded_payloads():
    assert incoming("app_mention").principals == frozenset({"slack:U03E8A2KQ5T"})
    assert incoming("message_im").principals == frozenset({f"slack:{incoming('message_im').author}"})
    command = translate.ask_message(load_payload("slash_command_ask"))
    assert command.principals == frozenset({f"slack:{command.author}"}) and command.author
    assert translate.principals_of("") == frozenset()


def test_shared_channels_from_conversations_info():
    assert not translate.is_external_channel({"id": "C1", "is_shared": False, "is_ext_shared": False})
    assert translate.is_external_channel({"id": "C1", "is_shared": True, "is_ext_shared": True})
    assert translate.is_external_channel({"id": "C1", "is_pending_ext_shared": True})
    # Shared with another workspace of the same Enterprise Grid org: not external.
    assert not translate.is_external_channel({"id": "C1", "is_shared": True, "is_org_shared": True})
    assert translate.is_external_channel({"id": "C1", "is_shared": True, "is_org_shared": False})


def test_emails_from_users_info_only_when_the_scope_gives_them():
    assert (
        translate.email_principal({"profile": {"email": " Ann@HR.Example.com "}})
        == "email:ann@hr.example.com"
    )
    assert translate.email_principal({"profile": {"real_name": "Ann"}}) is None
    assert translate.email_principal({}) is None


def test_answer_privately_is_a_button_on_the_last_part_only():
    a = answer()
    _, blocks = translate.answer_blocks(AnswerReply(a, "x", answer_privately=True))
    values = [el["value"] for b in blocks if b["type"] == "actions" for el in b["elements"]]
    assert values == [f"fb:up:{a.answer_id}", f"fb:down:{a.answer_id}", f"private:{a.answer_id}"]
    [button] = [
        el
        for b in blocks
        if b["type"] == "actions"
        for el in b["elements"]
        if el["value"].startswith("private")
    ]
    assert button["action_id"] == translate.ACTION_PRIVATE and "Answer privately" in button["text"]["text"]
    assert "left out" in json.dumps(blocks)
    _, first = translate.answer_blocks(AnswerReply(a, "x", part=1, parts=2, answer_privately=True))
    assert not any(b["type"] == "actions" for b in first) and "left out" not in json.dumps(first)
    _, plain = translate.answer_blocks(AnswerReply(a, "x"))
    assert "private:" not in json.dumps(plain) and "left out" not in json.dumps(plain)
    assert actions.parse_button(f"private:{a.answer_id}") == actions.ButtonAction("private", a.answer_id)


# ---- auto-answer channels -------------------------------------------------------------------


def test_a_pause_reaction():
    found = translate.pause_reaction(load_payload("reaction_added_pause"))
    assert found == translate.PauseReaction("C05RK8T1B9D", "U05QH7J2K8L", paused=True)


def test_resume_and_other_reactions():
    body = load_payload("reaction_added_pause")
    resume = body | {"event": body["event"] | {"reaction": "arrow_forward"}}
    assert translate.pause_reaction(resume).paused is False
    skin_tone = body | {"event": body["event"] | {"reaction": "double_vertical_bar::skin-tone-2"}}
    assert translate.pause_reaction(skin_tone).paused is True
    for other in (
        body | {"event": body["event"] | {"reaction": "thumbsup"}},
        body | {"event": body["event"] | {"item": {"type": "file", "file": "F1"}}},
        body | {"event": body["event"] | {"item": {"type": "message", "channel": "D0DM", "ts": "1.2"}}},
        load_payload("app_mention"),
    ):
        assert translate.pause_reaction(other) is None


def test_human_repliers_leave_out_the_question_lore_and_bots():
    reply = load_payload("message_thread_reply")["event"]
    parent = {"type": "message", "user": "U03E8A2KQ5T", "ts": "1718031203.471239", "text": "q?"}
    lore = {
        "type": "message",
        "user": RECORDED_BOT,
        "bot_id": "B06LQ",
        "ts": "1718031300.000100",
        "text": "a",
    }
    other_bot = {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B0CI",
        "ts": "1718031400.1",
        "text": "ci",
    }
    joined = {
        "type": "message",
        "subtype": "channel_join",
        "user": "U09",
        "ts": "1718031500.1",
        "text": "joined",
    }
    messages = [reply, lore, parent, other_bot, joined]
    found = translate.human_repliers(messages, bot_user_id=RECORDED_BOT, thread_ts="1718031203.471239")
    assert found == ["U04A1N7GZ2C"]
