"""Fixtures for the Slack adapter: the real Bolt app against `tests.emulators.slack.SlackEmulator`.

lore = await connect_slack()                    # Socket Mode, connected, as `lore slack` runs
ts = await lore.mention("how do I set up the VPN?")
answer = await lore.wait_answer(ts)

What people do and what Lore posted needs the emulator alone (`SlackPeople`, which `LoreSlack`
extends): tests/ops drive a `lore serve` process with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from tests.bot.conftest import own_knowledge
from tests.emulators.openai_chat import FixedLLM
from tests.emulators.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    Call,
    SlackEmulator,
    app_mention_event,
    block_action_payload,
    message_event,
)

SIGNING_SECRET = "test-signing-secret-123"
ADMIN = "U0ADMIN"
WORKSPACE_ADMIN = "U0OWNER"
USER = "U1"


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    users = {
        USER: {"name": "ada"},
        "U2": {"name": "bob"},
        WORKSPACE_ADMIN: {"name": "olga", "is_owner": True},
    }
    async with SlackEmulator(users=users) as emulator:
        yield emulator


@pytest.fixture
def slack_settings(slack: SlackEmulator, lore_settings: Callable[..., Any]) -> Callable[..., Any]:
    """`slack_settings(slack={...}, **overrides)` -> `lore_settings` with Slack configured against the
    emulator (tokens, signing secret, an admin); `slack` entries override those."""
    api_url = slack.base_url

    def make(*, slack: dict[str, Any] | None = None, **over: Any) -> Any:
        cfg = {
            "bot_token": BOT_TOKEN,
            "app_token": APP_TOKEN,
            "signing_secret": SIGNING_SECRET,
            "admin_users": [ADMIN],
            "api_retries": 3,
            "api_url": api_url,
        }
        return lore_settings(slack=cfg | (slack or {}), **over)

    return make


@dataclass
class SlackPeople:
    """What people do in the Slack emulator, and what Lore posted there: all a test needs when
    Lore runs elsewhere (a `lore serve` process, tests/ops)."""

    slack: SlackEmulator

    def next_ts(self) -> str:
        return self.slack.next_ts()

    async def mention(
        self,
        text: str = "how do I set up the VPN?",
        *,
        user: str = USER,
        channel: str = "C1",
        thread_ts: str | None = None,
        **kw: Any,
    ) -> str:
        ts = self.next_ts()
        event = app_mention_event(f"<@{BOT_USER_ID}> {text}", user, channel, ts, thread_ts)
        await self.slack.send_event(event, **kw)
        return ts

    async def say(
        self,
        text: str,
        *,
        user: str = USER,
        channel: str = "C1",
        thread_ts: str | None = None,
        channel_type: str = "channel",
        **kw: Any,
    ) -> str:
        ts = self.next_ts()
        event = message_event(text, user, channel, ts, thread_ts=thread_ts, channel_type=channel_type)
        await self.slack.send_event(event, **kw)
        return ts

    def progress_posts(self, thread_ts: str | None, channel: str = "C1") -> list[Call]:
        return [
            c
            for c in self.slack.calls_to("chat.postMessage")
            if c.args.get("channel") == channel and c.args.get("thread_ts") == thread_ts and c.status == 200
        ]

    def posted(self, channel: str = "C1", thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Lore's messages in a thread (or at the top level when `thread_ts` is None), in order."""
        return [
            m
            for m in self.slack.messages.get(channel, [])
            if m.get("user") == BOT_USER_ID and m.get("thread_ts") == thread_ts
        ]

    def answers(self, channel: str = "C1", thread_ts: str | None = None) -> list[Call]:
        """chat.update calls that put an answer (with vote buttons) into this thread's messages."""
        mine = {m["ts"] for m in self.slack.messages.get(channel, []) if m.get("thread_ts") == thread_ts}
        return [
            c
            for c in self.slack.calls_to("chat.update")
            if c.status == 200
            and c.args.get("channel") == channel
            and c.args.get("ts") in mine
            and has_buttons(c.args)
        ]

    async def wait_answer(self, thread_ts: str | None, channel: str = "C1", timeout: float = 20) -> Call:  # noqa: ASYNC109
        await self.slack.wait_until(
            lambda: bool(self.answers(channel, thread_ts)), timeout, f"an answer in {channel}/{thread_ts}"
        )
        return self.answers(channel, thread_ts)[0]


