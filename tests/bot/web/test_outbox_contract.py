"""The shared Outbox contract suite (tests/bot/contract), run against the web chat's `WebOutbox`."""

from __future__ import annotations

import pytest

from bot.core.messages import Target
from bot.web.chat import WebOutbox, reply_view
from tests.bot.contract.conftest import Delivered, OutboxHarness
from tests.bot.contract.test_outbox_contract import *  # noqa: F403 - the suite itself


@pytest.fixture
async def outbox_factory():
    outbox = WebOutbox()

    async def delivered() -> list[Delivered]:
        shown = []
        for message in outbox.messages:
            view = reply_view(message.reply)
            text = "\n".join([view["text"], *(s["title"] for s in view.get("sources", []))])
            if view["kind"] == "error":
                text += f" (reference {view['correlation_id']})"
            shown.append(Delivered(message.ref.id, text, bool(view.get("feedback"))))
        return shown

    yield OutboxHarness(
        "web",
        outbox,
        Target("conversation-1", user="U1"),
        Target("conversation-1", thread="conversation-1", user="U1"),
        delivered,
        lambda: list(outbox.messages),
    )
