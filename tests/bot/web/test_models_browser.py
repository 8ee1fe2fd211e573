"""The Models page in a real browser (Debian's headless Chromium through Playwright) against
`lore serve`'s own coroutine: an admin opens it from the nav, reads the runs, clicks Promote on
the candidate that passed the gate, and the page (polling the promotion's status) shows it serving."""

from __future__ import annotations

import pytest

from tests.bot.web.test_browser import CHROMIUM, CHROMIUM_ARGS, _sign_in
from tests.bot.web.test_models import candidate, refused


@pytest.mark.browser
async def test_an_admin_promotes_a_candidate_from_the_models_page_in_a_real_browser(lore_server):
    from playwright.async_api import async_playwright, expect

    from feedback.db import Database
    from feedback.users import add_user
    from knowledge.tuning import registry

    base, settings, services = await lore_server()
    db = Database.from_settings(settings)
    db.ensure_schema()
    add_user(db.sessions, "ada", "correct horse battery", "admin")
    db.dispose()
    bad = refused(settings)
    model = candidate(settings, "full")
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await _sign_in(page, base, "ada", "correct horse battery")
            await page.click("header nav a[href='/admin/models']")
            await expect(page.locator("#serving-model")).to_contain_text("Serving: base")
            await expect(page.locator("tr[data-model]")).to_have_count(2)
            await expect(page.locator(f"tr[data-model='{bad.id}']")).to_contain_text("refused")
            await expect(page.locator(f"tr[data-model='{bad.id}'] button")).to_have_count(0)

            await page.locator(f"tr[data-model='{model.id}'] button", has_text="Promote").click()
            # The page polls the background promotion, then reloads to show the new serving model.
            await expect(page.locator("#serving-model")).to_contain_text(
                f"Serving: {model.id}", timeout=120_000
            )
            await expect(page.locator(f"tr[data-model='{model.id}']")).to_contain_text("serving")
            await expect(page.locator("#rollback-form button")).to_have_text("Roll back to base")
            assert registry.serving_id(settings) == model.id
            assert services.knowledge.view.model == model.id
        finally:
            await browser.close()
    assert not errors, errors
