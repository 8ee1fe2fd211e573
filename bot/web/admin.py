"""Admin pages: sources (counts, last sync, errors, Reindex with live progress) and dataset exports.

Every route here sits behind `require_admin`. Reindexing goes through the workers' send-side
client (`TaskClient.request_sync`: a Celery task with Redis, the in-process executor without),
exactly like Slack's /reindex; the page polls `/admin/sync-status` for progress.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.concurrency import run_in_threadpool

from bot.web.context import Console
from bot.web.exports import ExportBusy
from bot.web.security import requirement, signed_in
from feedback.datasets.build import FORMATS
from feedback.datasets.export import MANIFEST, list_exports, parse_since

log = logging.getLogger(__name__)
_EXPORT_NAME = re.compile(r"^(?:sft|dpo|kto)-\d{8}T\d{6}Z(?:-\d+)?$")


def admin_router(console: Console) -> APIRouter:
    admin = requirement("admin", console.user)
    router = APIRouter(prefix="/admin", dependencies=[Depends(admin)])
    services = console.services
    settings = services.settings

    def exports_root() -> Path:
        return settings.datasets.directory(settings.data_dir)

    # ---- sources ------------------------------------------------------------------------

    @router.get("", include_in_schema=False)
    async def admin_home() -> Response:
        return RedirectResponse("/admin/sources", status_code=303)

    @router.get("/sources", response_class=HTMLResponse)
    async def sources(request: Request) -> Response:
        error = None
        try:
            rows = await run_in_threadpool(services.knowledge.sources_status)
        except Exception as exc:
            log.warning("could not read the sources' status", exc_info=True)
            rows, error = [], f"The index could not be read: {exc}"
        status = await run_in_threadpool(services.tasks.sync_status)
        for row in rows:
            last = status.last.get(row["name"]) or {}
            row["worker_last"] = last
            skipped = last.get("skipped") or (row.get("last_result") or {}).get("skipped") or []
            row["skipped"] = skipped if isinstance(skipped, list) else []
        return console.page(request, "sources.html", rows=rows, error=error, running=status.running)

    @router.post("/reindex")
    async def reindex(
        request: Request,
        source: Annotated[str, Form()] = "",
    ) -> Response:
        user = signed_in(request)
        names = [source] if source else [s.name for s in settings.sources]
        requested_by = console.user_hash(f"user:{user.id}")
        handles = []
        for name in names:
            try:
                handle = await run_in_threadpool(services.tasks.request_sync, name, requested_by=requested_by)
            except KeyError as exc:
                return JSONResponse({"error": str(exc.args[0])}, status_code=400)
            handles.append({"source": handle.source, "task_id": handle.task_id, "joined": handle.joined})
            log.info("%s requested a sync of %s (%s)", user.username, name, handle.task_id)
        if "application/json" not in request.headers.get("accept", ""):
            return RedirectResponse("/admin/sources", status_code=303)
        return JSONResponse({"queued": handles})

    @router.get("/sync-status")
    async def sync_status() -> Response:
        status = await run_in_threadpool(services.tasks.sync_status)
        return JSONResponse(
            json.loads(json.dumps({"running": status.running, "last": status.last}, default=str))
        )

    # ---- exports ------------------------------------------------------------------------

    @router.get("/exports", response_class=HTMLResponse)
    async def exports(request: Request, error: str | None = None) -> Response:
        found = await run_in_threadpool(list_exports, exports_root())
        return console.page(
            request,
            "exports.html",
            exports=found,
            formats=FORMATS,
            status=console.exports.status(),
            root=str(exports_root()),
            error=error,
        )

    @router.post("/exports")
    async def start_export(
        request: Request,
        format: Annotated[str, Form()],
        since: Annotated[str, Form()] = "",
    ) -> Response:
        user = signed_in(request)
        wants_json = "application/json" in request.headers.get("accept", "")
        try:
            if format not in FORMATS:
                raise ValueError(f"unknown format {format!r}")
            console.exports.start(format, parse_since(since or None), requested_by=user.username)
        except (ValueError, ExportBusy) as exc:
            if wants_json:
                return JSONResponse(
                    {"error": str(exc)}, status_code=409 if isinstance(exc, ExportBusy) else 400
                )
            return await exports(request, error=str(exc))
        log.info("%s started a %s export", user.username, format)
        if wants_json:
            return JSONResponse({"started": format}, status_code=202)
        return RedirectResponse("/admin/exports", status_code=303)

    @router.get("/exports/status")
    async def export_status() -> Response:
        return JSONResponse(console.exports.status())

    def export_dir(name: str) -> Path:
        path = exports_root() / name
        if not _EXPORT_NAME.match(name) or not (path / MANIFEST).is_file():
            raise HTTPException(404, "no such export")
        return path

    @router.get("/exports/{name}", response_class=HTMLResponse)
    async def export_card(request: Request, name: str) -> Response:
        path = export_dir(name)
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        card = (path / "dataset_card.md").read_text(encoding="utf-8")
        return console.page(request, "export.html", name=name, card=card, files=manifest.get("files", []))

    @router.get("/exports/{name}/{file}")
    async def export_file(name: str, file: str) -> Response:
        path = export_dir(name)
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        allowed = {*manifest.get("files", []), MANIFEST, "dataset_card.md"}
        if file not in allowed:
            raise HTTPException(404, "no such file")
        if file.endswith(".md"):
            return PlainTextResponse((path / file).read_text(encoding="utf-8"))
        return FileResponse(path / file, filename=f"{name}-{file}", media_type="application/octet-stream")

    return router
