"""The Discord emulator, driven by the real discord.py client (no mocks)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.emulators.discord_emu import (
    DEFAULT_BOT_ID,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    PERM_MANAGE_GUILD,
    DiscordEmulator,
    interaction_command,
    interaction_component,
    interaction_modal_submit,
    make_guild,
    make_member,
    make_text_channel,
    make_user,
    message_create,
    patch_discord,
)

GUILD_ID = 1_400_000_000_000_000_001
CHANNEL_ID = 1_400_000_000_000_000_002
DM_CHANNEL_ID = 1_400_000_000_000_000_003
ALICE = make_user(1_400_000_000_000_000_010, "alice")
CALLBACK = r"/interactions/\d+/[^/]+/callback"
HEARTBEAT_S = 0.5


class FeedbackView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)  # persistent: survives restarts, routed by custom_id alone

    @discord.ui.button(label="Helpful", custom_id="lore:feedback:up")
    async def up(self, interaction: discord.Interaction, _button: discord.ui.Button[FeedbackView]) -> None:
        await interaction.response.send_message("Thanks for the feedback!", ephemeral=True)

    @discord.ui.button(label="Not helpful", custom_id="lore:feedback:down")
    async def down(self, interaction: discord.Interaction, _button: discord.ui.Button[FeedbackView]) -> None:
        await interaction.response.edit_message(content="Sorry! Noted.", view=None)  # type 7: update message


class AskModal(discord.ui.Modal, title="Ask Lore"):
    question: discord.ui.TextInput[AskModal] = discord.ui.TextInput(label="Question", custom_id="lore:ask:q")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"You asked: {self.question.value}")


class LoreTestBot(commands.Bot):
    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents(guilds=True, guild_messages=True, dm_messages=True)
        intents.message_content = message_content
        super().__init__(command_prefix="!", intents=intents, help_command=None, guild_ready_timeout=0.05)
        self.ready = asyncio.Event()
        self.seen: list[discord.Message] = []
        self.fetched: list[discord.InteractionMessage] = []
        self.fetched_event = asyncio.Event()

        @self.tree.command(description="Ask Lore a question")
        async def ask(interaction: discord.Interaction, question: str) -> None:
            await interaction.response.send_message(f"Answer to {question}", ephemeral=True)

        @self.tree.command(description="Ask through a form")
        async def askform(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(AskModal(custom_id="lore:ask"))

        @self.tree.command(description="Ask, deferring the answer")
        async def slowask(interaction: discord.Interaction, question: str) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"Deferred answer to {question}")
            await interaction.edit_original_response(content=f"Deferred answer to {question} (edited)")
            self.fetched.append(await interaction.original_response())
            self.fetched_event.set()

        @self.tree.command(description="Rebuild the index")
        @app_commands.checks.has_permissions(manage_guild=True)
        async def reindex(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Reindexing…", ephemeral=True)

        @reindex.error
        async def reindex_error(interaction: discord.Interaction, _err: app_commands.AppCommandError) -> None:
            await interaction.response.send_message("You need Manage Server.", ephemeral=True)

    async def setup_hook(self) -> None:
        self.add_view(FeedbackView())

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:  # includes our own posts, which Discord (and the emulator) echo back
            return
        self.seen.append(message)
        if message.content.startswith("slow"):
            await asyncio.sleep(3 * HEARTBEAT_S)  # slow (async) work must not hold up heartbeats
        await message.channel.send(f"echo: {message.content}", view=FeedbackView())


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    guild = make_guild(
        GUILD_ID, channels=[make_text_channel(CHANNEL_ID, GUILD_ID, "support")], members=[make_member(ALICE)]
    )
    async with DiscordEmulator(guilds=[guild], heartbeat_interval_ms=int(HEARTBEAT_S * 1000)) as e:
        with patch_discord(e):
            yield e


async def start(bot: LoreTestBot) -> asyncio.Task[None]:
    task = asyncio.create_task(bot.start("test-token"))
    ready = asyncio.create_task(bot.ready.wait())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # surface a login/connect failure
    if not ready.done():
        ready.cancel()
        await stop(bot, task)
        raise AssertionError("on_ready did not fire within 10 s")
    return task


async def stop(bot: LoreTestBot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def bot(emu: DiscordEmulator) -> AsyncIterator[LoreTestBot]:
    b = LoreTestBot()
    task = await start(b)
    try:
        yield b
    finally:
        await stop(b, task)


async def test_login_ready_and_command_sync(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    assert emu.identify_count == 1
    assert emu.identifies[0]["intents"] == bot.intents.value
    assert emu.connects[0] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}  # zlib frames used
    [me] = emu.calls_to("GET", "/users/@me")
    assert me.headers["Authorization"] == "Bot test-token" and emu.calls_to("GET", "/oauth2/applications/@me")
    assert bot.user is not None and bot.user.id == DEFAULT_BOT_ID
    assert bot.application_id == int(emu.application_id)
    guild = bot.get_guild(GUILD_ID)
    assert guild is not None and guild.me is not None and guild.get_channel(CHANNEL_ID) is not None

    synced = await bot.tree.sync()
    [put] = emu.calls_to("PUT", r"/applications/\d+/commands")
    assert {c["name"] for c in put.json} == {"ask", "askform", "slowask", "reindex"}
    assert {c.id for c in synced} == {int(c["id"]) for c in emu.commands[None]}
    assert {c.id for c in await bot.tree.sync()} == {c.id for c in synced}  # ids stable across syncs

    bot.tree.copy_global_to(guild=discord.Object(GUILD_ID))
    await bot.tree.sync(guild=discord.Object(GUILD_ID))
    assert emu.calls_to("PUT", rf"/applications/\d+/guilds/{GUILD_ID}/commands")


async def test_dm_message_gets_a_reply(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    await emu.dispatch("MESSAGE_CREATE", message_create("hello", ALICE, DM_CHANNEL_ID))
    [call] = await emu.wait_for("POST", rf"/channels/{DM_CHANNEL_ID}/messages")
    assert call.status == 200 and call.json["content"] == "echo: hello"
    assert call.json["components"][0]["components"][0]["custom_id"] == "lore:feedback:up"
    assert isinstance(bot.seen[0].channel, discord.DMChannel) and bot.seen[0].guild is None
    # The reply is echoed back over the gateway, as Discord does; the bot ignores its own message.
    echoes = [f for f in emu.sent if f.t == "MESSAGE_CREATE" and f.d["author"]["id"] == str(DEFAULT_BOT_ID)]
    assert echoes and len(bot.seen) == 1


async def test_guild_content_is_redacted_without_message_content_intent(emu: DiscordEmulator) -> None:
    bot = LoreTestBot(message_content=False)
    task = await start(bot)
    try:
        await emu.dispatch("MESSAGE_CREATE", message_create("secret", ALICE, CHANNEL_ID, GUILD_ID))
        mention = message_create(
            f"<@{DEFAULT_BOT_ID}> hi",
            ALICE,
            CHANNEL_ID,
            GUILD_ID,
            mentions=[make_user(DEFAULT_BOT_ID, "Lore", bot=True)],
        )
        await emu.dispatch("MESSAGE_CREATE", mention)
        await emu.wait_for("POST", rf"/channels/{CHANNEL_ID}/messages", count=2)
        assert [m.content for m in bot.seen] == ["", f"<@{DEFAULT_BOT_ID}> hi"]  # mentions keep their content
    finally:
        await stop(bot, task)


async def test_persistent_button_routes_by_custom_id(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    await emu.dispatch("MESSAGE_CREATE", message_create("hello", ALICE, CHANNEL_ID, GUILD_ID))
    [post] = await emu.wait_for("POST", rf"/channels/{CHANNEL_ID}/messages")
    reply = emu.history[str(CHANNEL_ID)][-1]  # the bot's message carrying the button
    assert reply["content"] == post.json["content"]

    click = interaction_component("lore:feedback:up", ALICE, CHANNEL_ID, reply, GUILD_ID, make_member(ALICE))
    await emu.dispatch("INTERACTION_CREATE", click)
    [cb] = await emu.wait_for("POST", CALLBACK)
    assert cb.path == f"/interactions/{click['id']}/{click['token']}/callback"
    assert cb.json["type"] == 4 and cb.json["data"]["flags"] == FLAG_EPHEMERAL
    assert cb.json["data"]["content"] == "Thanks for the feedback!"

    down = interaction_component("lore:feedback:down", ALICE, CHANNEL_ID, reply, GUILD_ID, make_member(ALICE))
    await emu.dispatch("INTERACTION_CREATE", down)
    cb = (await emu.wait_for("POST", CALLBACK, count=2))[1]
    assert cb.json["type"] == 7 and cb.json["data"]["components"] == []
    edited = emu.messages[reply["id"]]
    assert edited["content"] == "Sorry! Noted." and edited["edited_timestamp"] and edited["components"] == []


async def test_slash_command_replies_ephemerally(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    cmd = interaction_command("ask", {"question": "What is Lore?"}, user=ALICE, channel_id=DM_CHANNEL_ID)
    await emu.dispatch("INTERACTION_CREATE", cmd)
    [cb] = await emu.wait_for("POST", CALLBACK)
    assert cb.query["with_response"] == "1"
    assert cb.json["type"] == 4 and cb.json["data"]["flags"] == FLAG_EPHEMERAL
    assert cb.json["data"]["content"] == "Answer to What is Lore?"
    original = emu.originals[cmd["token"]]
    assert original["flags"] & FLAG_EPHEMERAL and original not in emu.history.get(str(DM_CHANNEL_ID), [])


async def test_modal_round_trip(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    cmd = interaction_command("askform", user=ALICE, channel_id=DM_CHANNEL_ID)
    await emu.dispatch("INTERACTION_CREATE", cmd)
    [cb] = await emu.wait_for("POST", CALLBACK)
    assert cb.json["type"] == 9 and cb.json["data"]["custom_id"] == "lore:ask"

    submit = interaction_modal_submit("lore:ask", {"lore:ask:q": "Where are the docs?"}, ALICE, DM_CHANNEL_ID)
    await emu.dispatch("INTERACTION_CREATE", submit)
    calls = await emu.wait_for("POST", CALLBACK, count=2)
    assert calls[1].json["type"] == 4 and calls[1].json["data"]["content"] == "You asked: Where are the docs?"


async def test_deferred_reply_then_followup(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    cmd = interaction_command("slowask", {"question": "status?"}, user=ALICE, channel_id=DM_CHANNEL_ID)
    await emu.dispatch("INTERACTION_CREATE", cmd)
    [cb] = await emu.wait_for("POST", CALLBACK)
    assert cb.json["type"] == 5
    [follow] = await emu.wait_for("POST", rf"/webhooks/{emu.application_id}/{cmd['token']}")
    assert follow.json["content"] == "Deferred answer to status?"
    original = emu.originals[cmd["token"]]  # the follow-up filled in the "thinking…" placeholder
    assert follow.status == 200 and not original["flags"] & FLAG_LOADING
    original_path = rf"/webhooks/{emu.application_id}/{cmd['token']}/messages/@original"
    await emu.wait_for("GET", original_path)
    await asyncio.wait_for(bot.fetched_event.wait(), 5)  # the bot got the GET's reply
    assert bot.fetched[0].content == "Deferred answer to status? (edited)"
    assert emu.calls_to("PATCH", original_path)[0].json["content"] == "Deferred answer to status? (edited)"
    assert original["content"] == "Deferred answer to status? (edited)"


@pytest.mark.parametrize(
    ("permissions", "expected"), [(0, "You need Manage Server."), (PERM_MANAGE_GUILD, "Reindexing…")]
)
async def test_manage_server_check_uses_member_permissions(
    emu: DiscordEmulator, bot: LoreTestBot, permissions: int, expected: str
) -> None:
    cmd = interaction_command(
        "reindex", user=ALICE, guild_id=GUILD_ID, channel_id=CHANNEL_ID, permissions=permissions
    )
    await emu.dispatch("INTERACTION_CREATE", cmd)
    [cb] = await emu.wait_for("POST", CALLBACK)
    assert cb.json["data"]["content"] == expected


async def test_heartbeats_keep_coming_while_the_bot_is_busy(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    busy_from = time.monotonic()
    await emu.dispatch("MESSAGE_CREATE", message_create("slow question", ALICE, DM_CHANNEL_ID))
    [reply] = await emu.wait_for("POST", rf"/channels/{DM_CHANNEL_ID}/messages", timeout=3 * HEARTBEAT_S + 5)
    assert all(acked >= got for got, acked in emu.heartbeats)
    received = [got for got, _ in emu.heartbeats]
    assert len([t for t in received if busy_from <= t <= reply.at]) >= 2  # beats during the slow handler
    gaps = [b - a for a, b in itertools.pairwise(received)]
    assert max(gaps) < HEARTBEAT_S * 1.6, gaps
    # The client saw the acks. Not "< RTT": discord.py stamps the send time in its heartbeat thread only after
    # the send completes, so a near-instant local ack can be measured against the previous beat (~interval).
    assert bot.latency <= HEARTBEAT_S * 1.5


@pytest.mark.parametrize("mode", ["op7", "close"])
async def test_force_reconnect_resumes(
    emu: DiscordEmulator, bot: LoreTestBot, mode: Literal["op7", "close"]
) -> None:
    session = emu.session_id
    await emu.force_reconnect(mode)
    assert (emu.identify_count, emu.resume_count) == (1, 1)
    [resume] = [f for f in emu.frames if f.op == 6]
    assert resume.d["session_id"] == session and resume.d["seq"] == emu.seq - 1  # all but RESUMED seen
    assert len(emu.connects) == 2
    await emu.dispatch("MESSAGE_CREATE", message_create("still there?", ALICE, DM_CHANNEL_ID))
    await emu.wait_for("POST", rf"/channels/{DM_CHANNEL_ID}/messages")


async def test_invalid_session_means_a_fresh_identify(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    await emu.force_reconnect("invalidate")
    assert emu.identify_count == 2


async def test_resume_can_redeliver_a_message(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    before = emu.seq
    msg = message_create("only once, please", ALICE, DM_CHANNEL_ID)
    await emu.dispatch("MESSAGE_CREATE", msg)
    await emu.wait_for("POST", rf"/channels/{DM_CHANNEL_ID}/messages")
    await emu.force_reconnect(replay_after=before)  # Discord redelivers events after `before`
    await emu.wait_for("POST", rf"/channels/{DM_CHANNEL_ID}/messages", count=2)
    assert [m.id for m in bot.seen] == [int(msg["id"])] * 2  # this naive test bot does not deduplicate


async def test_rate_limited_send_is_retried_by_discord_py(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    emu.fail_next("POST", rf"/channels/{CHANNEL_ID}/messages", retry_after=0.3)
    channel = bot.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hi")
    first, second = emu.calls_to("POST", rf"/channels/{CHANNEL_ID}/messages")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.3
    assert sent.id == int(emu.history[str(CHANNEL_ID)][-1]["id"])


async def test_rest_surface_threads_history_edits(emu: DiscordEmulator, bot: LoreTestBot) -> None:
    old = message_create("old question", ALICE, CHANNEL_ID, GUILD_ID)
    emu.add_history(CHANNEL_ID, [old])
    channel = bot.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)

    async with channel.typing():
        msg = await channel.send("answer")
    assert emu.calls_to("POST", rf"/channels/{CHANNEL_ID}/typing")[0].status == 204
    assert msg.author.id == DEFAULT_BOT_ID and msg.guild is not None

    await msg.edit(content="better answer")
    assert emu.messages[str(msg.id)]["content"] == "better answer"
    reply = await msg.reply("see above", file=discord.File(io.BytesIO(b"notes"), "notes.txt"))
    assert reply.reference is not None and reply.reference.message_id == msg.id
    assert [(a.filename, a.size) for a in reply.attachments] == [("notes.txt", 5)]
    await reply.delete()

    thread = await msg.create_thread(name="Follow-up")
    assert (thread.id, thread.parent_id) == (msg.id, CHANNEL_ID)  # Discord reuses the starter message's id
    assert thread.type == discord.ChannelType.public_thread
    fetched = await bot.fetch_channel(thread.id)
    assert isinstance(fetched, discord.Thread) and fetched.parent_id == CHANNEL_ID
    await thread.send("in the thread")
    assert emu.calls_to("POST", rf"/channels/{thread.id}/messages")
    private = await channel.create_thread(name="Private")
    assert private.type == discord.ChannelType.private_thread and private.id != thread.id

    history = [m.content async for m in channel.history(limit=10)]
    assert history == ["better answer", "old question"]  # newest first; thread posts live in the thread
    later = [m.content async for m in channel.history(after=discord.Object(int(old["id"])))]
    assert later == ["better answer"]

    with pytest.raises(discord.NotFound):
        await bot.fetch_channel(1)
    await msg.pin()  # not emulated: the catch-all answers 200 {} and records it
    assert any("pins" in c.path for c in emu.calls)

    dm = await bot.create_dm(discord.Object(int(ALICE["id"])))
    await dm.send("a private note")
    assert emu.calls_to("POST", rf"/channels/{dm.id}/messages")


async def test_raw_protocol_text_frames_and_exact_content_type(emu: DiscordEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu.rest_base}/users/@me") as resp:
            assert resp.headers["Content-Type"] == "application/json"  # no "; charset=utf-8"
        async with http.ws_connect(f"{emu.gateway_url}?v=10&encoding=json") as ws:  # no compress: text frames
            hello = json.loads(await ws.receive_str(timeout=5))
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == HEARTBEAT_S * 1000
            await ws.send_json({"op": 1, "d": None})
            assert json.loads(await ws.receive_str(timeout=5))["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": "t", "intents": 1 << 12, "properties": {}}})
            ready = json.loads(await ws.receive_str(timeout=5))
            assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
            assert ready["d"]["resume_gateway_url"] == emu.gateway_url
            assert ready["d"]["guilds"] == [{"id": str(GUILD_ID), "unavailable": True}]
            guild_create = json.loads(await ws.receive_str(timeout=5))
            assert guild_create["t"] == "GUILD_CREATE" and guild_create["d"]["id"] == str(GUILD_ID)


async def test_attachments_are_parsed_by_discord_py_and_served_by_the_cdn(
    emu: DiscordEmulator, bot: LoreTestBot
) -> None:
    att = emu.attach(DM_CHANNEL_ID, "notes.txt", b"hello", "text/plain; charset=utf-8")
    big = emu.attach(DM_CHANNEL_ID, "big.log", b"x", "text/plain", size=9_000_000)
    await emu.dispatch(
        "MESSAGE_CREATE", message_create("see file", ALICE, DM_CHANNEL_ID) | {"attachments": [att, big]}
    )
    await emu._until(lambda: bool(bot.seen), 5, "the message")
    first, second = bot.seen[0].attachments
    assert (first.filename, first.size, first.content_type) == ("notes.txt", 5, "text/plain; charset=utf-8")
    assert second.size == 9_000_000
    assert await first.read() == b"hello"  # discord.py fetches the CDN URL itself
