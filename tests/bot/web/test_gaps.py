"""The console's Gaps, Top questions and Overview pages over real services: 300 seeded questions,
clustered by the real in-process task client with the real MiniLM, nearest documents searched in
the real embedded index."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

from feedback.gaps import latest_report
from tests.bot.web.conftest import REVIEWER, REVIEWER_PW
from tests.conftest import wait_for
from tests.feedback.gapdata import PLANTED, seed, topic_of


def labels(page: str) -> list[str]:
    return [html.unescape(x) for x in re.findall(r'<h2 class="label">(.*?)</h2>', page)]


async def clustered(lore, client) -> None:
    response = await client.form("/gaps/run", {})
    assert response.status_code == 303 and response.headers["location"] == "/gaps?requested=1"
    await wait_for(lambda: latest_report(lore.db.sessions, "top"), timeout=180, what="a clustering run")


async def test_the_gaps_page_shows_the_planted_topics_first_with_their_nearest_documents(lore):
    seed(lore.db.sessions)
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    empty = await client.page("/gaps")
    assert empty.status_code == 200 and "No clustering has run yet" in empty.text
    assert 'id="last-run" class="small">Last clustered: never' in empty.text

    await clustered(lore, client)
    page = await client.page("/gaps")
    assert page.status_code == 200
    found = labels(page.text)
    assert sorted(topic_of(label) for label in found[:6]) == sorted(PLANTED)
    assert "Last clustered: <time" in page.text and "questions," in page.text
    # Each cluster lists the documents nearest it in the index, with a similarity score.
    assert page.text.count('<ol class="documents">') >= 6
    assert re.search(
        r'href="https://wiki\.example/hb/[^"]+\.md">[^<]+</a> <span class="muted small">handbook', page.text
    )
    assert re.search(r'similarity <span class="score">0\.\d\d</span>', page.text)
    assert page.headers["cache-control"] == "no-store"

    # Filters: a channel group keeps only its questions; an unknown source leaves nothing.
    discord = await client.page("/gaps?channel=discord")
    assert "slack " not in " ".join(re.findall(r'<p class="facts small">(.*?)</p>', discord.text, re.S))
    assert sum(map(int, re.findall(r'<strong class="count">(\d+)</strong>', discord.text))) < sum(
        map(int, re.findall(r'<strong class="count">(\d+)</strong>', page.text))
    )
    nothing = await client.page("/gaps?source=nope")
    assert "No cluster matches these filters." in nothing.text

    # Top questions: the answerable ones too, with how Lore did.
    top = await client.page("/gaps/top")
    assert any(topic_of(label) is None for label in labels(top.text)[:10])
    assert "👍" in top.text


async def test_the_overview_carries_its_numbers_as_data_for_the_charts(lore):
    from feedback.experts import record_escalation
    from feedback.schema import EscalationRecord

    seeded = seed(lore.db.sessions)
    for answer_id in seeded["answerable"][:3]:  # three questions asked of experts today
        record_escalation(
            lore.db.sessions,
            EscalationRecord(
                answer_id=answer_id,
                platform="slack",
                user_hash="asker",
                target="slack:group:S0EXP",
                routed_by="default",
                answer_shown=True,
            ),
        )
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=59)).isoformat()
    page = await client.page(f"/overview?from={start}&to={today.isoformat()}")
    assert page.status_code == 200
    block = re.search(r'<script type="application/json" id="overview-data">(.*?)</script>', page.text, re.S)
    data = json.loads(html.unescape(block.group(1)))
    assert data["totals"]["questions"] == 300 and len(data["days"]) == 60
    assert set(data["questions"]) == {"slack", "discord"}
    assert sum(sum(v) for v in data["questions"].values()) == 300
    assert 0 < data["totals"]["abstention"] < 100 and 0 < data["totals"]["up_share"] < 100
    assert data["totals"]["p50_ms"] <= data["totals"]["p95_ms"]
    assert data["totals"]["escalations"] == 3 and data["escalations"][-1] == 3
    assert data["totals"]["expert_answers"] == 0
    for canvas in (
        "chart-questions",
        "chart-up-share",
        "chart-abstention",
        "chart-latency",
        "chart-escalations",
    ):
        assert f'<canvas id="{canvas}" role="img" aria-label=' in page.text
    assert '<script src="/static/vendor/chartjs/chart.umd.min.js" defer></script>' in page.text
    vendored = await client.http.get("/static/vendor/chartjs/chart.umd.min.js")
    assert vendored.status_code == 200 and b"Chart.js v4" in vendored.content[:200]


async def test_gap_pages_are_for_reviewers_and_running_needs_the_csrf_token(lore):
    anonymous = lore.client()
    for path in ("/gaps", "/gaps/top", "/overview"):
        response = await anonymous.http.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    client = await lore.signed_in(REVIEWER, REVIEWER_PW)
    forged = await client.form("/gaps/run", {}, csrf=False)
    assert forged.status_code == 403
    assert latest_report(lore.db.sessions, "gaps") is None
