"""Signing in and out of the console (users come from `lore users add`)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.web.context import Console
from bot.web.security import client_address, sign_in, sign_out
from feedback.users import authenticate, end_session, start_session

log = logging.getLogger(__name__)


def safe_next(target: str | None) -> str:
    """Only same-site paths: never an absolute URL or a scheme-relative `//host`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/review"
    return target


def auth_router(console: Console) -> APIRouter:
    router = APIRouter()

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str | None = None) -> Response:
        await run_in_threadpool(console.user, request)
        return console.page(request, "login.html", next=safe_next(next), error=None)

    @router.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str, Form()] = "/review",
    ) -> Response:
        address = client_address(request)
        wait = await console.throttle.retry_after(username, address)
        if wait:
            log.warning("sign-in for %r from %s throttled", username, address)
            return console.page(
                request,
                "login.html",
                status_code=429,
                next=safe_next(next),
                error=f"Too many failed sign-ins. Try again in {wait} s.",
            )
        user = await run_in_threadpool(authenticate, console.db.sessions, username, password)
        if user is None:
            await console.throttle.failed(username, address)
            log.info("failed sign-in for %r from %s", username, address)  # never the password
            return console.page(
                request,
                "login.html",
                status_code=401,
                next=safe_next(next),
                error="Wrong username or password.",
            )
        await console.throttle.succeeded(username)
        token = await run_in_threadpool(
            start_session, console.db.sessions, user, lifetime=console.session_lifetime
        )
        sign_in(request, user, token)
        log.info("%s signed in (%s)", user.username, user.role)
        return RedirectResponse(safe_next(next), status_code=303)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        token = sign_out(request)
        if token is not None:  # revoked server-side: a copy of this cookie stops working too
            await run_in_threadpool(end_session, console.db.sessions, token)
        return RedirectResponse("/login", status_code=303)

    return router
