"""Lore's real discord.py bot against the gateway + REST emulator: login and command sync, DMs,
mentions answered in threads, follow-ups with context, what Lore ignores, duplicates after a
resume, heartbeats during slow answers, long answers, mentions that must not ping, failures."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time

from tests.bot.discord.conftest import (
    ALICE,
    BOT_ID,
    DM_CHANNEL,
    GUILD_ID,
    HEARTBEAT_S,
    RANDOM,
    SUPPORT,
    TOKEN,
    WEBHOOK,
    WEBHOOK_MESSAGE,
    answer_id_of,
    custom_ids,
    embed_text,
    visible_text,
)
from tests.conftest import wait_for, write
from tests.emulators.discord_emu import (
    INTENT_DMS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    make_user,
    message_create,
)

CODE_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)


async def test_login_ready_intents_and_command_sync(connect_discord):
    lore = await connect_discord()
    emu = lore.emu
    [me] = emu.calls_to("GET", "/users/@me")
    assert me.headers["Authorization"] == f"Bot {TOKEN}"
    assert emu.identify_count == 1
    assert emu.identifies[0]["intents"] == (
        INTENT_GUILDS
        | INTENT_GUILD_MESSAGES
        | INTENT_DMS
        | INTENT_MESSAGE_CONTENT
        | INTENT_GUILD_MESSAGE_REACTIONS
    )
    [put] = emu.calls_to("PUT", rf"/applications/{BOT_ID}/commands")  # no guild_ids: global sync
    commands = {c["name"]: c for c in put.json}
    assert set(commands) == {"ask", "reindex", "lore-pause", "lore-resume", "Summarize this thread"}
    assert commands["Summarize this thread"]["type"] == 3  # a message context-menu command
    [question] = commands["ask"]["options"]
    assert (question["name"], question["type"], question["required"]) == ("question", 3, True)
    [source] = commands["reindex"]["options"]
    assert (source["name"], source["required"], source["autocomplete"]) == ("source", False, True)
    assert commands["reindex"].get("default_member_permissions") is None  # everyone sees it; Lore refuses
    assert lore.bot.get_guild(int(GUILD_ID)) is not None


async def test_commands_sync_to_the_configured_guilds_for_development(connect_discord):
    lore = await connect_discord(discord={"guild_ids": [int(GUILD_ID)]})
    [put] = lore.emu.calls_to("PUT", rf"/applications/{BOT_ID}/guilds/{GUILD_ID}/commands")
    assert {c["name"] for c in put.json} == {
        "ask",
        "reindex",
        "lore-pause",
        "lore-resume",
        "Summarize this thread",
    }
    assert not lore.emu.calls_to("PUT", rf"/applications/{BOT_ID}/commands")


async def test_a_dm_gets_typing_then_the_answer_with_sources_and_vote_buttons(connect_discord):
    lore = await connect_discord()
    await lore.dm("how many days of paid leave do we get?")
    answer = await lore.wait_answer(DM_CHANNEL)
    [typing] = lore.emu.calls_to("POST", rf"/channels/{DM_CHANNEL}/typing")
    [progress] = lore.posts(DM_CHANNEL)
    assert typing.at <= progress.at  # the typing indicator is the first thing the user sees
    assert progress.json["content"] == "⏳ Searching the docs…"
    assert [m["id"] for m in lore.messages(DM_CHANNEL)] == [answer["id"]]  # that message became the answer
    assert "25 days" in answer["content"]
    [embed] = answer["embeds"]
    assert embed["title"] == "Sources"
    assert re.search(
        r"\*\*1\.\*\* \[Leave\]\(https://wiki\.example/hb/hr/leave\.md\) · updated \d{4}-\d{2}-\d{2}",
        embed["description"],
    )
    answer_id = answer_id_of(answer)
    assert custom_ids(answer) == [f"fb:up:{answer_id}", f"fb:down:{answer_id}"]
    assert "message_reference" not in progress.json  # a DM is answered plainly
    row = await wait_for(lambda: lore.interaction(answer_id), what="the interaction row")
    assert row.platform == "discord" and row.channel == DM_CHANNEL and row.thread is None
    assert row.user_hash == lore.user_hash(ALICE)


async def test_a_guild_mention_starts_a_thread_on_it_and_answers_inside(connect_discord):
    lore = await connect_discord()
    question = await lore.mention("how do I set up the VPN?")
    thread = question["id"]  # Discord gives the thread its starter message's id
    answer = await lore.wait_answer(thread)
    [start] = lore.emu.calls_to("POST", rf"/channels/{SUPPORT}/messages/{thread}/threads")
    assert start.json["name"] == "how do I set up the VPN?"
    assert start.json["auto_archive_duration"] == 1440
    assert lore.emu.channels[thread]["parent_id"] == SUPPORT
    assert lore.messages(SUPPORT) == []  # nothing in the channel itself
    assert "WireGuard" in answer["content"] and "VPN" in embed_text(answer)
    # the typing indicator went up in the channel at once, before the thread existed
    [typing] = lore.emu.calls_to("POST", rf"/channels/{SUPPORT}/typing")
    assert typing.at <= start.at
    row = await wait_for(lambda: lore.interaction(answer_id_of(answer)))
    assert (row.channel, row.thread, row.workspace) == (SUPPORT, thread, GUILD_ID)


async def test_a_follow_up_in_the_thread_needs_no_mention_and_uses_the_thread(connect_discord):
    lore = await connect_discord()
    question = await lore.mention("how do I set up the VPN?")
    thread = question["id"]
    await lore.wait_answer(thread)
    follow_up = await lore.say("and is split tunnelling allowed?", channel=thread)
    second = await lore.wait_answer(thread, count=2)
    assert "Split tunnelling is disabled" in second["content"]
    [history] = lore.emu.calls_to("GET", rf"/channels/{thread}/messages")
    assert history.query["before"] == follow_up["id"]
    row = await wait_for(lambda: lore.interaction(answer_id_of(second)))
    assert [t["role"] for t in row.context] == [
        "user",
        "assistant",
    ]  # the question (the starter) and the answer
    assert row.context[0]["text"] == "how do I set up the VPN?"
    assert "WireGuard" in row.context[1]["text"]
    assert len(lore.emu.calls_to("POST", rf"/channels/{SUPPORT}/messages/\d+/threads")) == 1


async def test_after_a_restart_a_follow_up_in_lores_thread_is_still_answered(connect_discord):
    lore = await connect_discord()
    question = await lore.mention("how do I set up the VPN?")
    thread = question["id"]
    await lore.wait_answer(thread)
    await lore.stop()  # a deploy: the process goes, its data directory stays

    again = await connect_discord()
    await again.say("and is split tunnelling allowed?", channel=thread)
    second = await again.wait_answer(thread, count=2)
    assert "Split tunnelling is disabled" in second["content"]


async def test_reply_mode_answers_with_an_inline_reply_in_the_channel(connect_discord):
    lore = await connect_discord(discord={"answer_in": "reply"})
    question = await lore.mention("how many days of paid leave do we get?")
    answer = await lore.wait_answer(SUPPORT)
    assert "25 days" in answer["content"]
    assert str(answer["message_reference"]["message_id"]) == question["id"]
    assert not lore.emu.calls_to("POST", rf"/channels/{SUPPORT}/messages/\d+/threads")
    [post] = lore.posts(SUPPORT)
    assert post.json["allowed_mentions"] == {"parse": [], "replied_user": False}  # nor the author


async def test_lore_ignores_bots_itself_webhooks_and_unaddressed_messages(connect_discord):
    lore = await connect_discord()
    bot_user = make_user(1_500_000_000_000_000_001, "otherbot", bot=True)
    mention = f"<@{BOT_ID}> how do I set up the VPN?"
    lore_user = make_user(int(BOT_ID), "Lore", bot=True)
    for payload in [
        message_create(mention, bot_user, SUPPORT, GUILD_ID, mentions=[lore_user]),  # another bot
        message_create(
            mention, None, SUPPORT, GUILD_ID, mentions=[lore_user], webhook_id=1_600_000_000_000_000_001
        ),
        message_create("vpn?", lore_user, DM_CHANNEL),  # Lore's own message
        message_create("how do I set up the VPN?", ALICE, SUPPORT, GUILD_ID),  # no mention
        message_create(
            "and leave?", ALICE, "1400000000000000999", GUILD_ID
        ),  # a channel Lore never answered in
    ]:
        await lore.emu.dispatch("MESSAGE_CREATE", payload)
    await lore.settle(0.5)
    assert not lore.emu.calls_to("POST", r"/channels/\d+/messages")
    assert not lore.emu.calls_to("POST", r"/channels/\d+/typing")


async def test_the_channel_allowlist_limits_guild_channels_but_not_dms(connect_discord):
    lore = await connect_discord(discord={"channels": [int(SUPPORT)]})
    outside = await lore.mention("how do I set up the VPN?", channel=RANDOM)
    await lore.settle(0.5)
    assert not lore.emu.calls_to("POST", rf"/channels/{RANDOM}/messages/{outside['id']}/threads")
    await lore.dm("how do I set up the VPN?")
    inside = await lore.mention("how do I set up the VPN?")
    await lore.wait_answer(DM_CHANNEL)
    await lore.wait_answer(inside["id"])


async def test_the_same_message_twice_and_replayed_after_a_resume_gives_one_answer(connect_discord):
    lore = await connect_discord()
    emu = lore.emu
    before = emu.seq
    msg = message_create("how do I set up the VPN?", ALICE, DM_CHANNEL)
    await emu.dispatch("MESSAGE_CREATE", msg)
    await emu.dispatch("MESSAGE_CREATE", msg)  # delivered twice
    await lore.wait_answer(DM_CHANNEL)
    await emu.force_reconnect("close", replay_after=before)  # the resume replays it once more
    assert emu.resume_count == 1
    replayed = [f for f in emu.sent if f.t == "MESSAGE_CREATE" and f.d["id"] == msg["id"]]
    assert len(replayed) == 4  # two deliveries, both replayed
    await lore.settle(1.0)
    assert len(lore.posts(DM_CHANNEL)) == 1 and len(lore.answers(DM_CHANNEL)) == 1
    # After the resume the bot still answers new questions.
    await lore.dm("how many days of paid leave do we get?")
    await lore.wait_answer(DM_CHANNEL, count=2)


async def test_heartbeats_are_acked_on_time_while_a_slow_answer_is_computed(connect_discord):
    delay = 8 * HEARTBEAT_S

    class Slow:
        def __init__(self, kn):
            self.kn = kn

        def answer(self, question, history=(), **access):
            time.sleep(delay)  # an LLM taking its time; blocking, as the AnswerEngine port allows
            return self.kn.answer(question, history, **access)

    lore = await connect_discord(engine=Slow)
    await asyncio.sleep(2 * HEARTBEAT_S)  # a few beats before, for the baseline
    started = time.monotonic()
    await lore.dm("how do I set up the VPN?")
    answer = await lore.wait_answer(DM_CHANNEL, timeout=delay + 30)
    finished = time.monotonic()
    assert "WireGuard" in answer["content"]
    assert finished - started >= delay
    beats = [got for got, _ in lore.emu.heartbeats]
    during = [t for t in beats if started <= t <= finished]
    assert len(during) >= 0.5 * delay / HEARTBEAT_S, (len(during), beats)
    window = [t for t in beats if started - HEARTBEAT_S <= t <= finished + HEARTBEAT_S]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    assert max(gaps) < 2.5 * HEARTBEAT_S, gaps  # a blocked loop would show a gap of ~`delay`
    assert all(acked - got < HEARTBEAT_S for got, acked in lore.emu.heartbeats)
    assert lore.emu.identify_count == 1 and lore.emu.resume_count == 0  # never dropped


async def test_a_blocked_event_loop_would_show_as_a_heartbeat_gap(connect_discord):
    """The measurement above can fail: blocking the loop (what Lore must never do) opens a gap."""
    lore = await connect_discord()
    await asyncio.sleep(2 * HEARTBEAT_S)
    blocked = time.monotonic()
    time.sleep(4 * HEARTBEAT_S)  # noqa: ASYNC251 - deliberately blocking the loop
    await asyncio.sleep(3 * HEARTBEAT_S)
    beats = [got for got, _ in lore.emu.heartbeats if got >= blocked - HEARTBEAT_S]
    assert max(b - a for a, b in itertools.pairwise(beats)) >= 3 * HEARTBEAT_S


async def test_a_5000_character_answer_arrives_in_parts_that_fit_with_whole_code_blocks(connect_discord):
    code = "\n".join(f"wg set wg0 peer KEY{i} allowed-ips 10.0.{i}.0/24  # peer {i}" for i in range(30))
    text = (
        "Here is how the VPN is configured [1]. " * 20
        + "\n\n```sh\n"
        + code
        + "\n```\n\n"
        + "After that, sign in with Okta and the config is downloaded automatically. " * 40
    )[:5000].rstrip()

    class Long:
        def __init__(self, kn):
            self.kn = kn

        def answer(self, question, history=(), **access):
            return self.kn.answer(question, history, **access).model_copy(update={"text": text})

    assert len(text) >= 4900 and code in text
    lore = await connect_discord(engine=Long)
    await lore.dm("how do I set up the VPN?")
    await lore.wait_answer(DM_CHANNEL)
    parts = lore.messages(DM_CHANNEL)
    assert len(parts) >= 3
    assert all(len(m["content"]) <= 2000 for m in parts)
    for m in parts:  # every part is valid Markdown on its own: fences open and close in it
        assert len(CODE_FENCE.findall(m["content"])) % 2 == 0, m["content"]
    assert [bool(custom_ids(m)) for m in parts] == [False] * (len(parts) - 1) + [True]
    assert [bool(m["embeds"]) for m in parts] == [False] * (len(parts) - 1) + [True]
    joined = "\n".join(m["content"] for m in parts)
    for line in code.splitlines():
        assert line in joined  # nothing lost, no line cut
    assert joined.count("sign in with Okta") == text.count("sign in with Okta")


async def test_everyone_and_here_in_a_document_ping_nobody(connect_discord, tmp_path):
    """Mentions from a document pass into Discord's text as they are (Discord shows them), but
    every message, edit and follow-up says `allowed_mentions: parse=[]`, so none of them pings:
    a mention, a DM, /ask, and the /ask answer shared in the channel."""
    docs = tmp_path / "announcements"
    write(
        docs,
        "rotation.md",
        "# Key rotation\n\n@everyone must rotate their SSH keys every 90 days. "
        f"@here reminders go out in #security on the first Monday of the quarter <@&{GUILD_ID}> <@4242>.\n",
    )
    lore = await connect_discord(
        extra_sources=[{"name": "announcements", "type": "directory", "path": str(docs)}]
    )
    assert lore.services.knowledge.sync("announcements").error is None
    question = await lore.mention("how often must we rotate SSH keys?")
    answer = await lore.wait_answer(question["id"])
    assert "@everyone" in answer["content"] or "@here" in answer["content"]
    await lore.dm("how often must we rotate SSH keys?")
    await lore.wait_answer(DM_CHANNEL)
    cmd = await lore.command("ask", {"question": "when do SSH key rotation reminders go out?"})
    await lore.emu.wait_for("PATCH", WEBHOOK_MESSAGE)
    private = lore.original(cmd["token"])
    await lore.click(f"share:{answer_id_of(private)}", private)
    await wait_for(lambda: lore.messages(SUPPORT), what="the shared answer")
    await wait_for(lambda: len(custom_ids(private)) == 2, what="the private copy edited")
    sends = [
        c
        for c in lore.emu.calls
        if (c.method == "POST" and re.fullmatch(r"/channels/\d+/messages|" + WEBHOOK, c.path))
        or (c.method == "PATCH" and re.fullmatch(r"/channels/\d+/messages/\d+|" + WEBHOOK_MESSAGE, c.path))
    ]
    assert len(sends) >= 8
    for call in sends:
        mentions = call.json["allowed_mentions"]
        assert mentions["parse"] == [], (call.method, call.path, call.json)
        assert not mentions.get("users") and not mentions.get("roles") and not mentions.get("replied_user")
    assert any("@everyone" in (c.json.get("content") or "") for c in sends)
    [shared] = lore.messages(SUPPORT)
    assert "@here" in shared["content"] and f"<@&{GUILD_ID}>" in shared["content"]


async def test_a_failing_engine_gives_a_short_error_with_the_correlation_id(connect_discord, caplog):
    class Broken:
        def __init__(self, kn):
            pass

        def answer(self, question, history=(), **access):
            raise RuntimeError("the index exploded")

    caplog.set_level(logging.ERROR)
    lore = await connect_discord(engine=Broken)
    await lore.dm("how do I set up the VPN?")
    await wait_for(
        lambda: "reference:" in (lore.messages(DM_CHANNEL) or [{}])[0].get("content", ""), 20, "the error"
    )
    [error] = lore.messages(DM_CHANNEL)
    assert error["content"].startswith("⚠️ Sorry, something went wrong")
    cid = re.search(r"reference: ([0-9a-f]{12})", error["content"])[1]
    assert any(r.exc_info and "answering failed" in r.getMessage() for r in caplog.records)
    assert not custom_ids(error)
    assert cid


async def test_rate_limited_rest_calls_are_retried_by_discord_py(connect_discord):
    lore = await connect_discord()
    lore.emu.fail_next("POST", rf"/channels/{DM_CHANNEL}/messages", retry_after=0.3)
    await lore.dm("how do I set up the VPN?")
    answer = await lore.wait_answer(DM_CHANNEL)
    first, second = lore.posts(DM_CHANNEL)
    assert (first.status, second.status) == (429, 200) and second.at - first.at >= 0.3
    assert "WireGuard" in visible_text(answer)


async def test_over_the_rate_limit_the_user_is_told_privately_in_a_dm(connect_discord):
    lore = await connect_discord(chat={"user_per_minute": 1})
    first = await lore.mention("how do I set up the VPN?")
    await lore.wait_answer(first["id"])
    second = await lore.mention("how many days of paid leave do we get?")
    [opened] = await lore.emu.wait_for("POST", "/users/@me/channels")
    assert str(opened.json["recipient_id"]) == ALICE["id"]
    dm = next(c for c, info in lore.emu.channels.items() if info["type"] == 1 and c != DM_CHANNEL)
    await wait_for(lambda: lore.messages(dm), what="the private notice")
    [notice] = lore.messages(dm)
    assert notice["content"].startswith("Sorry, you're asking faster than I can keep up")
    await lore.settle(0.3)
    assert second["id"] not in lore.emu.channels  # no thread was started for the refused question


async def test_where_lore_may_not_post_the_answer_goes_to_the_askers_dms(connect_discord):
    lore = await connect_discord()
    lore.emu.fail_next("POST", rf"/channels/{SUPPORT}/messages/\d+/threads", 403, code=50013)
    lore.emu.fail_next("POST", rf"/channels/{SUPPORT}/messages", 403, times=10, code=50013)
    await lore.mention("how do I set up the VPN?")
    [opened] = await lore.emu.wait_for("POST", "/users/@me/channels")
    assert str(opened.json["recipient_id"]) == ALICE["id"]
    dm = next(c for c, info in lore.emu.channels.items() if info["type"] == 1 and c != DM_CHANNEL)
    answer = await lore.wait_answer(dm)
    assert "WireGuard" in answer["content"]
    refused = lore.posts(SUPPORT)
    assert refused and all(c.status == 403 for c in refused)
    assert refused[0].json.get("message_reference")  # it tried an inline reply when the thread was refused


async def test_a_private_notice_for_someone_who_refuses_dms_goes_to_the_channel(connect_discord):
    lore = await connect_discord(chat={"user_per_minute": 1})
    first = await lore.mention("how do I set up the VPN?")
    await lore.wait_answer(first["id"])
    lore.emu.fail_next("POST", "/users/@me/channels", 403, code=50007)  # Cannot send messages to this user
    await lore.mention("how many days of paid leave do we get?")
    await wait_for(lambda: lore.messages(SUPPORT), what="the notice in the channel")
    [notice] = lore.messages(SUPPORT)
    assert notice["content"].startswith("Sorry, you're asking faster")
