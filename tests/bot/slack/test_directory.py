"""`SlackDirectory` against the Slack emulator through the real slack_sdk client: user groups,
emails and shared channels, cached for `slack.directory_cache_seconds`, failures not cached."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.directory import SlackDirectory, configured_user_groups, names_emails
from tests.emulators.slack import BOT_TOKEN, SlackEmulator


@pytest.fixture
async def slack():
    async with SlackEmulator(
        users={
            "U1": {"name": "ada", "email": "ada@hr.example.com"},
            "U2": {"name": "bob"},
            "U0HANA": {"name": "hana", "email": "hana@hr.example.com"},  # an id `--as` accepts
            "U0BOB": {"name": "bob2"},
        },
        usergroups={"S0HR": ["U1", "U0HANA"], "S0ENG": ["U1", "U2"]},
        channels={"C0EXT": {"is_shared": True, "is_ext_shared": True}},
    ) as emulator:
        yield emulator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(slack, clock, **kw) -> SlackDirectory:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
    return SlackDirectory(client, ["S0ENG", "S0HR"], ttl=60, clock=clock, **kw)


async def test_user_groups_and_email_are_resolved_and_cached_until_the_ttl(slack):
    clock = Clock()
    d = directory(slack, clock)
    assert await d.principals("U1") == {"slack:group:S0HR", "slack:group:S0ENG", "email:ada@hr.example.com"}
    assert await d.principals("U2") == {"slack:group:S0ENG"}
    assert len(slack.calls_to("usergroups.users.list")) == 2 and len(slack.calls_to("users.info")) == 2
    clock.now += 59
    slack.usergroups["S0HR"].append("U2")  # a change Lore sees only when the cache expires
    assert await d.principals("U2") == {"slack:group:S0ENG"}
    assert len(slack.calls_to("usergroups.users.list")) == 2
    clock.now += 2
    assert await d.principals("U2") == {"slack:group:S0ENG", "slack:group:S0HR"}
    assert len(slack.calls_to("usergroups.users.list")) == 4


async def test_shared_channels_are_cached_and_dms_need_no_lookup(slack):
    d = directory(slack, Clock())
    assert await d.is_external("C0EXT") and not await d.is_external("C1")
    assert await d.is_external("C0EXT") and not await d.is_external("D1")
    assert [c.args["channel"] for c in slack.calls_to("conversations.info")] == ["C0EXT", "C1"]


async def test_failures_raise_and_are_not_cached(slack):
    d = directory(slack, Clock())
    slack.fail_next("usergroups.users.list", status=200, error="missing_scope")
    with pytest.raises(SlackApiError):
        await d.principals("U1")
    assert "slack:group:S0HR" in await d.principals("U1")


async def test_without_email_members_users_info_is_not_called(slack):
    d = directory(slack, Clock(), emails=False)
    assert await d.principals("U1") == {"slack:group:S0HR", "slack:group:S0ENG"}
    assert slack.calls_to("users.info") == []


def test_only_the_user_groups_and_emails_lore_toml_names_are_worth_asking_about():
    groups = {"hr": ["slack:group:S0HR", "slack:U1"], "eng": ["slack:group:S0ENG", "slack:group:S0HR"]}
    assert configured_user_groups(groups) == ["S0ENG", "S0HR"] and not names_emails(groups)
    assert names_emails({"hr": ["email:*@hr.example.com"]})


async def test_lore_ask_as_a_slack_user_looks_them_up_as_the_adapter_would(slack, tmp_path):
    from bot.commands.ask import view_for
    from config.settings import Settings

    settings = Settings(
        data_dir=tmp_path,
        slack={"bot_token": BOT_TOKEN, "api_url": slack.base_url},
        groups={"hr": ["slack:group:S0HR"], "people": ["email:*@hr.example.com"]},
    )
    # asyncio.run inside the command: off this test's event loop, as from a shell
    view = await asyncio.to_thread(view_for, settings, "slack:U0HANA", lookup=True)
    assert view.principal == "slack:U0HANA"
    assert {"group:hr", "group:people", "email:hana@hr.example.com"} <= view.audience.grants
    assert (
        "group:hr"
        not in (await asyncio.to_thread(view_for, settings, "slack:U0BOB", lookup=True)).audience.grants
    )
    # A shared channel is public only, or no answer at all, as in chat.
    shared = await asyncio.to_thread(view_for, settings, "slack:U0HANA", "channel:C0EXT", lookup=True)
    assert shared.audience.grants == {"public"}
    refusing = settings.model_copy(
        update={"slack": settings.slack.model_copy(update={"external_channels": "refuse"})}
    )
    with pytest.raises(ValueError, match="shared with another organisation"):
        await asyncio.to_thread(view_for, refusing, "slack:U0HANA", "channel:C0EXT", lookup=True)
    # Slack down: the principal alone, said on stderr, never more rights.
    slack.fail_next("usergroups.users.list", status=200, error="missing_scope")
    alone = await asyncio.to_thread(view_for, settings, "slack:U0HANA", lookup=True)
    assert alone.audience.grants == {"public", "slack:U0HANA"}
