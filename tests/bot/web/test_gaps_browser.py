"""The Gaps page and the Overview charts in a real browser (Debian's headless Chromium through
Playwright) against `lore serve`'s own coroutine: a reviewer asks for a clustering from the page,
reads the six planted topics at the top, opens one with the keyboard, and sees the Overview's
five charts drawn by the vendored Chart.js under the console's Content-Security-Policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.bot.web.test_browser import CHROMIUM, CHROMIUM_ARGS, _sign_in
from tests.conftest import wait_for
from tests.feedback.gapdata import PLANTED, seed, topic_of


@pytest.mark.browser
async def test_a_reviewer_reads_the_gaps_and_the_overview_charts_in_a_real_browser(lore_server):
    from playwright.async_api import async_playwright, expect

    from feedback.db import Database
    from feedback.gaps import latest_report
    from feedback.users import add_user

    base, settings, _services = await lore_server()
    db = Database.from_settings(settings)
    db.ensure_schema()
    add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    seed(db.sessions)
    errors: list[str] = []
    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console", lambda msg: console.append(msg.text) if msg.type in ("error", "warning") else None
            )
            await _sign_in(page, base, "rex", "staple paper clips")

            # The nav leads to the Gaps page; nothing is clustered yet, so cluster from the page.
            await page.click("header nav a[href='/gaps']")
            await expect(page.locator("#last-run")).to_contain_text("never")
            await page.click("#run-gaps")
            await expect(page.locator("#flash")).to_contain_text("Clustering requested")
            await wait_for(lambda: latest_report(db.sessions, "top"), timeout=180, what="a clustering run")
            await page.goto(f"{base}/gaps")
            await expect(page.locator("#last-run time")).to_have_count(1)
            labels = await page.locator("li.cluster h2.label").all_inner_texts()
            assert sorted(topic_of(label) for label in labels[:6]) == sorted(PLANTED)
            first = page.locator("li.cluster").first
            trend = await first.locator("svg[role=img]").get_attribute("aria-label")
            assert trend.startswith("Questions per week, oldest first: ")
            count = int(await first.locator("strong.count").inner_text())
            assert sum(int(n) for n in trend.split(": ", 1)[1].split(", ")) == count  # all within 8 weeks

            # Keyboard: Tab from the filters' reset link reaches the first cluster's details; Enter opens it.
            await page.locator("#filters a").focus()
            await page.keyboard.press("Tab")
            await expect(first.locator("summary")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(first.locator("ul.examples li").first).to_be_visible()
            await expect(first.locator("ol.documents li").first).to_contain_text("similarity")

            # A filter by channel group, from the menu.
            await page.select_option("select[name=channel]", "discord")
            await page.click("#filters button[type=submit]")
            await expect(page).to_have_url(f"{base}/gaps?source=&channel=discord&from=&to=")
            facts = " ".join(await page.locator("li.cluster p.facts").all_inner_texts())
            assert "discord" in facts and "slack" not in facts

            # The Overview: five charts drawn with the numbers of the chosen range.
            today = datetime.now(UTC).date()
            await page.click("nav.tabs a[href='/overview']")
            await page.fill("input[name=from]", (today - timedelta(days=59)).isoformat())
            await page.fill("input[name=to]", today.isoformat())
            await page.click("#range button[type=submit]")
            await expect(page.locator("canvas[data-drawn=true]")).to_have_count(5)
            drawn = await page.evaluate(
                """() => Object.fromEntries(Object.entries(window.loreCharts).map(([id, c]) => [id,
                     c.data.datasets.map(d => d.data.reduce((a, b) => a + (b || 0), 0))]))"""
            )
            assert sum(drawn["chart-questions"]) == 300
            assert all(total > 0 for total in drawn["chart-latency"])
            box = await page.locator("#chart-questions").bounding_box()
            assert box and box["width"] > 200 and box["height"] > 150
            await expect(page.locator("#summary")).to_contain_text("300 questions")
        finally:
            await browser.close()
            db.dispose()
    assert errors == []
    assert not [m for m in console if "Content Security Policy" in m], console
