"""A real browser against a running `lore serve`: Debian's headless Chromium, driven by Playwright.

The server is `bot.serve.serve` (what `lore serve` runs) on a real uvicorn socket, over real
services; the reviewer account comes from the real `lore users add`. The flow: sign in, ask in
the chat, vote 👎 with a correction, find the item in the review queue with the keyboard, edit
the ideal answer and approve it, reindex with live progress, export DPO from the console, and
find the pair in the file.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
IDEAL = "The per diem in New York is 95 USD a day for meals [1]."


@pytest.fixture
async def running_lore(lore_server):
    """`lore serve`'s own coroutine on a free port, with an admin made by `lore users add`."""
    from bot.cli import app as cli

    base, settings, services = await lore_server()
    config = settings.data_dir.parent / "lore.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\n')
    added = CliRunner().invoke(
        cli,
        ["--config", str(config), "users", "add", "ada", "--role", "admin", "--password-stdin"],
        input="lovelace-1843\n",
    )
    assert added.exit_code == 0, added.output
    return base, settings, services


@pytest.mark.browser
async def test_sign_in_ask_vote_review_edit_approve_and_export_dpo_in_a_real_browser(running_lore):
    from playwright.async_api import async_playwright, expect

    from feedback.db import Database
    from feedback.models import Vote

    base, settings, _services = running_lore
    db = Database.from_settings(settings)
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # Sign in.
            await page.goto(f"{base}/review")
            await expect(page).to_have_url(f"{base}/login?next=/review")
            await page.fill("input[name=username]", "ada")
            await page.fill("input[name=password]", "lovelace-1843")
            await page.click("button[type=submit]")
            await expect(page).to_have_url(f"{base}/review")

            # Ask in the chat; the answer has numbered, linked sources, the time taken, and 👍/👎.
            await page.goto(f"{base}/chat")
            await page.fill("#question", "What is the per diem in New York?")
            await page.keyboard.press("Enter")
            card = page.locator("article.answer[data-answer-id]")
            await expect(card).to_have_count(1, timeout=30_000)
            await expect(card.locator(".body")).to_contain_text("95 USD")
            source = card.locator(".sources li a").first
            await expect(source).to_have_text("Per diem")
            assert await source.get_attribute("href") == "https://wiki.example/hb/expenses/per-diem.md"
            await expect(card.locator(".meta")).to_contain_text("Answered in")
            answer_id = await card.get_attribute("data-answer-id")
            original = (await card.locator(".body").inner_text()).strip()

            # 👎 with a reason and a correction.
            await card.locator("button.down").click()
            await card.locator("form.feedback select").select_option("incomplete")
            await card.locator("form.feedback textarea").fill("It is 95 USD a day in New York, for meals.")
            await card.locator("form.feedback button[type=submit]").click()
            await expect(card.locator(".thanks")).to_contain_text("your feedback was recorded")
            await wait_for(lambda: _corrected(db, Vote, answer_id), what="the vote with its correction")

            # Find it in the review queue (keyboard: the first row is selected, Enter opens it).
            await page.goto(f"{base}/review?vote=down&reason=incomplete")
            await expect(page.locator("#queue tbody tr")).to_have_count(1)
            await page.keyboard.press("Enter")
            await expect(page).to_have_url(f"{base}/review/{answer_id}?vote=down&reason=incomplete")
            editor = page.locator("#ideal-answer")
            await expect(editor).to_have_value(
                "It is 95 USD a day in New York, for meals."
            )  # from the correction

            # Edit the ideal answer and approve it (Ctrl+Enter saves the edit).
            await page.keyboard.press("e")
            await editor.fill(IDEAL)
            await editor.press("Control+Enter")
            await expect(page.locator("#flash")).to_have_text("Saved: edited.")
            await expect(page.locator("#review-status")).to_have_text("edited")
            await expect(editor).to_have_value(IDEAL)

            # Sources: reindex through the workers, with live progress in the row.
            await page.goto(f"{base}/admin/sources")
            row = page.locator('tr[data-source="handbook"]')
            await expect(row.locator("td.num").first).to_have_text("4")
            await row.locator("form.reindex button").click()
            await expect(row.locator(".progress-text")).to_contain_text("done: +0 ~0 -0", timeout=60_000)
            await expect(page.locator("#sync-message")).to_contain_text("Reindex finished")

            # Export DPO from the console and wait for it to finish.
            await page.goto(f"{base}/admin/exports")
            await page.select_option("#export-format", "dpo")
            await page.click("#export-button")
            await expect(page.locator("#export-status")).to_contain_text(
                "Exported 1 dpo examples", timeout=30_000
            )
        finally:
            await browser.close()
    assert errors == []

    [export] = [
        p for p in settings.datasets.directory(settings.data_dir).iterdir() if p.name.startswith("dpo-")
    ]
    rows = [
        json.loads(line) for f in sorted(export.glob("*.trl.jsonl")) for line in f.read_text().splitlines()
    ]
    assert len(rows) == 1
    assert rows[0]["chosen"] == [{"role": "assistant", "content": IDEAL}]
    rejected = rows[0]["rejected"][0]["content"]
    assert (
        "95 USD" in rejected and rejected != IDEAL and original.split("\n")[0] in rejected.replace("[1]", "")
    )
    assert "What is the per diem in New York?" in rows[0]["prompt"][1]["content"]
    openai = [
        json.loads(line) for f in sorted(export.glob("*.openai.jsonl")) for line in f.read_text().splitlines()
    ]
    assert openai[0]["preferred_output"][0]["content"] == IDEAL
    assert (export / "dataset_card.md").is_file() and (export / "manifest.json").is_file()
    db.dispose()


