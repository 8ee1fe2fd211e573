"""Buttons, the 👎 form, /ask with "Share", and /reindex: Lore's real discord.py bot against the
emulator, with votes and syncs through the real embedded task client into the real stores."""

from __future__ import annotations

import logging
import time

from feedback.schema import VOTE_REASONS
from tests.bot.discord.conftest import (
    ALICE,
    BOB,
    CALLBACK,
    CAROL,
    DM_CHANNEL,
    SUPPORT,
    answer_id_of,
    custom_ids,
    embed_text,
    visible_text,
)
from tests.conftest import wait_for, write
from tests.emulators.discord_emu import FLAG_EPHEMERAL, PERM_MANAGE_GUILD, interaction_modal_submit

DEFERRED, MODAL, DEFERRED_UPDATE = 5, 9, 6


async def answered(lore, question="how do I set up the VPN?"):
    """Ask in a thread; returns (the answer message as the emulator holds it, its answer id)."""
    asked = await lore.mention(question)
    answer = await lore.wait_answer(asked["id"])
    return answer, answer_id_of(answer)


def callbacks(lore, interaction):
    return [c for c in lore.emu.calls_to("POST", CALLBACK) if c.path.split("/")[2] == interaction["id"]]


def form_submission(answer_id, reason, correction, user=ALICE, channel=SUPPORT, guild=None):
    """The 👎 form as Discord submits it: one Label (type 18) per field, each with its child's value."""
    components = [
        {"type": 18, "id": 1, "component": {"type": 3, "id": 2, "custom_id": "reason", "values": [reason]}},
        {
            "type": 18,
            "id": 3,
            "component": {"type": 4, "id": 4, "custom_id": "correction", "value": correction},
        },
    ]
    return interaction_modal_submit(f"fb:form:{answer_id}", components, user, channel, guild)


async def test_thumbs_up_records_the_vote_and_thanks_privately_once(connect_discord):
    lore = await connect_discord()
    answer, answer_id = await answered(lore)
    click = await lore.click(f"fb:up:{answer_id}", answer)
    await lore.emu.wait_for("POST", CALLBACK)
    [ack] = callbacks(lore, click)
    assert (
        ack.json["type"] == DEFERRED and ack.json["data"]["flags"] == FLAG_EPHEMERAL
    )  # "thinking…", privately
    [thanks] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{click['token']}")
    assert thanks.json["content"].startswith("Thanks for the feedback")
    assert lore.is_ephemeral(lore.original(click["token"]))
    vote = await wait_for(lambda: lore.current_vote(answer_id), what="the stored vote")
    assert (vote.value, vote.platform, vote.reason, vote.correction) == ("up", "discord", None, None)
    assert vote.user_hash == lore.user_hash(ALICE)

    await lore.emu.dispatch("INTERACTION_CREATE", click)  # the same click delivered again (a resume)
    await lore.settle(0.5)
    assert len(lore.followups(click["token"])) == 1
    from sqlalchemy import func, select

    from feedback.models import VoteEvent

    with lore.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(VoteEvent)) == 1


async def test_thumbs_down_opens_the_form_and_its_submission_records_reason_and_correction(connect_discord):
    lore = await connect_discord()
    answer, answer_id = await answered(lore)
    click = await lore.click(f"fb:down:{answer_id}", answer)
    [opened] = await lore.emu.wait_for("POST", CALLBACK)
    assert opened.json["type"] == MODAL  # the form is the answer to the click
    form = opened.json["data"]
    assert form["custom_id"] == f"fb:form:{answer_id}" and form["title"] == "Answer feedback"
    reason, correction = (row["component"] for row in form["components"])
    assert [row["label"] for row in form["components"]] == [
        "What was wrong with the answer?",
        "What would the right answer be?",
    ]
    assert reason["type"] == 3 and reason["custom_id"] == "reason" and reason.get("required", True)
    assert [o["value"] for o in reason["options"]] == list(VOTE_REASONS)
    assert [o["label"] for o in reason["options"]] == list(VOTE_REASONS.values())
    assert correction["type"] == 4 and correction["required"] is False and correction["style"] == 2
    vote = await wait_for(lambda: lore.current_vote(answer_id), what="the 👎 vote")
    assert vote.value == "down" and vote.reason is None  # recorded before the form is filled
    assert not lore.followups(click["token"])  # no thank-you yet: the form is open

    submit = form_submission(answer_id, "outdated", "Use the new VPN client, v3.", guild=answer["guild_id"])
    await lore.emu.dispatch("INTERACTION_CREATE", submit)
    await wait_for(lambda: lore.current_vote(answer_id).reason == "outdated", what="the reason")
    vote = lore.current_vote(answer_id)
    assert (vote.value, vote.correction) == ("down", "Use the new VPN client, v3.")
    [ack] = callbacks(lore, submit)
    assert ack.json["type"] == DEFERRED and ack.json["data"]["flags"] == FLAG_EPHEMERAL
    [thanks] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{submit['token']}")
    assert thanks.json["content"].startswith("Thanks — your feedback was recorded")
    assert lore.is_ephemeral(lore.original(submit["token"]))


