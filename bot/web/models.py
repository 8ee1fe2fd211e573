"""The Models page (admins): the retriever's tuning runs, which one serves, Promote and Roll back;
and the answer model's fine-tuning runs (`feedback.generators`) and which answer model serves.

The runs are `knowledge.tuning.registry`'s records, read on every view (the pointer is the truth
for which model serves). Promote and Roll back start a background model change
(`bot.web.promotions.PromotionRunner`) and return at once; the page polls `/admin/models/status`
while it runs. Runs themselves are started with `lore tune retriever` (or on the schedule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.web.context import Console
from bot.web.promotions import PromotionBusy
from bot.web.security import requirement, signed_in
from knowledge.tuning import registry
from knowledge.tuning.data import KINDS
from knowledge.tuning.gate import HELD_OUT, SYNTHETIC

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One run as the page shows it."""

    record: registry.ModelRecord
    serving: bool
    promotable: bool
    pairs: list[tuple[str, int]]
    figures: list[dict[str, Any]] = field(default_factory=list)  # per set: before/after recall@5, MRR


def _row(record: registry.ModelRecord, serving_id: str) -> Row:
    names = [n for n in (HELD_OUT, SYNTHETIC) if n in record.before or n in record.after]
    names += sorted((set(record.before) | set(record.after)) - set(names))
    figures = [
        {"set": n, "before": record.before.get(n) or {}, "after": record.after.get(n) or {}} for n in names
    ]
    serving = record.id == serving_id
    return Row(
        record=record,
        serving=serving,
        promotable=record.status == "candidate" and record.gate.passed and not serving,
        pairs=[(k, int(record.pairs.get(k, 0))) for k in KINDS],
        figures=figures,
    )


def models_router(console: Console) -> APIRouter:
    admin = requirement("admin", console.user)
    router = APIRouter(prefix="/admin/models", dependencies=[Depends(admin)])
    settings = console.settings
    runner = console.promotions

    def read() -> dict[str, Any]:
        from feedback import generators
        from feedback.judgments import count_judgments

        serving = registry.serving(settings)
        runs = registry.runs(settings)
        return {
            "generator": generators.active(settings),
            "generator_runs": generators.runs(console.db.sessions),
            "serving": serving,
            "previous": registry.previous(settings),
            "rows": [_row(r, serving.id) for r in runs],
            "judgments": count_judgments(console.db.sessions),
            "status": runner.status(),
        }

    async def page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
        try:
            context = await run_in_threadpool(read)
        except Exception as exc:
            log.warning("could not read the models", exc_info=True)
            context = {"rows": [], "read_error": f"The models could not be read: {exc}"}
            context["status"] = await run_in_threadpool(runner.status)
        return console.page(request, "models.html", status_code=status_code, error=error, **context)

    async def refused(request: Request, message: str, status_code: int) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": message}, status_code=status_code)
        return await page(request, error=message, status_code=status_code)

    def started(request: Request) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"started": True}, status_code=202)
        return RedirectResponse("/admin/models", status_code=303)

    @router.get("", response_class=HTMLResponse)
    async def models(request: Request) -> Response:
        return await page(request)

    @router.get("/status")
    async def status() -> Response:
        state = await run_in_threadpool(runner.status)
        state["serving_model"] = await run_in_threadpool(registry.serving_id, settings)
        return JSONResponse(state)

    @router.post("/{model_id}/promote")
    async def promote(request: Request, model_id: str) -> Response:
        user = signed_in(request)
        found = {r.id: r for r in await run_in_threadpool(registry.runs, settings)}
        record = found.get(model_id)
        if record is None:
            raise HTTPException(404, "no such model")
        why = None
        if record.status == "refused":
            reasons = "; ".join(record.gate.reasons) or "by the gate"
            why = f"Model {model_id} was refused ({reasons}): it cannot serve."
        elif record.status == "serving":
            why = f"Model {model_id} already serves."
        elif not record.gate.passed:
            why = f"Model {model_id} has not passed the gate: it cannot serve."
        elif record.status != "candidate":
            why = f"Model {model_id} is {record.status}: only a candidate can be promoted."
        if why:
            return await refused(request, why, 400)
        try:
            runner.start("promote", model_id, requested_by=user.username)
        except PromotionBusy as exc:
            return await refused(request, f"{exc}; wait for it to finish.", 409)
        log.info("%s asked to promote model %s", user.username, model_id)
        return started(request)

    @router.post("/rollback")
    async def rollback(request: Request) -> Response:
        user = signed_in(request)
        previous = await run_in_threadpool(registry.previous, settings)
        if previous is None:
            why = "The serving model replaced nothing: there is nothing to roll back to."
            return await refused(request, why, 400)
        try:
            runner.start("rollback", None, requested_by=user.username)
        except PromotionBusy as exc:
            return await refused(request, f"{exc}; wait for it to finish.", 409)
        log.info("%s asked to roll back to model %s", user.username, previous.id)
        return started(request)

    return router
