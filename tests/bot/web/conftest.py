"""Fixtures for the web console: the real app over real services.

The services are `bot.services.build_services` with the real `Knowledge` (MiniLM, the embedded
index, the extractive generator) over the corpus in tests/conftest.py, indexed once per run and
copied into each test's data directory (`lore_settings`), the real embedded task client and the
real feedback store (SQLite under the data directory). The app is `bot.serve.web_app(services)`,
exactly what `lore serve` runs; HTTP tests drive it through httpx's ASGI transport, the browser
test through uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

REDIS_URL = os.environ.get("LORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN, ADMIN_PW = "ada", "correct horse battery"
REVIEWER, REVIEWER_PW = "rex", "staple paper clips"
REVIEWER2, REVIEWER2_PW = "rita", "blue sky morning"


@dataclass
class Lore:
    """The console app over real services, plus the feedback database it writes to."""

    settings: Any
    services: Any
    app: Any
    clients: list[WebClient] = field(default_factory=list)

    @property
    def console(self) -> Any:
        return self.app.state.console

    @property
    def db(self) -> Any:
        return self.console.db

    def cli(self, *args: str, input: str | None = None) -> Any:
        """Run `lore ARGS…` on this console's data directory (and database), as an operator would."""
        import logging

        from typer.testing import CliRunner

        from bot.cli import app

        config = self.settings.data_dir.parent / "lore.toml"
        database = f'[database]\nurl = "{self.settings.database.url}"\n' if self.settings.database.url else ""
        config.write_text(f'data_dir = "{self.settings.data_dir}"\n{database}')
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:  # `lore` sets up logging on streams CliRunner closes afterwards
            return CliRunner().invoke(app, ["--config", str(config), *args], input=input)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)

    def add_user(self, username: str, password: str, role: str = "reviewer") -> Any:
        from feedback.users import add_user

        return add_user(self.db.sessions, username, password, role)  # type: ignore[arg-type]

    def client(self, base_url: str = "http://lore.test") -> WebClient:
        c = WebClient(httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=base_url))
        self.clients.append(c)
        return c

    async def signed_in(self, username: str, password: str) -> WebClient:
        c = self.client()
        response = await c.login(username, password)
        assert response.status_code == 303, response.text
        return c

    def interaction(self, answer_id: str) -> Any:
        from sqlalchemy import select

        from feedback.models import Interaction

        with self.db.sessions() as s:
            return s.scalars(select(Interaction).where(Interaction.answer_id == answer_id)).one_or_none()

    def votes(self, answer_id: str) -> list[Any]:
        from sqlalchemy import select

        from feedback.models import Vote

        with self.db.sessions() as s:
            return list(s.scalars(select(Vote).where(Vote.answer_id == answer_id)))


@dataclass
class WebClient:
    http: httpx.AsyncClient
    token: str | None = None

    async def page(self, path: str) -> httpx.Response:
        response = await self.http.get(path)
        found = re.search(r'name="csrf-token" content="([^"]+)"', response.text)
        if found:
            self.token = found.group(1)
        return response

    async def csrf(self) -> str:
        if self.token is None:
            await self.page("/login")
        assert self.token
        return self.token

    async def login(self, username: str, password: str) -> httpx.Response:
        await self.page("/login")
        response = await self.form("/login", {"username": username, "password": password, "next": "/review"})
        if response.status_code == 303:
            await self.page("/review")  # a fresh session comes with a fresh CSRF token
        return response

    async def form(self, path: str, data: dict[str, Any], *, csrf: bool = True, **kw: Any) -> httpx.Response:
        body = {**data, "csrf_token": await self.csrf()} if csrf else data
        return await self.http.post(path, data=body, **kw)

    async def json(self, path: str, body: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        headers = {"X-CSRF-Token": await self.csrf()} if csrf else {}
        return await self.http.post(path, json=body, headers={**headers, "Accept": "application/json"})

    async def ask(self, question: str, conversation: str | None = None) -> dict[str, Any]:
        if self.token is None:
            await self.page("/chat")
        response = await self.json("/api/ask", {"question": question, "conversation": conversation})
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
async def make_lore(lore_settings: Callable[..., Any], embedder: Any) -> AsyncIterator[Callable[..., Lore]]:
    """`make_lore(engine=None, **settings overrides)` -> the console on real services (closed afterwards);
    `engine` replaces the answer engine, for failure tests."""
    from bot.serve import web_app
    from bot.services import build_services
    from knowledge.service import Knowledge

    built: list[Lore] = []

    def make(*, engine: Any = None, **over: Any) -> Lore:
        settings = lore_settings(**over)
        services = build_services(settings, knowledge=Knowledge(settings, embedder=embedder), engine=engine)
        lore = Lore(settings, services, web_app(services))
        built.append(lore)
        return lore

    yield make
    for lore in built:
        for c in lore.clients:
            await c.http.aclose()
        lore.console.exports.join(60)
        lore.console.promotions.join(120)
        await lore.services.aclose()
        lore.console.close()


@pytest.fixture
async def lore(make_lore: Callable[..., Lore]) -> Lore:
    """The console with an admin and two reviewers."""
    lore = make_lore()
    lore.add_user(ADMIN, ADMIN_PW, "admin")
    lore.add_user(REVIEWER, REVIEWER_PW, "reviewer")
    lore.add_user(REVIEWER2, REVIEWER2_PW, "reviewer")
    return lore


@pytest.fixture
async def lore_server(lore_settings: Callable[..., Any], embedder: Any) -> AsyncIterator[Callable[..., Any]]:
    """`await lore_server(engine=None, **settings overrides)` -> (base URL, settings, services):
    `lore serve`'s own coroutine (`bot.serve.serve`) on a real uvicorn socket at a free port,
    stopped afterwards. `engine(knowledge)` wraps the answer engine, for tests of what it says."""
    from bot.serve import serve
    from bot.services import build_services
    from knowledge.service import Knowledge

    running: list[tuple[asyncio.Event, asyncio.Task[Any]]] = []

    async def start(*, engine: Callable[[Any], Any] | None = None, **over: Any) -> tuple[str, Any, Any]:
        settings = lore_settings(**over)
        port = free_port()
        knowledge = Knowledge(settings, embedder=embedder)
        services = build_services(
            settings, knowledge=knowledge, engine=engine(knowledge) if engine is not None else None
        )
        stop = asyncio.Event()
        server = asyncio.create_task(
            serve(settings, slack=False, web=True, port=port, stop=stop, services=services)
        )
        running.append((stop, server))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base}/healthz")).status_code == 200:
                        break
                assert not server.done(), server.exception()
                await asyncio.sleep(0.05)
        return base, settings, services

    yield start
    for stop, server in running:
        stop.set()
        await asyncio.wait_for(server, 30)  # closes the services and the console