async def test_buttons_and_the_form_still_work_after_the_bot_restarts(connect_discord):
    lore = await connect_discord()
    answer, answer_id = await answered(lore)
    down = await lore.click(f"fb:down:{answer_id}", answer)  # the form opens, then Lore restarts
    await lore.emu.wait_for("POST", CALLBACK)
    await wait_for(lambda: lore.current_vote(answer_id), what="the 👎")
    await lore.stop()

    again = await connect_discord()  # a new bot, Knowledge and task client over the same data
    assert again.bot is not lore.bot and again.emu.identify_count == 2
    click = await again.click(f"fb:up:{answer_id}", answer, user=CAROL)  # a button posted before
    [thanks] = await again.emu.wait_for("POST", rf"/webhooks/\d+/{click['token']}")
    assert thanks.json["content"].startswith("Thanks for the feedback")
    vote = await wait_for(lambda: again.current_vote(answer_id, CAROL), what="the vote after the restart")
    assert vote.value == "up"

    submit = form_submission(answer_id, "wrong", "", channel=answer["channel_id"], guild=answer["guild_id"])
    await again.emu.dispatch("INTERACTION_CREATE", submit)
    await wait_for(lambda: again.current_vote(answer_id).reason == "wrong", what="the form after the restart")
    assert again.current_vote(answer_id).correction is None
    assert down["id"] != submit["id"]


async def test_ask_answers_privately_and_share_posts_it_for_everyone(connect_discord):
    lore = await connect_discord()
    cmd = await lore.command("ask", {"question": "how many days of paid leave do we get?"})
    [ack] = await lore.emu.wait_for("POST", CALLBACK)
    assert ack.json["type"] == DEFERRED and ack.json["data"]["flags"] == FLAG_EPHEMERAL
    [progress] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{cmd['token']}")
    assert progress.json["content"] == "⏳ Searching the docs…" and progress.json["flags"] == FLAG_EPHEMERAL
    [edit] = await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+")
    private = lore.original(cmd["token"])
    assert edit.path.endswith(private["id"]) and lore.is_ephemeral(private)
    assert "25 days" in private["content"] and "Leave" in embed_text(private)
    answer_id = answer_id_of(private)
    assert custom_ids(private) == [f"fb:up:{answer_id}", f"fb:down:{answer_id}", f"share:{answer_id}"]
    assert lore.messages(SUPPORT) == []  # nothing public yet

    share = await lore.click(f"share:{answer_id}", private)
    [ack] = await wait_for(lambda: callbacks(lore, share), what="the share ack")
    assert ack.json["type"] == DEFERRED_UPDATE
    await wait_for(lambda: lore.messages(SUPPORT), what="the shared answer")
    [public] = lore.messages(SUPPORT)
    assert not lore.is_ephemeral(public)
    assert "25 days" in public["content"] and f"Shared by <@{ALICE['id']}>" in embed_text(public)
    assert custom_ids(public) == [f"fb:up:{answer_id}", f"fb:down:{answer_id}"]  # no second Share
    await wait_for(lambda: len(custom_ids(private)) == 2, what="the Share button gone from the private copy")
    row = await wait_for(lambda: lore.interaction(answer_id))
    assert row.question == "how many days of paid leave do we get?" and row.thread is None


async def test_ask_in_a_dm_is_answered_privately_too(connect_discord):
    lore = await connect_discord()
    cmd = await lore.command(
        "ask", {"question": "how do I set up the VPN?"}, guild_id=None, channel_id=DM_CHANNEL
    )
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+")
    private = lore.original(cmd["token"])
    assert lore.is_ephemeral(private) and "WireGuard" in visible_text(private)