@dataclass
class LoreSlack(SlackPeople):
    """Lore's real Slack adapter connected to the emulator, with helpers to drive it."""

    settings: Any
    services: Any
    adapter: Any
    handler: Any = None
    _db: Any = None
    closed: bool = False

    async def stop(self) -> None:
        """Shut down as `lore slack` does (disconnect, drain, close), then the services. Calling
        `connect_slack()` again afterwards is a restart over the same data directory."""
        if self.closed:
            return
        self.closed = True
        if self.handler is not None:
            await self.handler.close_async()
        await self.adapter.drain(10)
        await self.adapter.close()
        await self.services.aclose()
        if self._db is not None:
            self._db.dispose()

    # ---- the real feedback store (what the embedded task client wrote) ----------------------

    @property
    def db(self) -> Any:
        if self._db is None:
            from feedback.db import Database

            self._db = Database.from_settings(self.settings)
            self._db.ensure_schema()
        return self._db

    def interaction(self, answer_id: str) -> Any:
        from sqlalchemy import select

        from feedback.models import Interaction

        with self.db.sessions() as session:
            return session.scalars(
                select(Interaction).where(Interaction.answer_id == answer_id)
            ).one_or_none()

    def current_vote(self, answer_id: str, user: str) -> Any:
        from feedback.store import current_vote

        return current_vote(self.db.sessions, answer_id, self.user_hash(user))

    def vote_events(self, answer_id: str) -> list[Any]:
        from sqlalchemy import select

        from feedback.models import VoteEvent

        with self.db.sessions() as session:
            return list(session.scalars(select(VoteEvent).where(VoteEvent.answer_id == answer_id)))

    def user_hash(self, user: str) -> str:
        from feedback.identity import load_key, pseudonymize

        return pseudonymize("slack", user, load_key(self.settings))

    async def settle(self, seconds: float = 0.3) -> None:
        """Let background work that should NOT produce anything have its chance to."""
        await asyncio.sleep(seconds)
        await self.adapter.drain(10)


def share_click(slack: SlackEmulator, share_value: str, *, name: str = "share") -> dict[str, Any]:
    """USER clicking "Share in channel" on their ephemeral /ask answer (Slack sends no message
    for an ephemeral one); Lore answers through the response_url called `name`."""
    return block_action_payload(
        "lore_share",
        share_value,
        USER,
        "C1",
        "1700000000.000009",
        response_url=slack.new_response_url(name),
        is_ephemeral=True,
    )


def has_buttons(args: dict[str, Any]) -> bool:
    return any(b.get("type") == "actions" for b in args.get("blocks") or [])


def block_texts(args: dict[str, Any]) -> str:
    out = []
    for block in args.get("blocks") or []:
        if block.get("text"):
            out.append(block["text"]["text"])
        for el in block.get("elements") or []:
            if isinstance(el, dict) and el.get("text"):
                out.append(el["text"] if isinstance(el["text"], str) else el["text"]["text"])
    return "\n".join(out)


def button_values(args: dict[str, Any]) -> list[str]:
    return [
        el["value"] for b in args.get("blocks") or [] if b.get("type") == "actions" for el in b["elements"]
    ]


@pytest.fixture
async def connect_slack(
    slack: SlackEmulator, slack_settings: Callable[..., Any], embedder: Any
) -> AsyncIterator[Callable[..., Any]]:
    """`await connect_slack(engine=None, slack_cfg={...}, chat={...})` -> LoreSlack over Socket Mode.

    After `lore.stop()`, calling it again is a restart: a new process's worth of objects
    (adapter, Knowledge, task client, state) over the same data directory."""
    from bot.services import build_services
    from bot.slack.app import build_slack_app

    opened: list[LoreSlack] = []

    async def connect(
        *, engine: Any = None, slack_cfg: dict[str, Any] | None = None, **over: Any
    ) -> LoreSlack:
        settings = slack_settings(slack=slack_cfg, **over)
        kn = own_knowledge(settings, embedder)
        services = build_services(settings, knowledge=kn, engine=engine if engine is not None else kn)
        adapter = build_slack_app(settings, services.conversation)
        lore = LoreSlack(slack, settings, services, adapter)
        opened.append(lore)
        await adapter.start()  # auth.test, and the pooled HTTP session, as `lore slack` does
        lore.handler = AsyncSocketModeHandler(adapter.app, APP_TOKEN)
        await lore.handler.connect_async()
        await slack.wait_connected()
        return lore

    yield connect
    for lore in opened:
        await lore.stop()


def ts_after(ts: str, seconds: int = 1) -> str:
    return f"{Decimal(ts) + seconds:.6f}"


@pytest.fixture
async def fixed_llm() -> AsyncIterator[FixedLLM]:
    async with FixedLLM() as llm:
        yield llm


@pytest.fixture
async def make_http_lore(
    slack: SlackEmulator, slack_settings: Callable[..., Any], make_services: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    """`await make_http_lore(engine=None, slack_cfg={...}, **settings)` -> LoreSlack in HTTP mode:
    the real Bolt app inside Lore's web app, reached with signed requests through `lore.http`."""
    import httpx

    from bot.serve import slack_adapter, web_app

    started: list[tuple[Any, Any, LoreSlack]] = []

    async def make(
        engine: Any = None, slack_cfg: dict[str, Any] | None = None, **overrides: Any
    ) -> LoreSlack:
        settings = slack_settings(slack={"mode": "http"} | (slack_cfg or {}), **overrides)
        services = make_services(settings, **({"engine": engine} if engine is not None else {}))
        adapter = slack_adapter(services)
        await adapter.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web_app(services, slack=adapter)), base_url="http://lore"
        )
        lore = LoreSlack(slack, settings, services, adapter)
        lore.http = client
        started.append((adapter, client, lore))
        return lore

    yield make
    for adapter, client, lore in started:
        await client.aclose()
        await adapter.drain(10)
        await adapter.close()
        if lore._db is not None:
            lore._db.dispose()
