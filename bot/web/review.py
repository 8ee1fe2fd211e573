"""The review queue (reviewers and admins): filter, read an item in full, approve, edit, reject, tag,
approve an expert's answer (from "Ask an expert") as the item's curated answer, and judge passages.

Relevance judgments (`feedback.judgments`, what retriever tuning learns from): each retrieved
chunk can be marked relevant or not, and a search box finds, in the whole index, the passage
that should have been found, to attach it. The search is unfiltered by permissions, as the rest
of the review pages: reviewers see everything. A judged passage is always read on the server
(from the answer's record, or by running the reviewer's search again), never taken from the form.

Every route here sits behind `require_reviewer`. Writes carry the version the page was rendered
from; a stale one gets the conflict page (409) with the other reviewer's saved state and the
reviewer's own text kept in the form (see `feedback.reviews`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.web.context import Console
from bot.web.security import requirement, signed_in
from feedback.datasets.prompt import numbered_chunks
from feedback.experts import approve_expert_answer, escalation_of, expert_answers
from feedback.judgments import Judgment, Passage, clear_judgment, judgments_for, record_judgment
from feedback.models import REVIEW_STATUSES
from feedback.reviews import (
    ACTIONS,
    Conflict,
    QueueFilters,
    ReviewError,
    ReviewItem,
    document_changes,
    facets,
    get_item,
    queue_neighbours,
    review_queue,
    save_review,
)
from feedback.schema import VOTE_REASONS

log = logging.getLogger(__name__)
PAGE = 50
SEARCH_K = 8  # passages a reviewer's search shows
VERDICTS = ("relevant", "not_relevant", "clear")


def _anchored(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the first chunk of each citation number: the target of the answer's [n] links."""
    seen: set[Any] = set()
    for c in chunks:
        c["anchor"] = c["n"] not in seen
        seen.add(c["n"])
    return chunks