async def test_reindex_from_a_non_admin_is_refused_privately_and_logged(connect_discord, caplog):
    caplog.set_level(logging.WARNING)
    lore = await connect_discord()
    cmd = await lore.command("reindex", {"source": "handbook"})
    [ack] = await lore.emu.wait_for("POST", CALLBACK)
    assert ack.json["type"] == DEFERRED and ack.json["data"]["flags"] == FLAG_EPHEMERAL
    [refusal] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{cmd['token']}")
    assert refusal.json["content"].startswith("Sorry, only Lore admins can run /reindex")
    assert lore.is_ephemeral(lore.original(cmd["token"]))
    assert any(
        "refused /reindex handbook from non-admin discord user" in r.getMessage()
        and ALICE["id"] in r.getMessage()
        for r in caplog.records
    )
    await lore.settle(0.3)
    assert lore.services.tasks.sync_status().running == {}
    assert not lore.edits(cmd["token"])


async def test_reindex_by_an_admin_defers_then_edits_progress_and_a_summary(connect_discord, tmp_path):
    extra = tmp_path / "extra"
    write(
        extra, "printers.md", "# Printers\n\nThe office printer is on the third floor next to the kitchen.\n"
    )
    write(extra, "wifi.md", "# Wi-Fi\n\nThe guest network is called Acme-Guest and needs no password.\n")
    write(extra, "empty.md", "")
    lore = await connect_discord(
        chat={"progress_every": 0.05},
        extra_sources=[{"name": "extra", "type": "directory", "path": str(extra)}],
    )
    sent_at = time.monotonic()
    cmd = await lore.command("reindex", {"source": "extra"}, user=BOB)  # BOB has the admin role
    [ack] = await lore.emu.wait_for("POST", CALLBACK)
    assert ack.at - sent_at < 3.0  # deferred inside Discord's 3 s
    assert ack.json["type"] == DEFERRED and not ack.json.get("data", {}).get("flags")  # public progress
    [started] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{cmd['token']}")
    assert started.json["content"] == "Reindexing extra: queued…"

    def summary():
        return [e for e in lore.edits(cmd["token"]) if e.json["content"].startswith("Reindex finished")]

    await wait_for(summary, 60, "the reindex summary")
    edits = lore.edits(cmd["token"])
    message = lore.original(cmd["token"])
    assert all(e.path.endswith(message["id"]) for e in edits)  # progress and summary edit one message
    assert any(e.json["content"].startswith("Reindexing…\n• extra:") for e in edits[:-1])
    assert edits[-1] is summary()[0] and not lore.is_ephemeral(message)
    assert "• extra: 2 added, 0 changed, 0 deleted, 1 skipped in" in message["content"]

    asked = await lore.mention("where is the office printer?")  # the new documents are searchable
    assert "third floor" in (await lore.wait_answer(asked["id"]))["content"]


async def test_manage_server_and_configured_admin_users_may_reindex(connect_discord):
    lore = await connect_discord()
    manager = await lore.command("reindex", {"source": "confluence"}, permissions=PERM_MANAGE_GUILD)
    [reply] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{manager['token']}")
    assert reply.json["content"] == "Unknown source 'confluence'. Known sources: handbook."
    carol = await lore.command(
        "reindex", {"source": "handbook"}, user=CAROL, guild_id=None, channel_id=DM_CHANNEL
    )
    await wait_for(
        lambda: any(e.json["content"].startswith("Reindex finished") for e in lore.edits(carol["token"])),
        60,
        "the summary for a configured admin",
    )


async def test_a_reindex_outliving_its_interaction_token_keeps_editing_through_the_channel(connect_discord):
    lore = await connect_discord(chat={"progress_every": 0.05})
    cmd = await lore.command("reindex", {"source": "handbook"}, user=BOB)
    [started] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{cmd['token']}")
    message = lore.original(cmd["token"])
    # Interaction tokens last 15 minutes: from now on Discord refuses the webhook edits.
    lore.emu.fail_next("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+", 401, times=100, code=50027)
    await wait_for(lambda: message["content"].startswith("Reindex finished"), 60, "the summary")
    [edit, *_] = lore.emu.calls_to("PATCH", rf"/channels/{SUPPORT}/messages/{message['id']}")
    assert edit.status == 200 and edit.json["allowed_mentions"] == {"parse": []}
    assert started.json["content"].startswith("Reindexing handbook")
