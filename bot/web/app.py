"""Lore's web app: health checks, Slack's HTTP-mode routes, and the web console.

`create_app(services, routers=[...])` builds one FastAPI app from the already-built services
(`bot.services.build_services`). With services it serves the console:

| path | who | what |
|---|---|---|
| `/healthz`, `/readyz` | anyone | liveness; readiness of the index, the database and Redis |
| `/metrics` | anyone (no user data; `web.metrics = false` turns it off) | Prometheus metrics |
| `/chat`, `/api/ask`, `/api/vote` | anyone (signed in with `web.private_chat`) | the chat |
| `/login`, `/logout` | anyone | sign in and out |
| `/review`, `/review/{answer_id}` | reviewers, admins | the review queue and its actions |
| `/gaps`, `/gaps/top`, `/gaps/run`, `/overview` | reviewers, admins | content gaps, top questions, charts |
| `/admin/sources`, `/admin/reindex`, `/admin/sync-status` | admins | sources and reindexing |
| `/admin/exports…` | admins | dataset exports: run, list, read cards, download |
| `/admin/models…` | admins | the retriever's tuning runs: promote a candidate, roll back |

Sessions, CSRF and roles: see `bot.web.security`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

if TYPE_CHECKING:
    from bot.web.context import Console
    from bot.web.ports import WebServices

log = logging.getLogger(__name__)

READY_TIMEOUT = 5.0  # seconds per check


def create_app(
    services: WebServices | None = None,
    *,
    routers: Sequence[APIRouter] = (),
    health: dict[str, Any] | None = None,
    console: bool = True,
) -> FastAPI:
    """A FastAPI app with `/healthz` plus `routers` (e.g. `bot.slack.run.slack_router(adapter)`),
    and, given `services` and `console`, the web console (kept on `app.state.console`; `lore slack`
    in HTTP mode serves Slack's routes without it).

    `services` (built once by `bot.services.build_services`) is kept on `app.state.services`;
    `health` is extra static information for `/healthz` (e.g. which adapters run)."""
    app = FastAPI(title="Lore", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.state.services = services
    info = {"status": "ok", **(health or {})}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return info

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse(invalid_input(exc.errors()), status_code=422)

    if services is None or services.settings.web.metrics:
        _mount_metrics(app, services)

    for router in routers:
        app.include_router(router)
    if services is not None and console:
        _mount_console(app, services)
    from bot.web.security import BodyLimitMiddleware

    # Added last = runs first: an oversized body is refused before any route or check reads it.
    app.add_middleware(BodyLimitMiddleware)
    return app


def _mount_metrics(app: FastAPI, services: WebServices | None) -> None:
    """Prometheus metrics at /metrics: this process's (answers, latency, votes; in embedded mode
    the in-process syncs too) and, with Redis, the queue depths read at scrape time."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

    from bot.metrics import render_metrics

    extra: CollectorRegistry | None = None
    if services is not None and services.settings.redis.url:
        from workers.client import queue_depth_collector

        extra = CollectorRegistry(auto_describe=True)
        extra.register(queue_depth_collector(services.settings))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = await asyncio.to_thread(render_metrics, extra)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    console = getattr(app.state, "console", None)
    if console is not None:  # the console's database connections; the services close themselves
        await asyncio.to_thread(console.close)


def _mount_console(app: FastAPI, services: WebServices) -> None:
    from bot.web.admin import admin_router
    from bot.web.auth import auth_router
    from bot.web.chat import chat_router
    from bot.web.context import HERE, Console
    from bot.web.gaps import gaps_router
    from bot.web.models import models_router
    from bot.web.review import review_router
    from bot.web.security import (
        SESSION_COOKIE,
        CSRFMiddleware,
        Forbidden,
        SignInRequired,
        load_session_secret,
    )

    console = Console(services)
    app.state.console = console
    web = services.settings.web

    @app.get("/readyz")
    async def readyz() -> Response:
        checks = await readiness(console)
        failing = [name for name, check in checks.items() if not check["ok"]]
        body = {"status": "unavailable" if failing else "ready", "failing": failing, "checks": checks}
        return JSONResponse(body, status_code=503 if failing else 200)

    app.include_router(chat_router(console))
    app.include_router(auth_router(console))
    app.include_router(review_router(console))
    app.include_router(gaps_router(console))
    app.include_router(admin_router(console))
    app.include_router(models_router(console))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.method == "GET" and "application/json" not in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            from urllib.parse import quote

            return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
        return JSONResponse({"error": "sign in first"}, status_code=401)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, _exc: Forbidden) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return console.page(request, "error.html", status_code=403, message="Only admins can do that.")
        return JSONResponse({"error": "admins only"}, status_code=403)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        return response

    # Added last = runs first: the session exists before the CSRF check reads it.
    app.add_middleware(CSRFMiddleware)
    app.add_middleware(
        SessionMiddleware,
        secret_key=load_session_secret(services.settings),
        session_cookie=SESSION_COOKIE,
        max_age=int(web.session_hours * 3600),
        same_site="lax",
        https_only=web.secure_cookies,
    )
    if web.trusted_proxies:
        # The client address (rate limits, sign-in throttling) comes from X-Forwarded-For only
        # when the connection is from one of these proxies; `lore serve` turns uvicorn's own
        # handling (which trusts 127.0.0.1 by default) off, so this setting alone decides.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(web.trusted_proxies))


def invalid_input(errors: Sequence[Any]) -> dict[str, Any]:
    """A short 422 body: what is wrong with which field, never the input itself (FastAPI's default
    echoes it whole: a 1 MB question came back as a 1 MB error)."""
    problems: list[dict[str, Any]] = []
    messages: list[str] = []
    for error in list(errors)[:10]:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "form")]
        field = ".".join(loc) or "the request"
        ctx = error.get("ctx") or {}
        if error.get("type") == "string_too_long" and "max_length" in ctx:
            message = f"{field} is too long: at most {ctx['max_length']} characters"
        else:
            message = f"{field}: {str(error.get('msg', 'invalid'))[:200]}"
        problems.append({"loc": loc, "type": str(error.get("type", ""))[:64], "msg": message})
        messages.append(message)
    return {"error": "; ".join(messages) or "invalid request", "detail": problems}


async def readiness(console: Console) -> dict[str, dict[str, Any]]:
    """Each dependency's state: the index (opens, answers a count), the database (SELECT 1, at the
    latest migration) and Redis (PING, when configured). Each check has its own timeout."""
    services = console.services

    def index() -> str:
        empty = services.knowledge.is_empty()
        return "empty (nothing indexed yet)" if empty else "ok"

    def database() -> str:
        from sqlalchemy import text

        db = console.db
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = db.current(), db.head()
        if current != head:
            raise RuntimeError(f"at migration {current}, expected {head}")
        return f"ok (migration {current})"

    async def redis() -> str:
        import redis.asyncio as aioredis

        url = services.settings.redis.url or ""
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return "ok"

    async def run(check: Any) -> dict[str, Any]:
        try:
            if asyncio.iscoroutinefunction(check):
                detail = await asyncio.wait_for(check(), READY_TIMEOUT)
            else:
                detail = await asyncio.wait_for(asyncio.to_thread(check), READY_TIMEOUT)
            return {"ok": True, "detail": detail}
        except TimeoutError:
            return {"ok": False, "detail": f"no answer within {READY_TIMEOUT:.0f} s"}
        except Exception as exc:
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

    names: dict[str, Any] = {"index": index, "database": database}
    if services.settings.redis.url:
        names["redis"] = redis
    results = await asyncio.gather(*(run(check) for check in names.values()))
    return dict(zip(names, results, strict=True))
