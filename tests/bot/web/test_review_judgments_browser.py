"""Relevance judgments in a real browser (Debian's headless Chromium through Playwright) against
`lore serve`'s own coroutine: a reviewer judges the retrieved chunks with the keyboard alone,
searches the real index for the passage that should have been found, and attaches it."""

from __future__ import annotations

import re

import pytest

from feedback.schema import InteractionRecord
from knowledge.answer import Answer, Citation, RetrievedChunk
from tests.bot.web.test_browser import CHROMIUM, CHROMIUM_ARGS, _sign_in
from tests.conftest import wait_for


def wrong_answer() -> InteractionRecord:
    """A per diem question answered from the VPN and leave pages."""

    def chunk(chunk_id: str, path: str, title: str, text: str, n: int | None) -> RetrievedChunk:
        return RetrievedChunk(
            chunk_id=chunk_id, doc_id=f"handbook:{path}", source="handbook", path=path, title=title,
            url=f"https://wiki.example/hb/{path}", text=text, score=0.4, doc_hash="h1", n=n,
        )  # fmt: skip

    vpn = chunk("c-vpn", "it/vpn.md", "VPN", "Install WireGuard from Self Service.", 1)
    leave = chunk("c-leave", "hr/leave.md", "Leave", "Everyone gets 25 days of paid leave a year.", None)
    answer = Answer(
        answer_id="q-pd", question="How much is the per diem in New York?", text="Install WireGuard [1].",
        abstained=False, model="extractive", prompt_version="v1", chunks=[vpn, leave],
        citations=[Citation(n=1, title="VPN", url=vpn.url, source="handbook", path=vpn.path,
                            doc_id=vpn.doc_id, score=0.4)],
    )  # fmt: skip
    return InteractionRecord(answer=answer, correlation_id="c", platform="slack", user_hash="u_x")


@pytest.mark.browser
async def test_a_reviewer_judges_chunks_with_the_keyboard_and_attaches_a_searched_passage(lore_server):
    from playwright.async_api import async_playwright, expect

    from feedback.db import Database
    from feedback.judgments import judgments_for
    from feedback.store import record_interaction
    from feedback.users import add_user

    base, settings, _services = await lore_server()
    db = Database.from_settings(settings)
    db.ensure_schema()
    add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    record_interaction(db.sessions, wrong_answer())

    def verdicts() -> dict[str, tuple[bool, str]]:
        return {j.passage.chunk_id: (j.relevant, j.origin) for j in judgments_for(db.sessions, "q-pd")}

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await _sign_in(page, base, "rex", "staple paper clips")
            await page.goto(f"{base}/review/q-pd")
            await expect(page.locator("p.crumbs")).to_contain_text("x not relevant")
            vpn, leave = (
                page.locator('.chunk[data-chunk-id="c-vpn"]'),
                page.locator('.chunk[data-chunk-id="c-leave"]'),
            )

            # 1 picks the first chunk, x: not relevant; 2 and x, x again undoes, then y: relevant.
            await page.keyboard.press("1")
            await expect(vpn).to_have_class("chunk selected")
            await page.keyboard.press("x")
            await expect(vpn).to_have_attribute("data-verdict", "not_relevant")
            await expect(vpn.locator("button.not-relevant")).to_have_attribute("aria-pressed", "true")
            await page.keyboard.press("]")
            await expect(leave).to_have_class("chunk selected")
            await page.keyboard.press("x")
            await expect(leave).to_have_attribute("data-verdict", "not_relevant")
            await page.keyboard.press("x")
            await expect(leave).to_have_attribute("data-verdict", "")
            await wait_for(lambda: verdicts() == {"c-vpn": (False, "retrieved")}, what="the undo stored")
            await page.keyboard.press("y")
            await expect(leave).to_have_attribute("data-verdict", "relevant")
            await wait_for(
                lambda: verdicts() == {"c-vpn": (False, "retrieved"), "c-leave": (True, "retrieved")},
                what="both verdicts stored",
            )

            # / goes to the search; Enter searches; the first result's button has the focus.
            await page.keyboard.press("/")
            await expect(page.locator("#find")).to_be_focused()
            await page.keyboard.type("per diem New York")
            await page.keyboard.press("Enter")
            await expect(page).to_have_url(re.compile(r"/review/q-pd\?vote=any&find=per\+diem\+New\+York$"))
            result = page.locator("#search-results li.result").first
            await expect(result).to_contain_text("95 USD a day")
            await expect(result.locator("button.attach-button")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(result.locator("button.attach-button")).to_have_text("Attached ✓")
            await expect(page.locator("#attached li")).to_contain_text("expenses/per-diem.md")

            # What was judged survives a reload.
            await page.goto(f"{base}/review/q-pd")
            await expect(vpn).to_have_attribute("data-verdict", "not_relevant")
            await expect(leave).to_have_attribute("data-verdict", "relevant")
            await expect(page.locator("#attached li")).to_have_count(1)
        finally:
            await browser.close()
    assert errors == []
    found = verdicts()
    [attached] = [chunk_id for chunk_id, (_r, origin) in found.items() if origin == "attached"]
    assert found[attached] == (True, "attached")
    [j] = [j for j in judgments_for(db.sessions, "q-pd") if j.origin == "attached"]
    assert "95 USD" in j.passage.text and j.passage.path == "expenses/per-diem.md"
    db.dispose()
