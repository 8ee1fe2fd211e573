"""Issue 19's canary in the web console's chat: the canary corpus (tests/canary/corpus.py) in the
real Knowledge behind the real console. Half the 100 questions (Discord's test asks the other
half) are dealt over everyone without rights: people not signed in, a signed-in reviewer outside
`secret` (follow-ups in one conversation), and an admin viewing as that reviewer. No marker in
any reply (text, sources, view note), log line (Lore at DEBUG) or /metrics; rita, in `secret`,
gets each marker with its restricted document.
"""

from __future__ import annotations

import json
import logging

import pytest

from tests.bot.web.conftest import ADMIN, ADMIN_PW, REVIEWER, REVIEWER2, REVIEWER2_PW, REVIEWER_PW
from tests.canary.checks import log_leaks, lore_logging_at_debug
from tests.canary.corpus import canary_source, spread


@pytest.fixture
def canary_lore(make_lore, canary, canary_template):
    lore = make_lore(
        template=canary_template,
        extra_sources=[canary_source(canary.root)],
        groups={"secret": [f"web:{REVIEWER2}"]},
        web={"address_per_minute": 1000},
    )
    lore.add_user(ADMIN, ADMIN_PW, "admin")
    lore.add_user(REVIEWER, REVIEWER_PW, "reviewer")
    lore.add_user(REVIEWER2, REVIEWER2_PW, "reviewer")
    return lore


async def test_the_canary_never_leaks_through_the_web_chat(canary_lore, canary, caplog):
    lore = canary_lore
    # Half the questions (Discord's test asks the other half; Slack's, all of them).
    anonymous, as_rex, own = spread(canary.questions()[1::2], 3)
    replies = []
    with lore_logging_at_debug(lore.settings, caplog) as log:
        stranger = lore.client()
        replies += [await stranger.ask(q) for q, _ in anonymous]

        rex = await lore.signed_in(REVIEWER, REVIEWER_PW)
        conversation = None
        for q, _ in own:  # follow-ups: one conversation, its turns as context
            reply = await rex.ask(q, conversation)
            conversation = reply.get("conversation") or conversation
            replies.append(reply)

        admin = await lore.signed_in(ADMIN, ADMIN_PW)
        await admin.page("/chat")
        for q, _ in as_rex:
            response = await admin.json("/api/ask", {"question": q, "view_as": f"web:{REVIEWER}"})
            assert response.status_code == 200, response.text
            replies.append(response.json())

        rita = await lore.signed_in(REVIEWER2, REVIEWER2_PW)
        for _, c in canary.questions()[50::5]:  # the last ten subjects (Discord's, the others)
            mine = await rita.ask(f"what is the {c.subject}?")
            assert c.marker in mine["text"], c.subject
            assert c.restricted_path in json.dumps(mine["sources"]), c.subject
        metrics = (await stranger.http.get("/metrics")).text
        assert logging.getLogger("bot.web").isEnabledFor(logging.DEBUG)  # the logs checked below are DEBUG's
    leaked = [r for r in replies if canary.exposed(json.dumps(r))]
    assert leaked == [], leaked[0]
    # The admin's view as rex says what rex doesn't see (without showing it).
    assert any(r["view"]["withheld"] >= 1 for r in replies[-len(as_rex) :])
    assert canary.leaks(metrics) == [] and "lore_" in metrics
    assert log_leaks(canary, caplog, log.getvalue()) == []
