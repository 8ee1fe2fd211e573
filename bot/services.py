"""The composition root: settings -> Knowledge -> TaskClient -> ConversationService, built once.

`build_services(settings)` is the one place that picks the implementations: a local `Knowledge`,
or a `RemoteKnowledge` that asks the index owner (`index.owner = "worker"`); the Celery or the
in-process task client (`workers.client.make_task_client`); the state store; the access rules
(`bot.core.access.AccessRules`: the `AccessPolicy`, channel scoping, shared channels). Every
adapter and web router receives the `Services` (or the parts it needs) and never imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
    from feedback.generators import lookup
    from knowledge.service import Knowledge

    return Knowledge(settings, served=lookup(settings))  # a promoted answer model serves without a restart


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
    from bot.core.autoanswer import AutoAnswers
    from bot.core.conversation import ConversationService
    from bot.core.escalation import Escalations, ExpertRouter
    from bot.core.ratelimit import make_rate_limiter
    from bot.core.state import make_state_store
    from feedback.identity import load_key, pseudonymize
    from workers.client import make_task_client

    kn = knowledge if knowledge is not None else knowledge_base(settings)
    task_client = tasks or make_task_client(settings, knowledge=local_knowledge(kn))
    key = load_key(settings)
    state = make_state_store(settings.redis, settings.data_dir)

    def user_hash(platform: str, user: str) -> str:
        return pseudonymize(platform, user, key)

    access = AccessRules.from_settings(settings)
    limiter = make_rate_limiter(settings.chat, settings.redis)
    watched = settings.slack.auto_answer or settings.discord.auto_answer
    detect = question_detector(kn) if watched else None
    auto = AutoAnswers.from_settings(settings, state, windows=limiter.windows, detect=detect)
    conversation = ConversationService(
        engine if engine is not None else kn,
        task_client,
        settings.chat,
        state=state,
        user_hash=user_hash,
        sources=[s.name for s in settings.sources],
        reindex_timeout=settings.worker.sync_time_limit,
        limiter=limiter,
        access=access,
        escalation=Escalations(
            ExpertRouter(settings.escalation),
            task_client,
            state,
            user_hash,
            access,
            keep_ttl=settings.chat.answer_ttl,
            watch_ttl=settings.chat.thread_ttl,
        ),
        auto=auto,
        summarizer=getattr(kn, "summarize", None),  # the index owner's embedder and LLM
    )
    return Services(settings, kn, task_client, state, conversation)


def question_detector(knowledge: KnowledgeBase) -> Callable[[str], bool]:
    """The auto-answer question detector (knowledge/questions.py) on MiniLM: the index's own
    embedder when this process has it and it is MiniLM, else one of its own, loaded at first use."""
    import threading

    from config.settings import EmbeddingSettings
    from knowledge.embeddings import Embedder, build_embedder
    from knowledge.questions import QuestionDetector

    lock = threading.Lock()
    loaded: list[Embedder] = []

    def embedder() -> Embedder:
        with lock:
            if not loaded:
                local = local_knowledge(knowledge)
                mine = local.settings.embedding if local is not None else None
                if local is not None and mine is not None and mine.provider == "local" and not mine.model:
                    loaded.append(local.embedder)  # all-MiniLM-L6-v2 from its package, already loaded
                else:
                    loaded.append(build_embedder(EmbeddingSettings()))
            return loaded[0]

    detector = QuestionDetector(lambda texts: embedder().query_model.get_text_embedding_batch(list(texts)))
    return lambda text: detector.detect(text).is_question


def local_knowledge(knowledge: KnowledgeBase) -> Knowledge | None:
    """The in-process `Knowledge`, or None when the index is asked remotely (index.owner = worker)."""
    return None if getattr(knowledge, "remote", False) else knowledge  # type: ignore[return-value]
