"""`lore serve`, `lore slack` and `lore discord` as real processes against the emulators: each
answers on its platforms, serves /healthz when the web app runs, and stops cleanly on SIGTERM;
and the start-up failures that belong to no platform."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket

import httpx
import pytest

from tests.bot.discord.conftest import ALICE, BOT_ID, DM_CHANNEL, GUILD_ID, TOKEN, answer_id_of, custom_ids
from tests.bot.slack.conftest import USER, block_texts
from tests.conftest import free_port, start_lore, wait_for
from tests.emulators.discord_emu import DiscordEmulator, make_guild, make_text_channel, message_create
from tests.emulators.slack import APP_TOKEN, BOT_TOKEN, BOT_USER_ID, SlackEmulator, app_mention_event


async def ask_in_slack(slack: SlackEmulator) -> None:
    await slack.wait_connected(timeout=60)
    ts = slack.next_ts()
    await slack.send_event(app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", USER, "C1", ts))
    [update] = await slack.wait_for("chat.update", timeout=60)
    assert "WireGuard" in block_texts(update.args)


async def ask_in_discord(emu: DiscordEmulator) -> None:
    await emu.wait_ready(timeout=90)
    await emu.wait_for("PUT", rf"/applications/{BOT_ID}/commands", timeout=30)
    await emu.dispatch("MESSAGE_CREATE", message_create("how do I set up the VPN?", ALICE, DM_CHANNEL))

    def answers() -> list[dict]:
        return [m for m in emu.history.get(DM_CHANNEL, []) if custom_ids(m)]

    await wait_for(answers, 60, "the Discord answer")
    assert "WireGuard" in answers()[0]["content"] and answer_id_of(answers()[0])


@pytest.mark.parametrize(
    ("command", "platforms"),
    [
        ("slack", ["slack"]),
        ("serve", ["slack"]),
        ("discord", ["discord"]),
        ("serve", ["slack", "discord"]),  # Slack, Discord and the web app in one process
    ],
    ids=["slack", "serve-slack", "discord", "serve-slack-discord"],
)
async def test_a_real_process_answers_and_stops_on_sigterm(
    command, platforms, docs_dir, index_template, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(index_template, data)
    (tmp_path / "lore.toml").write_text(
        f'data_dir = "{data}"\n[llm]\nprovider = "extractive"\n\n'
        f'[[sources]]\nname = "handbook"\ntype = "directory"\npath = "{docs_dir}"\n'
        'url_prefix = "https://wiki.example/hb/"\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")} | {
        "LORE_WEB__PORT": str(port),
        "HF_HUB_OFFLINE": "1",
    }
    async with contextlib.AsyncExitStack() as stack:
        slack = emu = None
        if "slack" in platforms:
            slack = await stack.enter_async_context(SlackEmulator(users={USER: {"name": "ada"}}))
            env |= {
                "LORE_SLACK__BOT_TOKEN": BOT_TOKEN,
                "LORE_SLACK__APP_TOKEN": APP_TOKEN,
                "LORE_SLACK__API_URL": slack.base_url,
            }
        if "discord" in platforms:
            guild = make_guild(GUILD_ID, channels=[make_text_channel(None, GUILD_ID, "support")])
            emu = await stack.enter_async_context(DiscordEmulator(guilds=[guild], token=TOKEN))
            env |= {
                "LORE_DISCORD__TOKEN": TOKEN,
                "LORE_DISCORD__API_BASE": emu.rest_base,
                "LORE_DISCORD__GATEWAY_URL": emu.gateway_url,
            }
        proc = await start_lore(command, cwd=tmp_path, env=env)
        try:
            if emu is not None:
                await ask_in_discord(emu)
            if slack is not None:
                await ask_in_slack(slack)
            if command == "serve":
                async with httpx.AsyncClient() as client:
                    health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
                expected = {"slack": "socket", "discord": "gateway"}
                assert health == {"status": "ok"} | {p: expected[p] for p in platforms}
            proc.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
            assert proc.returncode == 0, output
            assert "SIGTERM received; shutting down" in output
            assert all(f"{p.capitalize()} disconnected" in output for p in platforms), output
            assert "nothing is indexed yet" not in output
            if slack is not None:
                assert not slack.connected
            if command == "discord":
                assert "web app listening" not in output and "Slack" not in output
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_a_taken_port_stops_start_up_cleanly(lore_settings, make_services):
    from bot.serve import serve
    from bot.services import StartupError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = lore_settings()
        with pytest.raises(StartupError, match=f"could not listen on 127.0.0.1:{port}"):
            await serve(settings, web=True, port=port, services=make_services(settings))


async def test_start_up_warns_about_a_source_indexed_before_permissions(lore_settings, make_services, caplog):
    from bot.serve import _warn_if_empty

    services = make_services(lore_settings())
    [source] = [row["name"] for row in services.knowledge.sources_status()]
    _warn_if_empty(services)
    assert not [r for r in caplog.records if "before permissions" in r.getMessage()]
    services.knowledge.store.delete_state("access", source)  # as an index from before labels
    _warn_if_empty(services)
    [warning] = [r.getMessage() for r in caplog.records if "before permissions" in r.getMessage()]
    assert f"source {source} indexed before permissions" in warning and "`lore index`" in warning