def _corrected(db, vote_model, answer_id: str) -> bool:
    from sqlalchemy import select

    with db.sessions() as s:
        vote = s.scalars(select(vote_model).where(vote_model.answer_id == answer_id)).one_or_none()
    return bool(vote and vote.correction)


@pytest.mark.browser
async def test_an_admin_views_the_chat_as_someone_else_and_a_reviewer_has_no_switch(lore_server, tmp_path):
    import asyncio

    from playwright.async_api import async_playwright, expect

    from feedback.db import Database
    from feedback.users import add_user
    from tests.bot.web.test_view_as import MARKER
    from tests.conftest import write

    private = tmp_path / "hr-private"
    write(private, "salaries.md", f"# Salary bands\n\nThe L5 salary band is {MARKER} per year.\n")
    base, settings, services = await lore_server(
        extra_sources=[
            {"name": "hr-private", "type": "directory", "path": str(private), "access": ["group:hr"]}
        ],
        groups={"hr": ["web:hana"]},
    )
    assert (await asyncio.to_thread(services.knowledge.sync, "hr-private")).error is None
    db = Database.from_settings(settings)
    db.ensure_schema()
    add_user(db.sessions, "ada", "lovelace-1843", "admin")
    add_user(db.sessions, "rex", "staple paper clips", "reviewer")
    db.dispose()
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await _sign_in(page, base, "ada", "lovelace-1843")
            await page.goto(f"{base}/chat")
            switch = page.locator("#view-as")
            await expect(switch).to_be_visible()
            await expect(page.locator('#view-as-choices option[value="group:hr"]')).to_have_count(1)

            # As hana (in group:hr): the note says whose view it is; the restricted answer shows.
            await switch.fill("web:hana")
            await page.fill("#question", "What is the L5 salary band?")
            await page.keyboard.press("Enter")
            card = page.locator("article.answer[data-answer-id]").last
            await expect(card).to_have_count(1, timeout=30_000)
            await expect(card.locator(".view-note")).to_contain_text("Viewing as web:hana (reads ")
            await expect(card.locator(".body")).to_contain_text(MARKER)

            # As rex (no group): the same question leaves it out, and says so.
            await switch.fill("web:rex")
            await switch.dispatch_event("change")
            await page.fill("#question", "What is the L5 salary band?")
            await page.keyboard.press("Enter")
            card = page.locator("article.answer[data-answer-id]").nth(1)
            await expect(card.locator(".view-note")).to_contain_text("Viewing as web:rex", timeout=30_000)
            await expect(card.locator(".view-note")).to_contain_text("left out")
            assert MARKER not in await card.inner_text()

            # A principal that isn't one: a clear error in place of the answer.
            await switch.fill("rex")
            await page.fill("#question", "What is the L5 salary band?")
            await page.keyboard.press("Enter")
            failed = page.locator("article.answer.failed")
            await expect(failed.locator(".body")).to_contain_text("Can't view as that: 'rex'", timeout=30_000)

            # A reviewer gets no switch.
            await page.click("form[action='/logout'] button")
            await _sign_in(page, base, "rex", "staple paper clips")
            await page.goto(f"{base}/chat")
            await expect(page.locator("#question")).to_be_visible()
            await expect(page.locator("#view-as")).to_have_count(0)
        finally:
            await browser.close()
    assert errors == []


async def _sign_in(page, base: str, username: str, password: str) -> None:
    from playwright.async_api import expect

    await page.goto(f"{base}/login?next=/review")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/review")
