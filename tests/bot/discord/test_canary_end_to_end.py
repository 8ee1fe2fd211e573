"""Issue 19's canary on Discord, end to end: the canary corpus (tests/canary/corpus.py: 20 restricted
documents with unique markers, their public twins, 100 questions aimed at the markers) in the real
Knowledge (labelled index, the filter inside the search), behind Lore's real discord.py bot and
the emulator. Half the 100 questions (the web chat's test asks the other half; with an owning
worker, Slack's) are dealt over every path an unauthorised person has: mentions (answered in a
thread), follow-ups in those threads, DMs, `/ask`, Share, "Answer privately" clicked by an
outsider, and after a restart. No marker may reach any request Lore made to Discord but those for
the member of `secret` (BOB, by his role), nor a log line (Lore at DEBUG) or a metric.

The test runs in both index modes (`index_owner`): embedded, and worker-owner, where a real `lore
worker` process at DEBUG owns the index and the bot asks it through `RemoteKnowledge`; there the
owner's log and /metrics are checked too, and the restart restarts the owner as well.
"""

from __future__ import annotations

import json
import logging

from bot.core.access import SHARE_REFUSED
from tests.bot.discord.conftest import ADMIN_ROLE, ALICE, BOB, DM_CHANNEL, SUPPORT, answer_id_of
from tests.bot.discord.conftest import visible_text as shown
from tests.canary import on_discord
from tests.canary.checks import log_leaks, lore_logging_at_debug, metrics_text
from tests.canary.corpus import CanaryCorpus, canary_source, spread
from tests.canary.on_discord import dms, interaction_reply, mentions, private_ids, thread
from tests.canary.owner import IndexOwner, restarted
from tests.conftest import wait_for

BOB_DM = "1400000000000000098"
ALICE_DM = DM_CHANNEL


def canary_settings(canary: CanaryCorpus, template, owner: IndexOwner | None) -> dict:
    return {
        "template": template,
        "extra_sources": [canary_source(canary.root)],
        "groups": {"secret": [f"discord:role:{ADMIN_ROLE}"]},  # BOB holds the role; ALICE nothing
        **(owner.chat if owner else {}),
    }


def seen_by_others(lore, bobs_tokens: set[str]) -> list[str]:
    """Every request Lore made to Discord, but those in BOB's DM and those answering BOB's own
    interactions (his ephemeral replies)."""
    return on_discord.seen_by_others(lore.emu, BOB_DM, bobs_tokens)


def assert_not_seen(canary: CanaryCorpus, lore, bobs_tokens: set[str]) -> None:
    leaked = [line for line in seen_by_others(lore, bobs_tokens) if canary.exposed(line)]
    assert leaked == [], f"{len(leaked)} leaking requests, e.g. {leaked[0][:400]}"


async def test_the_canary_never_leaks_through_discord(
    connect_discord, canary, canary_template, caplog, index_owner
):
    # Half the questions (the web chat's test asks the other half; Slack's, all of them when
    # embedded, the other half with an owning worker).
    owner = index_owner
    paths = spread(canary.questions()[0::2], 7)
    lore = await connect_discord(**canary_settings(canary, canary_template, owner))
    answered = owner.answered() if owner else 0
    bobs: set[str] = set()
    with lore_logging_at_debug(lore.settings, caplog) as log:
        # 1. Mentions by an outsider: public twins only, in a thread, and no button.
        for answer in await mentions(lore, paths[0], user=ALICE):
            assert private_ids(answer) == []

        # 2. Follow-ups (no mention) in the outsider's thread.
        await thread(lore, paths[1], user=ALICE)

        # 3. The outsider's DMs.
        await dms(lore, paths[2], user=ALICE, channel=ALICE_DM)
        assert_not_seen(canary, lore, bobs)  # here too: a leak so far is clearest said now

        # 4. /ask (ephemeral), and 5. Share of each such answer into #support.
        for q, _ in paths[3]:
            cmd = await lore.command("ask", {"question": q}, user=ALICE)
            assert lore.is_ephemeral(await interaction_reply(lore, cmd["token"]))
        shares = []
        for q, _ in paths[4]:
            cmd = await lore.command("ask", {"question": q}, user=ALICE)
            private = await interaction_reply(lore, cmd["token"])
            shares.append(await lore.click(f"share:{answer_id_of(private)}", private, user=ALICE))
        await wait_for(
            lambda: len([m for m in lore.messages(SUPPORT) if "Shared by" in shown(m)]) == len(shares),
            60,
            "the outsider's answers shared",
        )

        # 6. BOB asks in #support: public content, with "Answer privately" on offer; ALICE clicks.
        for answer in await mentions(lore, paths[5], user=BOB):
            [button] = private_ids(answer)
            click = await lore.click(button, answer, user=ALICE)
            hers = await interaction_reply(lore, click["token"])
            assert lore.is_ephemeral(hers)
        # Nothing restricted matches a VPN question: no button, even for BOB.
        [plain] = await mentions(lore, [("which VPN client do I install?", paths[0][0][1])], user=BOB)
        assert private_ids(plain) == []

        # BOB in a DM (roles from the member lookup): each marker, its restricted document cited.
        firsts = canary.questions()[:50:5]  # the first ten subjects (the web chat's, the others)
        for (_, c), answer in zip(firsts, await dms(lore, firsts, user=BOB, channel=BOB_DM), strict=True):
            assert c.marker in shown(answer) and c.restricted_path in json.dumps(answer), c.subject
        # BOB's private /ask cannot be shared into #support.
        cmd = await lore.command("ask", {"question": paths[5][0][0]}, user=BOB)
        bobs.add(cmd["token"])
        private = await interaction_reply(lore, cmd["token"])
        assert paths[5][0][1].marker in shown(private)
        share = await lore.click(f"share:{answer_id_of(private)}", private, user=BOB)
        bobs.add(share["token"])
        [told] = await lore.emu.wait_for("POST", rf"/webhooks/\d+/{share['token']}")
        assert told.json["content"] == SHARE_REFUSED
        await lore.settle()

        assert_not_seen(canary, lore, bobs)

        # 7. After a restart over the same data directory (the owner's too), the labels hold.
        again = await restarted(
            lore, owner, lambda: connect_discord(**canary_settings(canary, canary_template, owner))
        )
        half = len(paths[6]) // 2
        await mentions(again, paths[6][:half], user=ALICE)
        await dms(again, paths[6][half:], user=ALICE, channel="1400000000000000097")
        await again.say("lunch anyone?")  # not for Lore: a DEBUG line of its own
        await again.settle()
    assert_not_seen(canary, again, bobs)
    assert any(r.levelno == logging.DEBUG and r.name.startswith("bot.") for r in caplog.records)
    assert log_leaks(canary, caplog, log.getvalue()) == []
    assert canary.leaks(metrics_text()) == []
    if owner is not None:  # every answer came from the owner, whose log and metrics hold no marker
        assert await owner.exposed(canary) == []
        assert owner.served(again.services, since=answered) >= sum(map(len, paths)) + len(firsts)
