"""`lore discord` and `lore serve` with Discord: configuration errors and start-up failures with
clear messages. (Real processes answering and stopping on SIGTERM: tests/bot/test_serve.py.)"""

from __future__ import annotations

import asyncio
import os

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.bot.discord.conftest import TOKEN
from tests.conftest import start_lore
from tests.emulators.discord_emu import DiscordEmulator


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
            settings = lore_settings(discord={"token": "not-the-token"})
            with pytest.raises(StartupError, match=r"Discord rejected the bot token \(discord.token\)"):
                await serve(settings, slack=False, web=False, discord=True, services=make_services(settings))
        assert emu.identify_count == 0  # it never connected to the gateway


async def test_a_missing_message_content_intent_is_explained(lore_settings, make_services, emu):
    from bot.serve import serve
    from bot.services import StartupError

    emu.message_content_allowed = False
    settings = lore_settings(discord={"token": TOKEN})
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
