"""Lore's web app factory. Today: `/healthz` and, in Slack HTTP mode, Slack's request URLs.
The web console (issue 6) adds its routers here, from the same already-built services."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI

if TYPE_CHECKING:
    from bot.serve import Services


def create_app(
    services: Services | None = None,
    *,
    routers: Sequence[APIRouter] = (),
    health: dict[str, Any] | None = None,
) -> FastAPI:
    """A FastAPI app with `/healthz` plus `routers` (e.g. `bot.slack.run.slack_router(adapter)`).

    `services` (built once by `bot.serve.build_services`) is kept on `app.state.services` for
    routes that need the conversation core, the task client or the index; `health` is extra
    static information for `/healthz` (e.g. which adapters run)."""
    app = FastAPI(title="Lore", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    info = {"status": "ok", **(health or {})}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return info

    for router in routers:
        app.include_router(router)
    return app
