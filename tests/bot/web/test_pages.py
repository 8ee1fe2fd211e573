"""What people see in the console's pages, in Debian's headless Chromium (Playwright) against
`lore serve` on a real socket: hidden things stay hidden until asked for, an answer's Markdown
cannot turn into a script link or stray markup, and the review queue fits a 1280 px screen."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.bot.web.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import wait_for

pytestmark = pytest.mark.browser

HOSTILE = (
    "See [the guide](https://wiki.example/page[1]) for details [1]. "
    "Or click [x](javascript:alert(document.cookie)) and <img src=x onerror=alert(1)>."
)


class Rewritten:
    """The real answer engine, its text replaced by what a steered model or document could say,
    and optionally slow (to see the page while it waits)."""

    def __init__(self, knowledge, text: str | None = None, delay: float = 0.0) -> None:
        self.knowledge, self.text, self.delay = knowledge, text, delay

    def answer(self, question, history=(), **options):  # options: the core's audience, wider, sources
        time.sleep(self.delay)
        answer = self.knowledge.answer(question, history, **options)
        return answer.model_copy(update={"text": self.text}) if self.text else answer


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_page(browser, errors: list[str], **options):
    page = await browser.new_page(**options)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
    return page


async def test_the_vote_row_waits_for_the_answer_and_the_feedback_form_for_thumbs_down(lore_server, browser):
    from playwright.async_api import expect

    base, _settings, _services = await lore_server(engine=lambda kn: Rewritten(kn, delay=1.5))
    errors: list[str] = []
    page = await new_page(browser, errors)
    await page.goto(f"{base}/chat")
    await page.fill("#question", "What is the per diem in New York?")
    await page.keyboard.press("Enter")
    card = page.locator("article.answer").first
    await expect(card).to_have_class("answer pending")
    await expect(card.locator(".vote")).to_be_hidden()  # nothing to vote on yet
    await expect(card.locator("form.feedback")).to_be_hidden()
    await expect(card).to_have_attribute("data-answer-id", re.compile(r"^[0-9a-f]{32}$"), timeout=30_000)
    await expect(card.locator(".vote")).to_be_visible()
    feedback = card.locator("form.feedback")
    await expect(feedback).to_be_hidden()  # console.css's display:flex must not override `hidden`
    await card.locator("button.down").click()
    await expect(feedback).to_be_visible()
    await card.locator("button.up").click()
    await expect(feedback).to_be_hidden()
    assert errors == []


async def test_answer_markdown_shows_no_script_link_and_no_stray_markup(lore_server, browser):
    from playwright.async_api import expect

    base, _settings, _services = await lore_server(engine=lambda kn: Rewritten(kn, text=HOSTILE))
    errors: list[str] = []
    page = await new_page(browser, errors)
    await page.goto(f"{base}/chat")
    await page.fill("#question", "What is the per diem in New York?")
    await page.keyboard.press("Enter")
    body = page.locator("article.answer[data-answer-id] .body")
    await expect(body).to_contain_text("See the guide for details", timeout=30_000)
    hrefs = await body.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs[0] == "https://wiki.example/page%5B1%5D" and hrefs[1].endswith("-1")
    assert not [h for h in hrefs if not h.startswith(("https://", "#src-"))]
    assert await page.locator('a[href^="javascript:" i]').count() == 0
    shown = await body.inner_text()
    assert "rel=" not in shown and 'class="cite"' not in shown and "noopener" not in shown
    assert "[x](javascript:alert(document.cookie))" in shown  # the attempt is visible as text
    assert await body.locator("img").count() == 0
    assert errors == []  # no script ran, no dialog opened


async def test_the_review_queue_fits_1280_px_with_a_long_unbroken_question(lore_server, browser):
    from sqlalchemy import func, select

    from feedback.db import Database
    from feedback.models import Interaction
    from feedback.users import add_user

    base, settings, _services = await lore_server()
    db = Database.from_settings(settings)
    db.ensure_schema()
    add_user(db.sessions, "ada", "lovelace-1843", "admin")
    long_question = "what-is-" + "x" * 300 + "?"  # one unbroken string, like a pasted URL or token
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/chat")
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        asked = await http.post("/api/ask", json={"question": long_question}, headers={"X-CSRF-Token": token})
        assert asked.status_code == 200, asked.text

    def stored() -> int:
        with db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Interaction)) or 0)

    await wait_for(stored, what="the interaction stored")
    db.dispose()

    errors: list[str] = []
    page = await new_page(browser, errors, viewport={"width": 1280, "height": 800})
    await page.goto(f"{base}/login?next=/review%3Fvote%3Dall")
    await page.fill("input[name=username]", "ada")
    await page.fill("input[name=password]", "lovelace-1843")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/review?vote=all")
    rows = page.locator("#queue tbody tr")
    assert await rows.count() == 1 and long_question in await rows.first.inner_text()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the page is {width - 1280} px too wide"
    assert errors == []
