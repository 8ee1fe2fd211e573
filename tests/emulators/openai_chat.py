"""A local OpenAI-compatible chat endpoint whose replies the test chooses.

`chat_completion` is one `/v1/chat/completions` response as OpenAI's API shapes it; `FixedLLM`
serves one fixed reply to every request (a model steered into saying something), so answers
carry exactly that text through Lore's real OpenAI generator. With `hold=True` each completion
waits until the test sets `release` (a model slow enough to shut a process down under it).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web


def chat_completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


class FixedLLM:
    """Serves `reply` as every chat completion; `settings()` points Lore's `llm` at it."""

    def __init__(self, reply: str = "", *, model: str = "fixed", hold: bool = False) -> None:
        self.reply, self.model = reply, model
        self.requests = 0
        self.prompts: list[str] = []  # each request's messages, as JSON: what the model read
        self.received = asyncio.Event()  # set by the first request
        self.release = asyncio.Event()  # completions wait for it
        if not hold:
            self.release.set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FixedLLM:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def settings(self) -> dict[str, Any]:
        """`llm` settings that point Lore at this server (no fallback: its text must be used)."""
        return {
            "provider": "openai",
            "base_url": self.url,
            "api_key": "sk-fixed-llm-test",
            "model": self.model,
            "fallback_to_extractive": False,
            "max_retries": 0,
        }

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _complete(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.prompts.append(json.dumps((await request.json()).get("messages")))
        self.received.set()
        await self.release.wait()
        return web.json_response(chat_completion(self.reply, self.model))
