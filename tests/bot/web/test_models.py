"""The Models page through the real console: real model records in the console's data directory,
promotion and rollback on the console's background thread with its own Knowledge (a `full`
candidate re-indexes the corpus with its own embedder), and the refusals (a refused model, the
reviewer's role, a missing CSRF token).

A `full` candidate is made without the trainer, as tests/knowledge/test_registry.py does: the
base MiniLM directory linked under the model's `st/`, so it gets its own collection and identity.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from feedback.judgments import Passage, record_judgment
from feedback.store import record_interaction
from knowledge.embeddings import local_model_path
from knowledge.tuning import registry
from knowledge.tuning.lock import run_lock
from knowledge.tuning.train import Adapter
from tests.bot.web.conftest import ADMIN, ADMIN_PW, REVIEWER, REVIEWER_PW
from tests.bot.web.test_review import logged
from tests.conftest import wait_for

FIGURES = {
    "before": {"held-out": {"recall@5": 0.5, "mrr": 0.4}, "synthetic": {"recall@5": 0.61, "mrr": 0.52}},
    "after": {"held-out": {"recall@5": 0.75, "mrr": 0.625}, "synthetic": {"recall@5": 0.7, "mrr": 0.6}},
}
PAIRS = {"judged": 12, "imported": 0, "curated": 3, "synthetic": 40}


def candidate(settings: Any, method: str = "full", *, passed: bool = True, **fields: Any) -> Any:
    """A measured run: a `full` one is the base MiniLM under `st/`, an adapter the identity map."""
    record = registry.create_run(settings, method)  # type: ignore[arg-type]
    if method == "full":
        registry.st_dir(settings, record.id).symlink_to(local_model_path(settings.embedding))
    else:
        eye = Adapter(np.eye(384, dtype=np.float32), np.zeros(384, dtype=np.float32))
        eye.save(registry.adapter_file(settings, record.id))
    record.pairs, record.before, record.after = PAIRS, FIGURES["before"], FIGURES["after"]
    record.gate = registry.Gate(passed=passed, reasons=fields.pop("reasons", []))
    for key, value in fields.items():
        setattr(record, key, value)
    registry.save(settings, record)
    return record


def refused(settings: Any, method: str = "adapter") -> Any:
    record = candidate(settings, method, passed=False)
    return registry.refuse(settings, record.id, ["held-out MRR +0.004 < +0.02"])


def row(page: str, model_id: str) -> str:
    """The page's table row of `model_id` (up to the next run's row)."""
    parts = page.split(f'<tr data-model="{model_id}"')
    assert len(parts) == 2, f"no row for {model_id}"
    return parts[1].split("<tr data-model=")[0]


async def finished(lore: Any, client: Any) -> dict[str, Any]:
    """Poll the status the page polls until the background change is over."""

    async def status() -> dict[str, Any]:
        response = await client.http.get("/admin/models/status", headers={"Accept": "application/json"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    await wait_for(lambda: not lore.console.promotions.status()["busy"], timeout=120, what="the promotion")
    return await status()


async def test_the_page_lists_the_runs_newest_first_with_figures_reasons_and_the_judgment_count(lore):
    settings = lore.settings
    record_interaction(lore.db.sessions, logged("q-1", "How much is the per diem?", chunk_text="95 USD."))
    passage = Passage(
        chunk_id="c-q-1", doc_id="d1", path="expenses/per-diem.md", doc_hash="h", text="95 USD."
    )
    record_judgment(lore.db.sessions, "q-1", passage, relevant=True, origin="retrieved", reviewer=REVIEWER)
    bad = refused(settings)
    good = candidate(settings, "full")
    client = await lore.signed_in(ADMIN, ADMIN_PW)

    page = (await client.page("/admin/models")).text
    assert '<a href="/admin/models">Models</a>' in page  # in the admin's nav
    assert "Serving: <strong>base</strong>" in page and "Roll back" not in page
    assert "<code>lore tune retriever</code>" in page
    assert "Relevance judgments so far: 1 relevant" in page
    assert page.index(f'data-model="{good.id}"') < page.index(f'data-model="{bad.id}"')  # newest first

    mine = row(page, good.id)
    assert "<td>full</td>" in mine and 'class="status model-candidate">candidate<' in mine
    pairs = re.sub(r"<[^>]+>", " ", mine)
    assert re.search(r"judged 12\s+imported 0\s+curated 3\s+synthetic 40", pairs)
    assert "held-out" in mine and "0.500 → 0.750" in mine and "0.400 → 0.625" in mine
    assert "synthetic" in mine and "0.610 → 0.700" in mine
    assert f'action="/admin/models/{good.id}/promote"' in mine and ">Promote</button>" in mine

    theirs = row(page, bad.id)
    assert 'class="status model-refused">refused<' in theirs
    assert "held-out MRR +0.004 &lt; +0.02" in theirs  # the gate's reasons, escaped
    assert "/promote" not in theirs  # no button for a refused model


async def test_an_admin_promotes_a_full_candidate_in_the_background_then_rolls_back(lore):
    settings = lore.settings
    model = candidate(settings, "full")
    client = await lore.signed_in(ADMIN, ADMIN_PW)
    await client.page("/admin/models")

    with run_lock(settings):  # as if a tuning run held it: the promotion waits, the request doesn't
        response = await client.form(f"/admin/models/{model.id}/promote", {})
        assert response.status_code == 303 and response.headers["location"] == "/admin/models"
        page = (await client.page("/admin/models")).text
        assert f"Promoting model <strong>{model.id}</strong>…" in page
        assert 'id="models-status" data-running="true"' in page
        again = await client.form(f"/admin/models/{model.id}/promote", {})
        assert again.status_code == 409 and "already running" in again.text
        assert registry.serving_id(settings) == registry.BASE
    status = await finished(lore, client)
    assert status["error"] is None and status["serving"] == model.id, status
    assert status["serving_model"] == model.id
    # The console's own Knowledge followed the pointer, onto the model's own collection.
    assert lore.services.knowledge.view.model == model.id
    assert lore.services.knowledge.store.collection == f"lore-{model.id}"
    assert lore.services.knowledge.search("how many leave days do I get?", top_k=1)

    page = (await client.page("/admin/models")).text
    assert f"Serving: <strong>{model.id}</strong>" in page
    assert f"Model <strong>{model.id}</strong> serves now." in page
    mine = row(page, model.id)
    assert '<span class="badge">serving</span>' in mine and "/promote" not in mine
    assert "Roll back to base</button>" in page

    response = await client.form("/admin/models/rollback", {})
    assert response.status_code == 303
    status = await finished(lore, client)
    assert status["error"] is None and status["serving"] == registry.BASE, status
    assert registry.serving_id(settings) == registry.BASE
    assert lore.services.knowledge.view.model == registry.BASE
    page = (await client.page("/admin/models")).text
    assert "Serving: <strong>base</strong>" in page
    assert 'class="status model-retired">retired<' in row(page, model.id)


async def test_refused_and_failing_promotions_are_explained_and_nothing_switches(lore):
    settings = lore.settings
    bad = refused(settings)
    unmeasured = candidate(settings, "adapter", passed=False)
    client = await lore.signed_in(ADMIN, ADMIN_PW)
    await client.page("/admin/models")

    response = await client.form(f"/admin/models/{bad.id}/promote", {})
    assert response.status_code == 400
    assert f"Model {bad.id} was refused (held-out MRR +0.004 &lt; +0.02): it cannot serve." in response.text
    response = await client.form(f"/admin/models/{unmeasured.id}/promote", {})
    assert response.status_code == 400 and "has not passed the gate" in response.text
    headers = {"X-CSRF-Token": await client.csrf(), "Accept": "application/json"}
    response = await client.http.post(f"/admin/models/{bad.id}/promote", headers=headers)
    assert response.status_code == 400 and "was refused" in response.json()["error"]
    assert (await client.form("/admin/models/nope/promote", {})).status_code == 404
    response = await client.form("/admin/models/rollback", {})
    assert response.status_code == 400 and "nothing to roll back to" in response.text

    # Passed the gate, but its files are gone: the background promotion fails, and says why.
    broken = candidate(settings, "full")
    registry.st_dir(settings, broken.id).unlink()
    assert (await client.form(f"/admin/models/{broken.id}/promote", {})).status_code == 303
    status = await finished(lore, client)
    assert status["error"] and status["serving"] is None, status
    page = (await client.page("/admin/models")).text
    assert "The promotion failed: " in page
    assert registry.serving_id(settings) == registry.BASE and lore.services.knowledge.view.model == "base"


async def test_only_admins_with_the_csrf_token_change_the_serving_model(lore):
    settings = lore.settings
    model = candidate(settings, "adapter")

    anonymous = lore.client()
    response = await anonymous.http.get("/admin/models")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/admin/models"

    reviewer = await lore.signed_in(REVIEWER, REVIEWER_PW)
    assert '<a href="/admin/models">' not in (await reviewer.page("/review")).text
    page = await reviewer.http.get("/admin/models", headers={"Accept": "text/html"})
    assert page.status_code == 403 and "Only admins" in page.text
    assert (await reviewer.form(f"/admin/models/{model.id}/promote", {})).status_code == 403
    assert (await reviewer.http.get("/admin/models/status")).status_code == 403

    admin = await lore.signed_in(ADMIN, ADMIN_PW)
    response = await admin.form(f"/admin/models/{model.id}/promote", {}, csrf=False)
    assert response.status_code == 403 and "CSRF" in response.text
    response = await admin.http.post(
        f"/admin/models/{model.id}/promote",
        data={"csrf_token": await admin.csrf()},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403 and "cross-site" in response.text
    assert registry.serving_id(settings) == registry.BASE
    assert not lore.console.promotions.status()["running"]


async def test_answer_model_runs_are_listed_beside_the_retrievers_with_the_one_that_answers(lore):
    from feedback import generators

    sessions = lore.db.sessions
    retriever = candidate(lore.settings, "adapter")
    worse = generators.start_run(sessions, provider="openai", method="sft", base="gpt-4o-mini-2024-07-18")
    generators.save(
        sessions, worse.id, model="ft:worse", status="refused", examples={"train": 12, "held_out": 4},
        gate={"passed": False, "reasons": ["refused: held-out citation validity 0.000 (at least 0.99)"]},
    )  # fmt: skip
    better = generators.start_run(sessions, provider="local", method="dpo", base="/m/base.gguf")
    generators.save(sessions, better.id, model="/m/run/model.gguf", status="candidate", gate={"passed": True})
    generators.promote(sessions, better.id)
    client = await lore.signed_in(ADMIN, ADMIN_PW)

    page = (await client.page("/admin/models")).text
    assert f'data-model="{retriever.id}"' in page  # the retriever's runs are still there
    answers = page.split('id="answer-models"')[1]
    assert answers.index(f'data-generator="{better.id}"') < answers.index(f'data-generator="{worse.id}"')
    theirs = answers.split(f'data-generator="{worse.id}"')[1].split("<tr")[0]
    assert "train 12, held out 4" in theirs and "ft:worse" in theirs
    assert "citation validity 0.000" in theirs and "model-refused" in theirs
    mine = answers.split(f'data-generator="{better.id}"')[1].split("<tr")[0]
    assert "model-serving" in mine and "/m/run/model.gguf" in mine
    shown = generators.active(lore.settings)
    assert 'id="serving-generator"' in page
    if shown["source"] == "promoted":  # this console answers with the local model
        assert f"run {better.id}" in page
    else:
        assert shown["model"] in page
