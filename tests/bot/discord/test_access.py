"""Permissions on Discord (issue 19): Lore's real discord.py bot against the emulator, roles
from the gateway's and the interactions' `member`, with `AccessEngine` recording the audience
the core asked for (the core's and the adapter's decisions are under test here)."""

from __future__ import annotations

import logging

from bot.core.access import SHARE_REFUSED
from tests.bot.discord.conftest import (
    ADMIN_ROLE,
    ALICE,
    BOB,
    CALLBACK,
    DM_CHANNEL,
    SUPPORT,
    answer_id_of,
    custom_ids,
    visible_text,
)
from tests.bot.fakes import AccessEngine, Doc
from tests.conftest import wait_for

OTHER_DM = "1400000000000000099"
MARKER = "CANARY-DISCORD-58"  # only in the restricted document
DOCS = [
    Doc("handbook", "it/vpn.md", "Install WireGuard for the VPN from Self Service."),
    Doc(
        "handbook", "hr/salary-bands.md", f"Salary bands for engineers are set by HR. {MARKER}", ("group:hr",)
    ),
    Doc("eng", "deploys.md", "Production deploys need the release pipeline."),
]
SALARY = "what are the salary bands?"
VPN = "which VPN client to install?"


async def connect(connect_discord, engine, **discord):
    # BOB holds the role that makes him HR; ALICE holds nothing.
    return await connect_discord(
        engine=lambda _kn: engine, discord=discord, groups={"hr": [f"discord:role:{ADMIN_ROLE}"]}
    )


def private_ids(message) -> list[str]:
    return [c for c in custom_ids(message) if c.startswith("private:")]


async def test_a_channel_answer_uses_the_channels_audience_and_the_members_roles_only_as_wider(
    connect_discord,
):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_discord, engine)
    asked = await lore.mention(SALARY, user=BOB)
    answer = await lore.wait_answer(asked["id"])
    assert MARKER not in visible_text(answer)
    call = engine.calls[0]
    assert call.audience.grants == {"public", f"channel:discord:{SUPPORT}"}
    assert call.wider.grants == {"public", f"discord:{BOB['id']}", f"discord:role:{ADMIN_ROLE}", "group:hr"}
    assert private_ids(answer) == [f"private:{answer_id_of(answer)}"]


async def test_ask_in_a_guild_is_private_with_the_members_roles_and_a_dm_gets_them_from_the_directory(
    connect_discord, caplog
):
    caplog.set_level(logging.DEBUG)  # even at DEBUG, no answer text in the log (discord.py logs bodies)
    engine = AccessEngine(DOCS)
    lore = await connect(connect_discord, engine)
    cmd = await lore.command("ask", {"question": SALARY}, user=BOB)
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+")
    private = lore.original(cmd["token"])
    assert lore.is_ephemeral(private) and MARKER in visible_text(private)
    assert "group:hr" in engine.calls[0].audience.grants and engine.calls[0].wider is None

    # A DM's payload has no roles: the directory looks BOB up in the server (and caches it).
    await lore.dm(SALARY, user=BOB)
    dm = await lore.wait_answer(DM_CHANNEL)
    assert engine.calls[1].audience.grants == {
        "public",
        f"discord:{BOB['id']}",
        f"discord:role:{ADMIN_ROLE}",
        "group:hr",
    }
    assert MARKER in visible_text(dm)
    await lore.dm(VPN, user=BOB)
    await lore.wait_answer(DM_CHANNEL, count=2)
    lookups = lore.emu.calls_to("GET", rf"/guilds/\d+/members/{BOB['id']}")
    assert len(lookups) == 1

    await lore.dm(SALARY, user=ALICE, channel=OTHER_DM)
    theirs = await lore.wait_answer(OTHER_DM)
    assert engine.calls[-1].audience.grants == {"public", f"discord:{ALICE['id']}"}
    assert MARKER not in visible_text(theirs)
    assert caplog.records and not [r.name for r in caplog.records if MARKER in r.getMessage()]


async def test_when_the_member_lookup_fails_a_dm_gets_the_payloads_principals_only(connect_discord):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_discord, engine)
    lore.emu.fail_next("GET", r"/guilds/\d+/members/\d+", 403, code=50001)
    await lore.dm(SALARY, user=BOB)
    dm = await lore.wait_answer(DM_CHANNEL)
    assert engine.calls[0].audience.grants == {"public", f"discord:{BOB['id']}"}
    assert MARKER not in visible_text(dm)


async def test_answer_privately_appears_only_when_something_was_left_out_and_answers_the_clicker(
    connect_discord, caplog
):
    caplog.set_level(logging.DEBUG)  # even at DEBUG, no answer text in the log (discord.py logs bodies)
    engine = AccessEngine(DOCS)
    lore = await connect(connect_discord, engine)
    plain = await lore.mention(VPN, user=BOB)
    assert private_ids(await lore.wait_answer(plain["id"])) == []

    asked = await lore.mention(SALARY, user=ALICE)  # asked by someone outside HR: nothing withheld
    assert private_ids(await lore.wait_answer(asked["id"])) == []

    asked = await lore.mention(SALARY, user=BOB)
    answer = await lore.wait_answer(asked["id"])
    [button] = private_ids(answer)

    # BOB clicks: an ephemeral reply to the click, with his rights.
    click = await lore.click(button, answer, user=BOB)
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{click['token']}/messages/\d+")
    mine = lore.original(click["token"])
    assert lore.is_ephemeral(mine) and MARKER in visible_text(mine) and private_ids(mine) == []
    assert "group:hr" in engine.calls[-1].audience.grants and engine.calls[-1].question == SALARY

    # ALICE clicks the same button: her own rights, no salary bands.
    click = await lore.click(button, answer, user=ALICE)
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{click['token']}/messages/\d+")
    hers = lore.original(click["token"])
    assert lore.is_ephemeral(hers) and MARKER not in visible_text(hers)
    assert engine.calls[-1].audience.grants == {"public", f"discord:{ALICE['id']}"}
    # Nothing restricted was ever posted where everyone reads.
    for channel in (SUPPORT, asked["id"]):
        assert all(MARKER not in visible_text(m) for m in lore.messages(channel))
    assert caplog.records and not [r.name for r in caplog.records if MARKER in r.getMessage()]


async def test_share_is_refused_for_restricted_content_and_the_user_told_privately(connect_discord):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_discord, engine)
    cmd = await lore.command("ask", {"question": SALARY}, user=BOB)
    await lore.emu.wait_for("PATCH", rf"/webhooks/\d+/{cmd['token']}/messages/\d+")
    private = lore.original(cmd["token"])
    share = await lore.click(f"share:{answer_id_of(private)}", private, user=BOB)
    await wait_for(lambda: [c for c in lore.emu.calls_to("POST", CALLBACK)], what="the share ack")
    [told] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{share['token']}")
    assert told.json["content"] == SHARE_REFUSED and told.json["flags"] & 64  # ephemeral
    await lore.settle()
    assert lore.messages(SUPPORT) == []  # nothing posted in the channel
    assert len(custom_ids(private)) == 3  # the private copy keeps its Share button


async def test_channel_sources_scope_a_discord_channel(connect_discord):
    engine = AccessEngine(DOCS)
    lore = await connect(connect_discord, engine, channel_sources=[{"channel": SUPPORT, "sources": ["eng"]}])
    asked = await lore.mention("how do production deploys work?")
    await lore.wait_answer(asked["id"])
    await lore.dm("how do production deploys work?")
    await lore.wait_answer(DM_CHANNEL)
    assert [c.sources for c in engine.calls] == [["eng"], None]
