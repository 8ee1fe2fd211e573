"""Connecting the Slack adapter: Socket Mode (default; no public URL) or HTTP mode (Events API
and interactivity served by Lore's web app at /slack/events, /slack/interactions, /slack/commands)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from bot.slack.app import SlackAdapter

log = logging.getLogger(__name__)

SLACK_PATHS = ("/slack/events", "/slack/interactions", "/slack/commands")


async def run_socket_mode(
    adapter: SlackAdapter, app_token: str, stop: asyncio.Event, *, drain_timeout: float = 30
) -> None:
    """Connect over Socket Mode and serve until `stop` is set, then finish in-flight answers."""
    handler = AsyncSocketModeHandler(adapter.app, app_token)
    await handler.connect_async()  # type: ignore[no-untyped-call]  # Bolt leaves it unannotated
    log.info("Slack connected over Socket Mode")
    try:
        await stop.wait()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        await adapter.drain(drain_timeout)
        log.info("Slack disconnected")


def slack_router(adapter: SlackAdapter) -> APIRouter:
    """HTTP mode: Slack's request URLs. Bolt verifies the signature (401 when it is wrong or stale)
    and answers `url_verification`; one handler serves all three paths."""
    handler = AsyncSlackRequestHandler(adapter.app)
    router = APIRouter()

    async def slack_endpoint(request: Request) -> Response:
        return await handler.handle(request)

    for path in SLACK_PATHS:
        router.add_api_route(path, slack_endpoint, methods=["POST"], include_in_schema=False)
    return router
