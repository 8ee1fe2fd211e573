"""Buttons, the feedback form, /ask with "Share in channel", and /reindex: the real Bolt app over
Socket Mode, votes and syncs through the real embedded task client into the real stores."""

from __future__ import annotations

import logging

from feedback.schema import VOTE_REASONS
from tests.bot.slack.conftest import (
    ADMIN,
    USER,
    WORKSPACE_ADMIN,
    block_texts,
    button_values,
    has_buttons,
    share_click,
)
from tests.conftest import wait_for, write
from tests.emulators.slack import block_action_payload, slash_command_payload, view_submission_payload


def thumbs_down(lore, answer_id: str, message_ts: str, ts: str) -> dict:
    """The 👎 button clicked by USER under the answer `message_ts` in thread `ts`."""
    return block_action_payload(
        "lore_feedback_down",
        f"fb:down:{answer_id}",
        USER,
        "C1",
        message_ts,
        thread_ts=ts,
        response_url=lore.slack.new_response_url("down"),
    )


async def answered(lore, question="how do I set up the VPN?"):
    """Ask in a thread; returns (thread ts, answer message ts, answer id)."""
    ts = await lore.mention(question)
    update = await lore.wait_answer(ts)
    return ts, update.args["ts"], button_values(update.args)[0].split(":")[2]


async def test_thumbs_up_records_one_vote_and_thanks_privately(connect_slack):
    lore = await connect_slack()
    ts, message_ts, answer_id = await answered(lore)
    url = lore.slack.new_response_url("up")
    click = block_action_payload(
        "lore_feedback_up",
        f"fb:up:{answer_id}",
        USER,
        "C1",
        message_ts,
        thread_ts=ts,
        response_url=url,
        block_id=f"lore_actions:{answer_id}",
    )
    envelope = await lore.slack.send_interactive(click)
    assert (await lore.slack.wait_for_ack(envelope)).payload is None
    await lore.slack.send_interactive(click)  # the same click delivered again
    [thanks, _again] = await lore.slack.wait_for("response_url", count=2)
    assert thanks.args["response_type"] == "ephemeral" and thanks.args["text"].startswith("Thanks")
    assert thanks.args["replace_original"] is False  # the answer stays; the thanks is a new private message

    vote = await wait_for(lambda: lore.current_vote(answer_id, USER), what="the stored vote")
    assert (vote.value, vote.platform, vote.reason, vote.correction) == ("up", "slack", None, None)
    assert vote.user_hash == lore.user_hash(USER)
    # A later 👎 by the same user replaces the vote; the redelivered 👍 above added nothing.
    down = thumbs_down(lore, answer_id, message_ts, ts)
    await lore.slack.send_interactive(down)
    await wait_for(lambda: lore.current_vote(answer_id, USER).value == "down", what="the 👎 replacing the 👍")
    assert sorted(e.value for e in lore.vote_events(answer_id)) == ["down", "up"]


async def test_thumbs_down_opens_the_form_and_the_submission_records_reason_and_correction(connect_slack):
    lore = await connect_slack()
    ts, message_ts, answer_id = await answered(lore)
    click = thumbs_down(lore, answer_id, message_ts, ts)
    await lore.slack.send_interactive(click)
    [opened] = await lore.slack.wait_for("views.open")
    view = opened.args["view"]
    assert opened.args["trigger_id"] == click["trigger_id"]
    assert view["callback_id"] == "lore_feedback"
    reason_block, correction_block = view["blocks"]
    assert [o["value"] for o in reason_block["element"]["options"]] == list(VOTE_REASONS)
    assert [o["text"]["text"] for o in reason_block["element"]["options"]] == list(VOTE_REASONS.values())
    assert correction_block["optional"] is True
    assert correction_block["label"]["text"] == "What would the right answer be?"
    vote = await wait_for(lambda: lore.current_vote(answer_id, USER), what="the 👎 vote")
    assert vote.value == "down" and vote.reason is None  # recorded before the form is filled
    [thanks] = await lore.slack.wait_for("response_url")
    assert thanks.args["text"].startswith("Thanks")

    values = {
        "reason": {"reason": {"type": "static_select", "selected_option": {"value": "outdated"}}},
        "correction": {"correction": {"type": "plain_text_input", "value": "Use the new VPN client, v3."}},
    }
    submit = view_submission_payload(
        "lore_feedback", view["private_metadata"], values, USER, view_id="V0FORM"
    )
    envelope = await lore.slack.send_interactive(submit)
    assert (await lore.slack.wait_for_ack(envelope)).payload is None  # the form closes
    await wait_for(lambda: lore.current_vote(answer_id, USER).reason == "outdated", what="the reason")
    vote = lore.current_vote(answer_id, USER)
    assert (vote.value, vote.correction) == ("down", "Use the new VPN client, v3.")
    [private] = await lore.slack.wait_for("chat.postEphemeral")
    assert (
        private.args["user"] == USER and private.args["channel"] == "C1" and private.args["thread_ts"] == ts
    )
    assert private.args["text"].startswith("Thanks")


