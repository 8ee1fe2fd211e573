"""`lore slack` and `lore serve` with Slack: configuration errors, a wrong token, and a real process
over an empty index. (Real processes answering and stopping on SIGTERM: tests/bot/test_serve.py.)"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import REPO, free_port, start_lore
from tests.emulators.slack import APP_TOKEN, BOT_TOKEN


def test_lore_slack_without_tokens_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["slack"])
    assert result.exit_code == 2
    assert "LORE_SLACK__BOT_TOKEN" in result.stderr and "LORE_SLACK__APP_TOKEN" in result.stderr


def test_lore_slack_http_mode_needs_the_signing_secret(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"LORE_SLACK__BOT_TOKEN": "xoxb-1", "LORE_SLACK__MODE": "http"}
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code == 2 and "LORE_SLACK__SIGNING_SECRET" in result.stderr


@pytest.mark.parametrize("command", ["slack", "serve"])
async def test_a_real_process_over_an_empty_index_tells_the_operator_to_run_lore_index(
    command, slack, docs_dir, tmp_path
):
    (tmp_path / "lore.toml").write_text(
        f'data_dir = "{tmp_path / "data"}"\n[llm]\nprovider = "extractive"\n[web]\nindex_on_start = false\n\n'
        f'[[sources]]\nname = "handbook"\ntype = "directory"\npath = "{docs_dir}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")} | {
        "LORE_SLACK__BOT_TOKEN": BOT_TOKEN,
        "LORE_SLACK__APP_TOKEN": APP_TOKEN,
        "LORE_SLACK__API_URL": slack.base_url,
        "LORE_WEB__PORT": str(free_port()),
        "HF_HUB_OFFLINE": "1",
    }
    proc = await start_lore(command, cwd=tmp_path, env=env)
    try:
        await slack.wait_connected(timeout=60)
        await asyncio.sleep(2)  # the check runs beside start-up, off the event loop
        proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
        assert proc.returncode == 0, output
        [warning] = [line for line in output.splitlines() if "nothing is indexed yet" in line]
        assert " WARNING " in warning and "`lore index`" in warning
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_commands_are_registered():
    assert {"slack", "serve"} <= {c.name for c in app.registered_commands}
    assert (REPO / "deploy" / "slack" / "manifest.yaml").is_file()


async def test_a_wrong_bot_token_stops_start_up_with_a_clear_message(slack, slack_settings, make_services):
    from bot.serve import serve
    from bot.services import StartupError

    settings = slack_settings(slack={"bot_token": "xoxb-wrong"})
    with pytest.raises(StartupError, match=r"Slack rejected the bot token \(slack.bot_token\): invalid_auth"):
        await serve(settings, slack=True, web=False, services=make_services(settings))
    assert not slack.calls_to("apps.connections.open")  # it never connected
