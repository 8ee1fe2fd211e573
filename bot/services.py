"""The composition root: settings -> Knowledge -> TaskClient -> ConversationService, built once.

`build_services(settings)` is the one place that picks the implementations: a local `Knowledge`,
or a `RemoteKnowledge` that asks the index owner (`index.owner = "worker"`); the Celery or the
in-process task client (`workers.client.make_task_client`); the state store; the access rules
(`bot.core.access.AccessRules`: the `AccessPolicy`, channel scoping, shared channels). Every
adapter and web router receives the `Services` (or the parts it needs) and never imports this module.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.settings import Settings

if TYPE_CHECKING:
    from bot.core.access import AccessRules
    from bot.core.conversation import ConversationService
    from bot.core.ports import KnowledgeBase, StateStore
    from knowledge.service import Knowledge
    from workers.ports import TaskClient


class StartupError(RuntimeError):
    """Lore cannot start as configured; the message says why, for the operator."""


@dataclass
class Services:
    """What every adapter shares. Build with `build_services`; `aclose()` when done."""

    settings: Settings
    knowledge: KnowledgeBase  # `Knowledge`, or a `RemoteKnowledge` with index.owner = "worker"
    tasks: TaskClient
    state: StateStore
    conversation: ConversationService

    @property
    def access(self) -> AccessRules:
        """Who may read what (`.policy` is the `AccessPolicy`), as the conversation core uses it."""
        return self.conversation.access

    async def aclose(self) -> None:
        self.conversation.close()
        close = getattr(self.state, "close", None)
        if close is not None:
            await close()
        await asyncio.to_thread(self.tasks.close)  # writes pending votes before returning
        await asyncio.to_thread(self.knowledge.close)


def knowledge_base(settings: Settings) -> KnowledgeBase:
    """The index as this process sees it: the owner's, asked over the `answer` queue, with
    index.owner = "worker" (this process never opens it); else a local `Knowledge`."""
    if settings.index.owner == "worker":
        from workers.client import remote_knowledge

        return remote_knowledge(settings)
    from knowledge.service import Knowledge

    return Knowledge(settings)


def build_services(
    settings: Settings,
    *,
    knowledge: KnowledgeBase | None = None,
    tasks: TaskClient | None = None,
    engine: Any = None,
) -> Services:
    """Settings -> Knowledge -> TaskClient -> ConversationService. `engine` replaces the answer
    engine (benchmarks and failure tests); by default it is the Knowledge itself."""
    from bot.core.access import AccessRules
    from bot.core.conversation import ConversationService
    from bot.core.ratelimit import make_rate_limiter
    from bot.core.state import make_state_store
    from feedback.identity import load_key, pseudonymize
    from workers.client import make_task_client

    kn = knowledge if knowledge is not None else knowledge_base(settings)
    task_client = tasks or make_task_client(settings, knowledge=local_knowledge(kn))
    key = load_key(settings)
    state = make_state_store(settings.redis, settings.data_dir)
    conversation = ConversationService(
        engine if engine is not None else kn,
        task_client,
        settings.chat,
        state=state,
        user_hash=lambda platform, user: pseudonymize(platform, user, key),
        sources=[s.name for s in settings.sources],
        reindex_timeout=settings.worker.sync_time_limit,
        limiter=make_rate_limiter(settings.chat, settings.redis),
        access=AccessRules.from_settings(settings),
        summarizer=getattr(kn, "summarize", None),  # the index owner's embedder and LLM
    )
    return Services(settings, kn, task_client, state, conversation)


def local_knowledge(knowledge: KnowledgeBase) -> Knowledge | None:
    """The in-process `Knowledge`, or None when the index is asked remotely (index.owner = worker)."""
    return None if getattr(knowledge, "remote", False) else knowledge  # type: ignore[return-value]