async def test_a_form_without_a_reason_is_sent_back_with_an_error(connect_slack):
    lore = await connect_slack()
    submit = view_submission_payload("lore_feedback", '{"a": "abc123", "c": "C1", "t": null}', {}, USER)
    envelope = await lore.slack.send_interactive(submit)
    ack = await lore.slack.wait_for_ack(envelope)
    assert ack.payload == {"response_action": "errors", "errors": {"reason": "Pick the closest reason."}}


async def test_ask_answers_privately_and_share_posts_it_in_the_channel(connect_slack):
    lore = await connect_slack()
    url = lore.slack.new_response_url("ask")
    envelope = await lore.slack.send_slash_command(
        slash_command_payload("/ask", "how many days of paid leave do we get?", USER, "C1", response_url=url)
    )
    assert (await lore.slack.wait_for_ack(envelope)).payload is None
    progress, answer = await lore.slack.wait_for("response_url", count=2, timeout=20)
    assert progress.name == answer.name == "ask"
    assert progress.args["response_type"] == "ephemeral" and progress.args["text"] == "Searching the docs…"
    assert answer.args["response_type"] == "ephemeral" and answer.args["replace_original"] is True
    assert "25 days" in block_texts(answer.args)
    up, down, share = button_values(answer.args)
    answer_id = share.removeprefix("share:")
    assert up == f"fb:up:{answer_id}" and down == f"fb:down:{answer_id}"
    assert not lore.slack.calls_to("chat.postMessage")  # nothing public yet

    share_url = lore.slack.new_response_url("share")
    click = block_action_payload(
        "lore_share", share, USER, "C1", "1700000000.000009", response_url=share_url, is_ephemeral=True
    )
    await lore.slack.send_interactive(click)
    shared, deleted = (await lore.slack.wait_for("response_url", count=4))[2:]
    assert shared.name == deleted.name == "share"
    assert shared.args["response_type"] == "in_channel" and "25 days" in block_texts(shared.args)
    assert f"Shared by <@{USER}>" in block_texts(shared.args)
    assert "share:" not in " ".join(button_values(shared.args))  # votes, but no second share button
    assert deleted.args == {"delete_original": True}
    row = await wait_for(lambda: lore.interaction(answer_id))
    assert row.question == "how many days of paid leave do we get?" and row.thread is None


async def test_share_right_after_the_answer_arrives_is_not_too_old(connect_slack):
    """Slack shows the /ask answer before Lore has Slack's reply to that post: a Share clicked
    in between finds the answer (it is cached before it is delivered)."""
    lore = await connect_slack()
    url = lore.slack.new_response_url("ask")
    async with lore.slack.holding("ask", has_buttons) as release:
        await lore.slack.send_slash_command(
            slash_command_payload(
                "/ask", "how many days of paid leave do we get?", USER, "C1", response_url=url
            )
        )
        answer = await wait_for(
            lambda: [c for c in lore.slack.calls_to("response_url") if has_buttons(c.args)], what="the answer"
        )
        share = button_values(answer[0].args)[2]
        click = share_click(lore.slack, share)
        await lore.slack.send_interactive(click)
        shared, *_deleted = await wait_for(
            lambda: [c for c in lore.slack.calls_to("response_url") if c.name == "share"], what="the share"
        )
        release.set()
    assert shared.args["response_type"] == "in_channel" and "25 days" in block_texts(shared.args)


async def test_an_ask_answer_from_before_a_restart_can_still_be_shared(connect_slack):
    lore = await connect_slack()
    url = lore.slack.new_response_url("ask")
    await lore.slack.send_slash_command(
        slash_command_payload("/ask", "how many days of paid leave do we get?", USER, "C1", response_url=url)
    )
    _progress, answer = await lore.slack.wait_for("response_url", count=2, timeout=20)
    share = button_values(answer.args)[2]
    await lore.stop()

    again = await connect_slack()
    click = share_click(again.slack, share)
    await again.slack.send_interactive(click)
    shared, deleted = (await again.slack.wait_for("response_url", count=4))[2:]
    assert shared.args["response_type"] == "in_channel" and "25 days" in block_texts(shared.args)
    assert deleted.args == {"delete_original": True}