def review_router(console: Console) -> APIRouter:
    reviewer = requirement("reviewer", console.user)
    router = APIRouter(prefix="/review", dependencies=[Depends(reviewer)])
    knowledge = console.services.knowledge

    @router.get("", response_class=HTMLResponse)
    async def queue(request: Request, offset: int = 0) -> Response:
        filters = QueueFilters.parse(request.query_params)
        offset = max(0, offset)
        page = await run_in_threadpool(review_queue, console.db.sessions, filters, offset=offset, limit=PAGE)
        options = await run_in_threadpool(facets, console.db.sessions)
        query = urlencode(filters.params())
        return console.page(
            request,
            "queue.html",
            page=page,
            filters=filters,
            query=query,
            options=options,
            reasons=VOTE_REASONS,
            statuses=REVIEW_STATUSES,
            more=f"?{urlencode({**filters.params(), 'offset': offset + PAGE})}" if page.has_more else None,
            less=f"?{urlencode({**filters.params(), 'offset': max(0, offset - PAGE)})}" if offset else None,
        )

    async def item_page(
        request: Request,
        answer_id: str,
        *,
        status_code: int = 200,
        flash: str | None = None,
        error: str | None = None,
        conflict: Conflict | None = None,
        form: dict[str, Any] | None = None,
    ) -> Response:
        filters = QueueFilters.parse(request.query_params)
        item = await run_in_threadpool(get_item, console.db.sessions, answer_id)
        if item is None:
            return console.page(request, "error.html", status_code=404, message="No such answer in the log.")
        prev_id, next_id = await run_in_threadpool(queue_neighbours, console.db.sessions, filters, answer_id)
        changes = await _document_changes(item)
        experts = await run_in_threadpool(expert_answers, console.db.sessions, answer_id)
        escalation = await run_in_threadpool(escalation_of, console.db.sessions, answer_id)
        query = urlencode(filters.params())
        judged = await run_in_threadpool(judgments_for, console.db.sessions, answer_id)
        find = (request.query_params.get("find") or "").strip()[:500]
        results, search_error = await _search(find) if find else ([], None)
        draft = item.draft
        tags = " ".join(item.review.tags)
        if form is not None:  # the reviewer's own input survives an error or a conflict
            draft = form.get("ideal_answer") or draft
            tags = form.get("tags", tags)
        return console.page(
            request,
            "item.html",
            status_code=status_code,
            item=item,
            chunks=_anchored(numbered_chunks(item.chunks)),
            changes=changes,
            changed_count=sum(1 for v in changes.values() if v in ("changed", "deleted")),
            draft=draft,
            tags=tags,
            version=conflict.current.version if conflict else item.review.version,
            query=query,
            prev_id=prev_id,
            next_id=next_id,
            flash=flash,
            error=error,
            conflict=conflict,
            reasons=VOTE_REASONS,
            experts=experts,
            escalation=escalation,
            filter_params=filters.params(),
            verdicts={j.passage.chunk_id: _verdict(j) for j in judged},
            attached=[j for j in judged if j.origin == "attached"],
            find=find,
            results=results,
            search_error=search_error,
            retrieved_ids={str(c.get("chunk_id")) for c in item.chunks},
        )

    async def _search(find: str) -> tuple[list[dict[str, Any]], str | None]:
        try:
            found = await run_in_threadpool(lambda: knowledge.search(find, top_k=SEARCH_K))
        except Exception as exc:
            log.warning("could not search the index for a passage", exc_info=True)
            return [], f"The index could not be searched: {exc}"
        return [c.model_dump() for c in found], None

    async def _document_changes(item: ReviewItem) -> dict[str, str]:
        try:
            current = await run_in_threadpool(knowledge.current_versions, item.doc_ids())
        except Exception:
            log.warning("could not read document versions from the index", exc_info=True)
            current = {}
        return document_changes([*item.chunks, *item.citations], current)

    @router.get("/{answer_id}", response_class=HTMLResponse)
    async def item(request: Request, answer_id: str, saved: str | None = None) -> Response:
        flash = f"Saved: {saved}." if saved in REVIEW_STATUSES or saved == "tags" else None
        return await item_page(request, answer_id, flash=flash)

    @router.post("/{answer_id}", response_class=HTMLResponse)
    async def act(
        request: Request,
        answer_id: str,
        action: Annotated[str, Form()],
        version: Annotated[int, Form(ge=0)],
        ideal_answer: Annotated[str, Form(max_length=40_000)] = "",
        tags: Annotated[str | None, Form(max_length=2000)] = None,
    ) -> Response:
        user = signed_in(request)
        form = {"ideal_answer": ideal_answer, "tags": tags or ""}
        if action not in ACTIONS:
            return await item_page(request, answer_id, status_code=400, error="Unknown action.", form=form)
        try:
            state = await run_in_threadpool(
                lambda: save_review(
                    console.db.sessions,
                    answer_id,
                    action=action,  # type: ignore[arg-type]
                    reviewer=user.username,
                    expected_version=version,
                    ideal_answer=ideal_answer if action == "edit" else None,
                    tags=tags.split() if tags is not None else None,
                )
            )
        except Conflict as conflict:
            log.info(
                "review conflict on %s: %s lost to %s", answer_id, user.username, conflict.current.reviewer
            )
            return await item_page(request, answer_id, status_code=409, conflict=conflict, form=form)
        except ReviewError as exc:
            return await item_page(request, answer_id, status_code=400, error=str(exc), form=form)
        log.info("%s: %s %s (version %d)", user.username, action, answer_id, state.version)
        saved = "tags" if action == "tag" else state.status
        query = urlencode({**QueueFilters.parse(request.query_params).params(), "saved": saved})
        return RedirectResponse(f"/review/{answer_id}?{query}", status_code=303)

    @router.post("/{answer_id}/expert", response_class=HTMLResponse)
    async def approve_expert(
        request: Request,
        answer_id: str,
        reply_id: Annotated[str, Form(max_length=255)],
        version: Annotated[int, Form(ge=0)],
    ) -> Response:
        """The expert's answer becomes the curated one (status "edited", tagged "expert")."""
        user = signed_in(request)
        try:
            state = await run_in_threadpool(
                lambda: approve_expert_answer(
                    console.db.sessions,
                    answer_id,
                    reply_id,
                    reviewer=user.username,
                    expected_version=version,
                )
            )
        except Conflict as conflict:
            return await item_page(request, answer_id, status_code=409, conflict=conflict)
        except ReviewError as exc:
            return await item_page(request, answer_id, status_code=400, error=str(exc))
        log.info(
            "%s: approved expert answer %s for %s (version %d)",
            user.username,
            reply_id,
            answer_id,
            state.version,
        )
        query = urlencode({**QueueFilters.parse(request.query_params).params(), "saved": state.status})
        return RedirectResponse(f"/review/{answer_id}?{query}", status_code=303)

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
            results, error = await _search(find.strip())
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

    return router


def _verdict(j: Judgment) -> str:
    return "relevant" if j.relevant else "not_relevant"
