"""deploy/slack/manifest.yaml: valid YAML with everything the adapter relies on."""

from __future__ import annotations

import yaml

from bot.doctor import SCOPE_USES
from tests.conftest import REPO

MANIFEST = REPO / "deploy" / "slack" / "manifest.yaml"


def test_manifest_has_every_scope_event_command_and_setting():
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes >= {
        "app_mentions:read",
        "chat:write",
        "im:history",
        "im:read",
        "im:write",
        "channels:history",
        "groups:history",
        "users:read",
        "commands",
        "reactions:read",
    }
    # Every scope `lore doctor` may ask for, so permissions work with the manifest as shipped.
    assert scopes >= set(SCOPE_USES)
    settings = manifest["settings"]
    events = set(settings["event_subscriptions"]["bot_events"])
    assert events == {"app_mention", "message.channels", "message.groups", "message.im", "reaction_added"}
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(commands) == {"/ask", "/reindex", "/lore-pause", "/lore-resume"}
    # "Summarize this thread": a message shortcut whose callback_id the Bolt app listens to
    from bot.slack.translate import SUMMARIZE_CALLBACK

    [shortcut] = manifest["features"]["shortcuts"]
    assert shortcut["type"] == "message" and shortcut["callback_id"] == SUMMARIZE_CALLBACK
    assert len(shortcut["name"]) <= 24 and len(shortcut["description"]) <= 80  # Slack's limits
    assert "files:read" in scopes  # attachments with a question
    assert manifest["features"]["bot_user"]["display_name"] == "Lore"
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True  # users can DM Lore
    # Slack's own limits on the manifest's texts
    info = manifest["display_information"]
    assert len(info["description"]) <= 140 and 175 <= len(info["long_description"]) <= 4000
    assert all(len(c["description"]) <= 100 for c in commands.values())


def test_http_mode_instructions_name_lores_paths():
    text = MANIFEST.read_text(encoding="utf-8")
    for path in ("/slack/events", "/slack/interactions", "/slack/commands"):
        assert f"https://lore.example.com{path}" in text
    from bot.slack.run import SLACK_PATHS

    assert set(SLACK_PATHS) == {"/slack/events", "/slack/interactions", "/slack/commands"}
