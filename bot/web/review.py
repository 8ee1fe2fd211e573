"""The review queue (reviewers and admins): filter, read an item in full, approve, edit, reject, tag,
approve an expert's answer (from "Ask an expert") as the item's curated answer, and judge passages.

The item page also shows each retrieved chunk's relevance judgment and the reviewer's passage
search; the routes that write judgments are `bot.web.judging`.

Every route here sits behind `require_reviewer`. Writes carry the version the page was rendered
from; a stale one gets the conflict page (409) with the other reviewer's saved state and the
reviewer's own text kept in the form (see `feedback.reviews`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.web.context import Console
from bot.web.judging import judgment_routes, search_passages, verdict_of
from bot.web.security import requirement, signed_in
from feedback.datasets.prompt import numbered_chunks
from feedback.experts import approve_expert_answer, escalation_of, expert_answers
from feedback.judgments import judgments_for
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
        results, search_error = await search_passages(knowledge, find) if find else ([], None)
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
            verdicts={j.passage.chunk_id: verdict_of(j) for j in judged},
            attached=[j for j in judged if j.origin == "attached"],
            find=find,
            results=results,
            search_error=search_error,
            retrieved_ids={str(c.get("chunk_id")) for c in item.chunks},
        )

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

    judgment_routes(router, console)
    return router
