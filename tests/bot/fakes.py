"""Test doubles for the core's ports, for unit tests of the core alone.

(The Slack tests use none of these: they run the real adapter, outbox and task client.) The
answer engine at the end is for the permission tests of the core alone: `AccessEngine` keeps
the engine's access contract over a handful of labelled documents.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core.messages import MessageRef, Reply, Target
from knowledge.access import Audience
from knowledge.answer import ABSTAIN_TEXT, Answer, Citation, RetrievedChunk, Turn
from workers.ports import SyncHandle, SyncStatus


@dataclass
class Sent:
    ref: MessageRef
    replies: list[Reply]  # the first is what was sent; later ones are updates

    @property
    def current(self) -> Reply:
        return self.replies[-1]


class MemoryOutbox:
    def __init__(self, max_message_len: int = 3000) -> None:
        self.max_message_len = max_message_len
        self.sent: list[Sent] = []
        self._ids = itertools.count(1)

    async def send(self, target: Target, reply: Reply) -> MessageRef:
        ref = MessageRef(target, target.channel, str(next(self._ids)))
        self.sent.append(Sent(ref, [reply]))
        return ref

    async def update(self, ref: MessageRef, reply: Reply) -> MessageRef:
        next(s for s in self.sent if s.ref == ref).replies.append(reply)
        return ref


@dataclass
class ListThreads:
    turns: list[Turn] = field(default_factory=list)
    fail: bool = False
    asked: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def history(self, channel: str, thread: str, *, before: str | None = None) -> list[Turn]:
        self.asked.append((channel, thread, before))
        if self.fail:
            raise ConnectionError("thread API down")
        return list(self.turns)


class MemoryTasks:
    """Records what the core hands to the workers; syncs follow a script of statuses."""

    def __init__(
        self, statuses: Sequence[SyncStatus] = (), handles: dict[str, SyncHandle] | None = None
    ) -> None:
        self.interactions: list[Any] = []
        self.votes: list[Any] = []
        self.escalations: list[Any] = []
        self.expert_replies: list[Any] = []
        self.requested: list[tuple[str, str | None]] = []
        self._statuses = list(statuses)
        self._handles = handles or {}
        self.fail_records = False

    def record_interaction(self, record: Any) -> None:
        if self.fail_records:
            raise ConnectionError("broker down")
        self.interactions.append(record)

    def record_vote(self, record: Any) -> None:
        self.votes.append(record)

    def record_escalation(self, record: Any) -> None:
        self.escalations.append(record)

    def record_expert_reply(self, record: Any) -> None:
        self.expert_replies.append(record)

    def request_sync(self, source: str, *, full: bool = False, requested_by: str | None = None) -> SyncHandle:
        self.requested.append((source, requested_by))
        return self._handles.get(source) or SyncHandle(task_id=f"task-{source}", source=source)

    def sync_status(self) -> SyncStatus:
        return self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]

    def close(self) -> None:
        pass


# ---- answer engines for the permission tests (issue 19) --------------------------------------


@dataclass(frozen=True)
class Doc:
    source: str
    path: str
    text: str
    access: tuple[str, ...] = ("public",)

    @property
    def title(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".md").replace("-", " ").title()


@dataclass
class EngineCall:
    question: str
    history: list[Turn]
    audience: Audience | None
    wider: Audience | None
    sources: list[str] | None


_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "is", "are", "what", "how", "do", "i", "in", "of", "to", "for", "my", "we"}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class AccessEngine:
    """A tiny answer engine that keeps issue 19's engine contract, for testing the core's
    decisions: it ranks `docs` by shared words, keeps only what `audience` may read (and only
    `sources`), answers with the best one's text, and counts in `withheld` the matches in the
    `wider` audience's top-k that `audience` may not read. It records every call."""

    def __init__(self, docs: Sequence[Doc], top_k: int = 5) -> None:
        self.docs = list(docs)
        self.top_k = top_k
        self.calls: list[EngineCall] = []

    def _ranked(self, question: str, audience: Audience | None, sources: Sequence[str] | None) -> list[Doc]:
        words = _words(question)
        scored = [
            (len(words & _words(d.text + " " + d.path)), i, d)
            for i, d in enumerate(self.docs)
            if (sources is None or d.source in sources) and (audience is None or audience.can_read(d.access))
        ]
        return [d for score, _, d in sorted(scored, key=lambda t: (-t[0], t[1])) if score > 0][: self.top_k]

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        audience: Audience | None = None,
        wider: Audience | None = None,
        sources: Sequence[str] | None = None,
    ) -> Answer:
        self.calls.append(
            EngineCall(
                question, list(history), audience, wider, list(sources) if sources is not None else None
            )
        )
        found = self._ranked(question, audience, sources)
        withheld = 0
        if wider is not None and audience is not None:
            withheld = sum(
                1 for d in self._ranked(question, wider, sources) if not audience.can_read(d.access)
            )
        chunks = [
            RetrievedChunk(
                chunk_id=f"{d.source}:{d.path}",
                doc_id=f"{d.source}:{d.path}",
                source=d.source,
                path=d.path,
                title=d.title,
                url=f"https://docs.example/{d.source}/{d.path}",
                text=d.text,
                score=1.0,
                doc_hash="h",
                n=n,
                access=list(d.access),
            )
            for n, d in enumerate(found, 1)
        ]
        citations = [
            Citation(
                n=c.n or 0, title=c.title, url=c.url, source=c.source, path=c.path, doc_id=c.doc_id, score=1.0
            )
            for c in chunks[:1]
        ]
        return Answer(
            question=question,
            text=f"{found[0].text} [1]" if found else f"{ABSTAIN_TEXT}.",
            abstained=not found,
            citations=citations,
            chunks=chunks,
            model="access-engine",
            prompt_version="test",
            audience=sorted(audience.grants) if audience else [],
            withheld=withheld,
        )
