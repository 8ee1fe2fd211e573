"""Fixtures for the bot's tests: the conversation core and every adapter.

The answer engine is the real `Knowledge` (Qdrant local mode, MiniLM, the extractive generator)
over the corpus in tests/conftest.py, indexed once per run and copied into each test's data
directory (`lore_settings`). The task client is the real embedded one (SQLite under the test's
data directory). Each adapter's folder (`slack/`, `discord/`, `web/`) adds its emulator and a
harness that drives the real adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest


def own_knowledge(settings: Any, embedder: Any) -> Any:
    """The chat process's own `Knowledge` on the session's embedder; None with index.owner =
    "worker", where `build_services` asks the owning worker through `RemoteKnowledge`."""
    from knowledge.service import Knowledge

    return None if settings.index.owner == "worker" else Knowledge(settings, embedder=embedder)


@pytest.fixture
async def make_services(embedder: Any) -> AsyncIterator[Callable[..., Any]]:
    """`bot.services.build_services` with the session's embedder; closed after the test."""
    from bot.services import Services, build_services

    built: list[Services] = []

    def make(settings: Any, **kwargs: Any) -> Services:
        kwargs.setdefault("knowledge", own_knowledge(settings, embedder))
        kwargs.setdefault("engine", kwargs["knowledge"])
        services = build_services(settings, **kwargs)
        built.append(services)
        return services

    yield make
    for services in built:
        await services.aclose()