async def test_ask_without_a_question_explains_usage(connect_slack):
    lore = await connect_slack()
    url = lore.slack.new_response_url("empty")
    await lore.slack.send_slash_command(slash_command_payload("/ask", "  ", USER, "C1", response_url=url))
    [usage] = await lore.slack.wait_for("response_url")
    assert "/ask" in usage.args["text"] and usage.args["response_type"] == "ephemeral"


async def test_reindex_is_refused_to_non_admins_and_the_refusal_is_logged(connect_slack, caplog):
    caplog.set_level(logging.WARNING)
    lore = await connect_slack()
    url = lore.slack.new_response_url("reindex")
    await lore.slack.send_slash_command(slash_command_payload("/reindex", "", USER, "C1", response_url=url))
    [refusal] = await lore.slack.wait_for("response_url")
    assert refusal.args["response_type"] == "ephemeral" and "only Lore admins" in refusal.args["text"]
    assert [c.args["user"] for c in lore.slack.calls_to("users.info")] == [USER]
    assert any("refused /reindex" in r.getMessage() and USER in r.getMessage() for r in caplog.records)
    await lore.settle(0.2)
    assert not lore.slack.calls_to("chat.postMessage")
    assert lore.services.tasks.sync_status().running == {}


async def test_reindex_by_an_admin_runs_the_sync_with_progress_in_place_and_a_summary(
    connect_slack, tmp_path
):
    extra = tmp_path / "extra"
    write(
        extra, "printers.md", "# Printers\n\nThe office printer is on the third floor next to the kitchen.\n"
    )
    write(extra, "wifi.md", "# Wi-Fi\n\nThe guest network is called Acme-Guest and needs no password.\n")
    write(extra, "empty.md", "")
    lore = await connect_slack(
        chat={"progress_every": 0.05},
        extra_sources=[{"name": "extra", "type": "directory", "path": str(extra)}],
    )
    url = lore.slack.new_response_url("reindex")
    await lore.slack.send_slash_command(
        slash_command_payload("/reindex", "extra", ADMIN, "C1", response_url=url)
    )
    [started] = await lore.slack.wait_for("chat.postMessage")
    assert started.args["channel"] == "C1" and started.args["text"] == "Reindexing extra: queued…"
    message_ts = lore.posted("C1")[0]["ts"]

    def summary():
        return [
            c for c in lore.slack.calls_to("chat.update") if c.args["text"].startswith("Reindex finished")
        ]

    await lore.slack.wait_until(lambda: bool(summary()), 60, "the reindex summary")
    updates = lore.slack.calls_to("chat.update")
    assert all(u.args["ts"] == message_ts for u in updates)  # progress and summary edit one message
    assert any(u.args["text"].startswith("Reindexing…\n• extra:") for u in updates[:-1])
    assert updates[-1] is summary()[0]
    text = summary()[0].args["text"]
    assert "• extra: 2 added, 0 changed, 0 deleted, 1 skipped in" in text
    assert not lore.slack.calls_to("users.info")  # a configured admin needs no lookup

    # The new documents are searchable now.
    ts = await lore.mention("where is the office printer?")
    assert "third floor" in block_texts((await lore.wait_answer(ts)).args)


async def test_workspace_owners_may_reindex_and_unknown_sources_are_named(connect_slack):
    lore = await connect_slack()
    url = lore.slack.new_response_url("reindex")
    await lore.slack.send_slash_command(
        slash_command_payload("/reindex", "confluence", WORKSPACE_ADMIN, "C1", response_url=url)
    )
    [reply] = await lore.slack.wait_for("response_url")
    assert reply.args["text"] == "Unknown source 'confluence'. Known sources: handbook."
    assert [c.args["user"] for c in lore.slack.calls_to("users.info")] == [WORKSPACE_ADMIN]


async def test_reindex_progress_goes_to_the_admins_dm_when_lore_is_not_in_the_channel(connect_slack):
    lore = await connect_slack(chat={"progress_every": 0.05})
    lore.slack.fail_next("chat.postMessage", 200, error="not_in_channel")
    url = lore.slack.new_response_url("reindex")
    await lore.slack.send_slash_command(
        slash_command_payload("/reindex", "handbook", ADMIN, "C9", response_url=url)
    )
    refused, dm = await lore.slack.wait_for("chat.postMessage", count=2)
    assert refused.args["channel"] == "C9" and dm.args["channel"] == ADMIN
    await lore.slack.wait_until(
        lambda: any(
            c.args["text"].startswith("Reindex finished") for c in lore.slack.calls_to("chat.update")
        ),
        60,
        "the summary",
    )
    summary = lore.slack.calls_to("chat.update")[-1]
    assert summary.args["channel"] == ADMIN
    assert "• handbook: 0 added, 0 changed, 0 deleted, 0 skipped in" in summary.args["text"]
