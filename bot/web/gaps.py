"""Content gaps for the people who write the docs (reviewers and admins): the Gaps page, Top
questions, and the Overview charts.

The clusters come from the last stored run (`feedback.gaps`; the `lore.cluster_gaps` task, or
"Cluster again" here, which goes through the workers' client like Reindex does); the filters
recount a stored run, they never cluster on a page view. The documents nearest each cluster are
searched in the index at view time, unfiltered by permissions, as the review pages show
reviewers everything. The Overview's charts are drawn in the browser by Chart.js, served from
/static/vendor (the console works offline); the numbers travel in a JSON data block, never as
script.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.web.context import Console
from bot.web.security import requirement, signed_in
from feedback.gaps import (
    ClusterView,
    GapFilters,
    filter_options,
    last_run,
    latest_report,
    nearest_documents,
    view_report,
)
from feedback.overview import day_range, overview

log = logging.getLogger(__name__)
SHOWN = {"gaps": 20, "top": 30}
NEAREST_K = 8


def gaps_router(console: Console) -> APIRouter:
    reviewer = requirement("reviewer", console.user)
    router = APIRouter(dependencies=[Depends(reviewer)])
    services = console.services

    def nearest(views: list[ClusterView]) -> str | None:
        """Fill each cluster's nearest documents; an error message when the index can't be read."""
        try:
            for v in views:
                v.documents = nearest_documents(services.knowledge.search(v.label, top_k=NEAREST_K))
        except Exception as exc:
            log.warning("could not search the index for the Gaps page", exc_info=True)
            return f"The index could not be searched: {exc}"
        return None

    async def page(request: Request, kind: str) -> Response:
        filters = GapFilters.parse(request.query_params)
        report = await run_in_threadpool(latest_report, console.db.sessions, kind)
        clusters: list[dict[str, Any]] = report.clusters if report is not None else []
        views = view_report(clusters, filters, limit=SHOWN[kind])
        index_error = await run_in_threadpool(nearest, views)
        ran = await run_in_threadpool(last_run, console.db.sessions)
        return console.page(
            request,
            "gaps.html",
            kind=kind,
            report=report,
            views=views,
            filters=filters,
            options=filter_options(clusters),
            last_run=ran,
            index_error=index_error,
            requested=request.query_params.get("requested"),
        )

    @router.get("/gaps", response_class=HTMLResponse)
    async def gaps(request: Request) -> Response:
        return await page(request, "gaps")

    @router.get("/gaps/top", response_class=HTMLResponse)
    async def top(request: Request) -> Response:
        return await page(request, "top")

    @router.post("/gaps/run")
    async def run(request: Request) -> Response:
        user = signed_in(request)
        try:
            task_id = await run_in_threadpool(
                lambda: services.tasks.request_gap_report(requested_by=f"console:{user.username}")
            )
        except Exception:  # e.g. Redis down: say so on the page rather than fail
            log.warning("could not queue a clustering of the questions", exc_info=True)
            return RedirectResponse("/gaps?requested=0", status_code=303)
        log.info("%s asked for a clustering of the questions (%s)", user.username, task_id)
        return RedirectResponse("/gaps?requested=1", status_code=303)

    @router.get("/overview", response_class=HTMLResponse)
    async def overview_page(request: Request) -> Response:
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat((request.query_params.get(name) or "").strip())
            except ValueError:
                return None

        start, end = day_range(day("from"), day("to"))
        data = await run_in_threadpool(overview, console.db.sessions, start, end)
        return console.page(
            request, "overview.html", data=data, date_from=start, date_to=end, kind="overview"
        )

    return router
