"""`lore doctor` (a real process) names the Slack scopes "Ask an expert" needs, and what breaks
without each."""

from __future__ import annotations

from pathlib import Path

from tests.emulators.slack import BOT_TOKEN, SlackEmulator
from tests.ops.test_doctor import by_name, doctor


async def test_expert_targets_need_reactions_and_their_membership_scopes(tmp_path: Path) -> None:
    slack_only = {"bot_token": BOT_TOKEN, "mode": "http", "signing_secret": "s"}
    escalation = {
        "default": {"slack": "slack:group:S0EXP"},
        "routes": [{"channels": ["slack:C0ENG"], "slack": "slack:channel:C0ENGHELP"}],
    }
    async with SlackEmulator() as slack:
        slack.scopes = "chat:write,commands,usergroups:read"
        code, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, escalation=escalation
        )
        row = by_name(report)["slack scopes"]
        assert code == 1 and row["status"] == "fail"
        assert (
            "missing reactions:read (for escalation slack:group:S0EXP, escalation slack:channel:C0ENGHELP)"
            in (row["detail"])
        )
        assert "missing channels:read (for escalation slack:channel:C0ENGHELP)" in row["detail"]
        assert "conversations.members" in row["detail"] and "missing usergroups:read" not in row["detail"]

        slack.scopes = "chat:write,commands,usergroups:read,reactions:read,channels:read,groups:read"
        code, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, escalation=escalation
        )
        assert by_name(report)["slack scopes"]["status"] == "pass"


async def test_the_gaps_digest_needs_channels_read_to_tell_public_channels(tmp_path: Path) -> None:
    slack_only = {"bot_token": BOT_TOKEN, "mode": "http", "signing_secret": "s"}
    gaps = {"digest_every": "7d", "digest_channel": "slack:C0DOCS"}
    async with SlackEmulator() as slack:
        slack.scopes = "chat:write,commands"
        code, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, gaps=gaps
        )
        row = by_name(report)["slack scopes"]
        assert code == 1 and row["status"] == "fail"
        assert "missing channels:read (for gaps.digest_channel (which channels are public))" in row["detail"]
        assert "quotes no Slack question" in row["detail"]
        slack.scopes = "chat:write,commands,channels:read"
        code, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, gaps=gaps
        )
        assert by_name(report)["slack scopes"]["status"] == "pass"
