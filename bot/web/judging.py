"""Relevance judgments from the review item page (reviewers and admins; what retriever tuning
learns from, `feedback.judgments`): mark a retrieved chunk relevant or not, or attach the passage
that should have been found, from a search of the whole index.

The routes join the review router (`bot.web.review`), so they sit behind the same role check, and
CSRF is the middleware's as for every write. The search is unfiltered by permissions, as the rest
of the review pages: reviewers see everything. A judged passage is always read on the server (from
the answer's record, or by running the reviewer's search again), never taken from the form. The
page's script posts with `Accept: application/json` and gets JSON; a plain form post is redirected
back to the item.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.core.ports import KnowledgeBase
from bot.web.context import Console
from bot.web.security import signed_in
from feedback.judgments import Judgment, Passage, clear_judgment, record_judgment
from feedback.reviews import QueueFilters, ReviewError, get_item

log = logging.getLogger(__name__)
SEARCH_K = 8  # passages a reviewer's search shows
VERDICTS = ("relevant", "not_relevant", "clear")


def verdict_of(j: Judgment) -> str:
    return "relevant" if j.relevant else "not_relevant"


async def search_passages(knowledge: KnowledgeBase, find: str) -> tuple[list[dict[str, Any]], str | None]:
    """The index's passages nearest `find` (every source, unfiltered), or why it can't be searched."""
    try:
        found = await run_in_threadpool(lambda: knowledge.search(find, top_k=SEARCH_K))
    except Exception as exc:
        log.warning("could not search the index for a passage", exc_info=True)
        return [], f"The index could not be searched: {exc}"
    return [c.model_dump() for c in found], None


def judgment_routes(router: APIRouter, console: Console) -> None:
    """Add `POST /review/{answer_id}/judgments` and `/attach` to the review router."""

    def judged_reply(request: Request, answer_id: str, body: dict[str, Any], status: int = 200) -> Response:
        """JSON for the page's script; otherwise back to the item (the page works without it)."""
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(body, status_code=status)
        if status >= 400:
            return console.page(request, "error.html", status_code=status, message=body["error"])
        params = {**QueueFilters.parse(request.query_params).params()}
        if find := str(body.get("find") or ""):
            params["find"] = find
        anchor = "#passage-search" if find else f"#judge-{body.get('chunk_id', '')}"
        return RedirectResponse(f"/review/{answer_id}?{urlencode(params)}{anchor}", status_code=303)

    @router.post("/{answer_id}/judgments")
    async def judge(
        request: Request,
        answer_id: str,
        chunk_id: Annotated[str, Form(max_length=255)],
        verdict: Annotated[str, Form(max_length=16)],
    ) -> Response:
        """Mark one of the answer's retrieved chunks relevant or not; "clear" forgets the verdict
        (on an attached passage too)."""
        user = signed_in(request)
        if verdict not in VERDICTS:
            return judged_reply(request, answer_id, {"error": "Unknown verdict."}, 400)
        item = await run_in_threadpool(get_item, console.db.sessions, answer_id)
        if item is None:
            return judged_reply(request, answer_id, {"error": "No such answer in the log."}, 404)
        reply = {"ok": True, "chunk_id": chunk_id, "verdict": None if verdict == "clear" else verdict}
        if verdict == "clear":
            await run_in_threadpool(clear_judgment, console.db.sessions, answer_id, chunk_id)
            log.info("%s: cleared the judgment of %s on %s", user.username, chunk_id, answer_id)
            return judged_reply(request, answer_id, reply)
        chunk = next((c for c in item.chunks if str(c.get("chunk_id")) == chunk_id), None)
        if chunk is None:
            return judged_reply(
                request, answer_id, {"error": "That chunk was not retrieved for this answer."}, 400
            )
        try:
            await run_in_threadpool(
                lambda: record_judgment(
                    console.db.sessions,
                    answer_id,
                    Passage.of(chunk),
                    relevant=verdict == "relevant",
                    origin="retrieved",
                    reviewer=user.username,
                )
            )
        except ReviewError as exc:
            return judged_reply(request, answer_id, {"error": str(exc)}, 400)
        log.info("%s: %s is %s for %s", user.username, chunk_id, verdict, answer_id)
        return judged_reply(request, answer_id, reply)

    @router.post("/{answer_id}/attach")
    async def attach(
        request: Request,
        answer_id: str,
        chunk_id: Annotated[str, Form(max_length=255)],
        find: Annotated[str, Form(max_length=500)],
    ) -> Response:
        """Attach a passage the reviewer's search found as the one that should have been found."""
        user = signed_in(request)
        item = await run_in_threadpool(get_item, console.db.sessions, answer_id)
        if item is None:
            return judged_reply(request, answer_id, {"error": "No such answer in the log."}, 404)
        retrieved = next((c for c in item.chunks if str(c.get("chunk_id")) == chunk_id), None)
        found = retrieved
        if found is None:
            results, error = await search_passages(console.services.knowledge, find.strip())
            if error:
                return judged_reply(request, answer_id, {"error": error}, 503)
            found = next((c for c in results if str(c.get("chunk_id")) == chunk_id), None)
        if found is None:
            message = "That passage is no longer among the search's results: search again."
            return judged_reply(request, answer_id, {"error": message}, 409)
        passage = Passage.of(found)
        try:
            await run_in_threadpool(
                lambda: record_judgment(
                    console.db.sessions,
                    answer_id,
                    passage,
                    relevant=True,
                    origin="retrieved" if retrieved is not None else "attached",
                    reviewer=user.username,
                )
            )
        except ReviewError as exc:
            return judged_reply(request, answer_id, {"error": str(exc)}, 400)
        log.info("%s: attached %s to %s", user.username, chunk_id, answer_id)
        body = {"ok": True, "chunk_id": chunk_id, "verdict": "relevant", "find": find.strip()}
        return judged_reply(request, answer_id, {**body, "title": passage.title, "path": passage.path})
