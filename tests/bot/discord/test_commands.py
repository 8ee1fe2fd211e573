"""`lore discord` and `lore serve` with Discord: configuration errors, start-up failures with clear
messages, and real processes against the emulator that answer and shut down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.bot.conftest import block_texts
from tests.bot.discord.conftest import ALICE, BOT_ID, DM_CHANNEL, GUILD_ID, TOKEN, answer_id_of, custom_ids
from tests.conftest import start_lore, wait_for
from tests.emulators.discord_emu import DiscordEmulator, make_guild, make_text_channel, message_create
from tests.emulators.slack import APP_TOKEN, BOT_TOKEN, BOT_USER_ID, app_mention_event


def test_lore_discord_without_a_token_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["discord"])
    assert result.exit_code == 2 and "LORE_DISCORD__TOKEN" in result.stderr
    assert "Discord app setup" in result.stderr


def test_the_command_is_registered():
    assert "discord" in {c.name for c in app.registered_commands}


async def test_a_wrong_token_stops_start_up_with_a_clear_message(lore_settings, make_services):
    from bot.serve import serve
    from bot.services import StartupError

    async with DiscordEmulator(token=TOKEN) as emu:
        with emu.patched():
            settings = lore_settings(slack={"bot_token": None}, discord={"token": "not-the-token"})
            with pytest.raises(StartupError, match=r"Discord rejected the bot token \(discord.token\)"):
                await serve(settings, slack=False, web=False, discord=True, services=make_services(settings))
        assert emu.identify_count == 0  # it never connected to the gateway


async def test_a_missing_message_content_intent_is_explained(lore_settings, make_services, emu):
    from bot.serve import serve
    from bot.services import StartupError

    emu.message_content_allowed = False
    settings = lore_settings(slack={"bot_token": None}, discord={"token": TOKEN})
    with pytest.raises(StartupError, match="Message Content Intent"):
        await serve(
            settings,
            slack=False,
            web=False,
            discord=True,
            services=make_services(settings),
            discord_options={"guild_ready_timeout": 0.05},
        )
    assert emu.identify_count >= 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["discord", "serve"])
async def test_a_real_process_answers_and_stops_on_sigterm(
    command, slack, docs_dir, index_template, tmp_path
):
    """`lore discord` alone, and `lore serve` with Discord, Slack and the web app in one process."""
    data = tmp_path / "data"
    shutil.copytree(index_template, data)
    (tmp_path / "lore.toml").write_text(
        f'data_dir = "{data}"\n[llm]\nprovider = "extractive"\n\n'
        f'[[sources]]\nname = "handbook"\ntype = "directory"\npath = "{docs_dir}"\n'
        'url_prefix = "https://wiki.example/hb/"\n'
    )
    port = free_port()
    guild = make_guild(GUILD_ID, channels=[make_text_channel(None, GUILD_ID, "support")])
    async with DiscordEmulator(guilds=[guild], token=TOKEN) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")} | {
            "LORE_DISCORD__TOKEN": TOKEN,
            "LORE_DISCORD__API_BASE": emu.rest_base,
            "LORE_DISCORD__GATEWAY_URL": emu.gateway_url,
            "LORE_WEB__PORT": str(port),
            "HF_HUB_OFFLINE": "1",
        }
        if command == "serve":
            env |= {
                "LORE_SLACK__BOT_TOKEN": BOT_TOKEN,
                "LORE_SLACK__APP_TOKEN": APP_TOKEN,
                "LORE_SLACK__API_URL": slack.base_url,
            }
        lore = Path(sys.executable).with_name("lore")
        proc = await asyncio.create_subprocess_exec(
            str(lore),
            command,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await emu.wait_ready(timeout=90)
            await emu.wait_for("PUT", rf"/applications/{BOT_ID}/commands", timeout=30)
            await emu.dispatch(
                "MESSAGE_CREATE", message_create("how do I set up the VPN?", ALICE, DM_CHANNEL)
            )

            def answers() -> list[dict]:
                return [m for m in emu.history.get(DM_CHANNEL, []) if custom_ids(m)]

            await wait_for(answers, 60, "the Discord answer")
            assert "WireGuard" in answers()[0]["content"] and answer_id_of(answers()[0])
            if command == "serve":
                await slack.wait_connected(timeout=60)
                ts = slack.next_ts()
                await slack.send_event(
                    app_mention_event(f"<@{BOT_USER_ID}> how do I set up the VPN?", "U1", "C1", ts)
                )
                [update] = await slack.wait_for("chat.update", timeout=60)
                assert "WireGuard" in block_texts(update.args)
                async with httpx.AsyncClient() as client:
                    health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
                assert health == {"status": "ok", "slack": "socket", "discord": "gateway"}
            proc.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
            assert proc.returncode == 0, output
            assert "SIGTERM received; shutting down" in output and "Discord disconnected" in output
            if command == "discord":
                assert "web app listening" not in output and "Slack" not in output
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
async def test_a_start_up_failure_is_one_clear_line_with_the_traceback_only_at_debug(log_level, tmp_path):
    """`lore discord` over an empty index, refused the Message Content intent by the gateway."""
    (tmp_path / "lore.toml").write_text(
        f'data_dir = "{tmp_path / "data"}"\n[llm]\nprovider = "extractive"\n\n'
        f'[[sources]]\nname = "handbook"\ntype = "directory"\npath = "{tmp_path / "docs"}"\n'
    )
    async with DiscordEmulator(token=TOKEN) as emu:
        emu.message_content_allowed = False
        env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")} | {
            "LORE_DISCORD__TOKEN": TOKEN,
            "LORE_DISCORD__API_BASE": emu.rest_base,
            "LORE_DISCORD__GATEWAY_URL": emu.gateway_url,
            "LORE_LOG_LEVEL": log_level,
            "HF_HUB_OFFLINE": "1",
        }
        proc = await start_lore("discord", cwd=tmp_path, env=env)
        output = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    assert proc.returncode == 1, output
    last = output.rstrip().splitlines()[-1]
    assert last.startswith("Cannot start: Discord refused the Message Content intent"), output
    assert output.count("Discord refused the Message Content intent") == (1 if log_level == "INFO" else 3)
    assert ("Traceback" in output) == (log_level == "DEBUG"), output
    [warning] = [line for line in output.splitlines() if "nothing is indexed yet" in line]
    assert " WARNING " in warning and "`lore index`" in warning


def test_the_setup_guide_invite_url_asks_for_exactly_the_permissions_lore_uses():
    from bot.discord.app import PERMISSIONS, SCOPES, invite_url
    from tests.conftest import REPO

    section = (REPO / "docs" / "discord.md").read_text()
    assert f"permissions={PERMISSIONS.value}" in section and "scope=bot+applications.commands" in section
    assert SCOPES == ("bot", "applications.commands")
    assert invite_url(1).endswith(f"permissions={PERMISSIONS.value}")
    named = {name for name, on in PERMISSIONS if on}
    assert named == {
        "read_messages",  # discord.py's name for View Channels
        "send_messages",
        "send_messages_in_threads",
        "create_public_threads",
        "embed_links",
        "read_message_history",
        "use_application_commands",
    }
    assert "Message Content Intent" in section and "LORE_DISCORD__TOKEN" in section
