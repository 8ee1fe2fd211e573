"""Issue 19's canary in worker-owner mode (`index.owner = "worker"`): the canary corpus's index
(tests/canary/corpus.py) owned by a real `lore worker -Q ingest` process at DEBUG (the session's
`canary_owner`, tests/canary/owner.py), and a chat side that never opens it. The 100 questions go
over the real Redis queue through `RemoteKnowledge` for unauthorised audiences (public, a channel
with the asker's rights as `wider`, an outsider), and some through the web chat on the chat side.
No marker in any answer, cited chunk, the owner's own log output or /metrics, the chat side's log
or its /metrics; the member of `secret` gets each marker.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.canary.checks import log_leaks, lore_logging_at_debug
from tests.canary.corpus import canary_source, spread
from tests.conftest import corpus_sources

pytestmark = [pytest.mark.redis, pytest.mark.worker]

SECRET, OUTSIDER = "slack:U0SECRET", "slack:U0OUTSIDER"


@pytest.mark.timeout(300)
async def test_the_canary_never_leaks_from_an_index_owning_worker(
    tmp_path: Path, canary_owner: Any, canary: Any, docs_dir: Path, caplog: Any
) -> None:
    from bot.serve import web_app
    from bot.services import build_services
    from config.settings import Settings
    from knowledge.access import PUBLIC_AUDIENCE, AccessPolicy

    owner = await canary_owner.ready()
    answered = owner.answered()
    # The chat side: another data directory, no index of its own.
    chat = Settings(
        data_dir=tmp_path / "chat-data",
        sources=[*corpus_sources(docs_dir), canary_source(canary.root)],
        groups={"secret": [SECRET]},
        llm={"provider": "extractive"},
        web={"address_per_minute": 1000},
        chat={"user_per_minute": 1000, "channel_per_minute": 1000},
        **owner.chat,
    )
    policy = AccessPolicy(chat)
    audiences = [
        ("public", PUBLIC_AUDIENCE, None),
        ("channel", policy.channel("slack", "C1"), policy.person([SECRET])),
        ("outsider", policy.person([OUTSIDER]), None),
    ]
    over_remote, over_chat = spread(canary.questions(), 5)[:4], spread(canary.questions(), 5)[4]
    over_remote = [q for path in over_remote for q in path]
    services = build_services(chat)
    assert getattr(services.knowledge, "remote", False)
    remote = services.knowledge
    answers = []
    try:
        with lore_logging_at_debug(chat, caplog) as log:
            for i, (q, _) in enumerate(over_remote):
                name, audience, wider = audiences[i % len(audiences)]
                answer = await asyncio.to_thread(remote.answer, q, audience=audience, wider=wider)
                answers.append((name, q, answer.model_dump_json()))
            leaked = [(name, q) for name, q, text in answers if canary.exposed(text)]
            assert leaked == [], leaked
            # A channel question from the member of `secret` left something out (what the
            # "Answer privately" button is offered on); the outsider's in a channel nothing.
            channel = await asyncio.to_thread(
                remote.answer, over_remote[0][0], audience=audiences[1][1], wider=policy.person([SECRET])
            )
            assert channel.withheld >= 1
            outsider = await asyncio.to_thread(
                remote.answer, over_remote[0][0], audience=audiences[1][1], wider=policy.person([OUTSIDER])
            )
            assert outsider.withheld == 0

            # The web chat on the chat side, not signed in.
            app = web_app(services)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://lore.test"
            ) as http:
                token = re.search(r'name="csrf-token" content="([^"]+)"', (await http.get("/chat")).text)
                assert token
                for q, _ in over_chat:
                    reply = await http.post(
                        "/api/ask", json={"question": q}, headers={"X-CSRF-Token": token.group(1)}
                    )
                    assert reply.status_code == 200, reply.text
                    answers.append(("web", q, reply.text))
                metrics = (await http.get("/metrics")).text
            assert logging.getLogger("workers").isEnabledFor(logging.DEBUG)  # the logs checked are DEBUG's

            # The member of `secret`: each marker, its restricted document cited.
            for _, c in canary.questions()[::5]:
                mine = await asyncio.to_thread(
                    remote.answer, f"what is the {c.subject}?", audience=policy.person([SECRET])
                )
                assert c.marker in mine.text and c.restricted_path in [x.path for x in mine.citations], (
                    c.subject
                )
    finally:
        await services.aclose()
    leaked = [(name, q) for name, q, text in answers if canary.exposed(text)]
    assert leaked == [], leaked
    assert len(answers) == 100
    assert canary.leaks(metrics) == []
    assert log_leaks(canary, caplog, log.getvalue()) == []

    assert " DEBUG " in owner.log() and owner.served(services, since=answered) >= 100, owner.proc.tail()
    assert await owner.exposed(canary) == [], owner.proc.tail()
