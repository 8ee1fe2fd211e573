"""Expert answers in the review queue through the real console: their own filter, the item's
expert section, approval as the curated answer (CSRF and the version check as for every write),
and what a stale approval does."""

from __future__ import annotations

import html
import re

from feedback.experts import record_escalation, record_expert_reply
from feedback.reviews import get_state
from feedback.store import record_interaction, record_vote
from tests.bot.web.conftest import REVIEWER, REVIEWER_PW
from tests.bot.web.test_review import logged, version_of, vote
from tests.feedback.test_experts import escalated, reply

EXPERT_TEXT = "Use the <b>EU</b> gateway, then restart the client."


def expert_reply(answer_id: str, message: str, *, accepted: bool = False, text: str = EXPERT_TEXT):
    return reply(answer_id=answer_id, message_id=message, accepted=accepted, text=text)


async def test_the_expert_filter_the_item_and_approval(lore):
    s = lore.db.sessions
    record_interaction(s, logged("q-exp", "Why is the VPN slow?"))
    record_escalation(s, escalated("q-exp").model_copy(update={"answer_shown": False}))
    record_expert_reply(s, expert_reply("q-exp", "2.0"))
    record_interaction(s, logged("q-acc", "How many leave days?"))
    record_expert_reply(s, expert_reply("q-acc", "3.0", accepted=True, text="25 days."))
    record_interaction(s, logged("q-voted", "Who approves deploys?"))
    record_vote(s, vote("q-voted", "down"))
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)

    async def shown(query: str) -> set[str]:
        page = await client.http.get(f"/review?{query}")
        assert page.status_code == 200
        return set(re.findall(r'data-href="/review/([\w-]+)', page.text))

    assert await shown("") == {"q-voted"}
    assert await shown("expert=any") == {"q-exp", "q-acc"}
    assert await shown("expert=accepted") == {"q-acc"}
    queue = await client.page("/review?expert=any")
    assert 'option value="any" selected' in queue.text and "expert answer</span>" in queue.text

    page = await client.page("/review/q-exp?expert=any")
    assert "Expert answers" in page.text and "slack:group:S0EXP" in page.text and "withheld" in page.text
    assert html.escape(EXPERT_TEXT) in page.text and EXPERT_TEXT not in page.text  # escaped, never raw HTML
    version = version_of(page.text)
    refused = await client.form(
        "/review/q-exp/expert", {"reply_id": "slack:C1:2.0", "version": version}, csrf=False
    )
    assert refused.status_code == 403  # CSRF, as for every console write
    done = await client.form(
        "/review/q-exp/expert?expert=any", {"reply_id": "slack:C1:2.0", "version": version}
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/review/q-exp?")
    state = get_state(s, "q-exp")
    assert (state.status, state.ideal_answer, state.reviewer) == ("edited", EXPERT_TEXT, REVIEWER)
    page = await client.page("/review/q-exp")
    assert f"curated by {REVIEWER}" in page.text

    stale = await client.form("/review/q-exp/expert", {"reply_id": "slack:C1:2.0", "version": version})
    assert stale.status_code == 409  # someone (here: the same reviewer) saved since that page
    unknown = await client.form(
        "/review/q-exp/expert", {"reply_id": "slack:C1:9.9", "version": get_state(s, "q-exp").version}
    )
    assert unknown.status_code == 400
