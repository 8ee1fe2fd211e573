"""The web chat: a third adapter on the conversation core, beside Slack and Discord.

The page posts a question with fetch (`POST /api/ask`). The route translates it into an
`IncomingMessage(platform="web", is_direct=True)` and hands it to `ConversationService` with a
`WebOutbox` that captures the replies (progress, answer parts, errors, notices) instead of
sending them anywhere; the captured answer goes back as JSON, rendered by the page's small
script. Votes (`POST /api/vote`) go through `ConversationService.vote`, so they reach the same
feedback store through the same task client as Slack's.

A browser conversation is its own "channel" (a random id), so follow-ups get the earlier turns
as context (`WebThreadReader`, kept in the state store), and rate limits apply per person and per
conversation. The author is the signed-in user, or an anonymous per-browser id when the chat is
public; the core pseudonymises it before anything is recorded, and no raw id is stored. A fresh
browser id costs nothing (drop the cookie), so anonymous questions also count against a budget
per client address (`web.address_per_minute`), shared by every replica when Redis is configured.

Permissions (docs/permissions.md): the chat is private to the person, so the core answers with
their own rights: a signed-in user is the principal `web:<username>`, an anonymous one has none
(public content only). Admins, and only admins (checked here, against the session's user), may
"view as" another principal (`IncomingMessage.view_as`): the core answers exactly as it would
answer them, and the reply says whose view it is and how many matches it left out. A view-as
conversation never mixes with the admin's own: changing the view starts a new one.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bot.core.conversation import VoteInput
from bot.core.messages import (
    AnswerReply,
    ErrorReply,
    IncomingMessage,
    MessageRef,
    Notice,
    Progress,
    Reply,
    Target,
)
from bot.core.ports import StateStore, Surface, UnsupportedReply
from bot.core.ratelimit import Budget
from bot.core.render import rate_limited_text
from bot.web.context import Console
from bot.web.markdown import render_markdown, safe_href
from bot.web.security import client_address
from feedback.schema import VOTE_REASONS
from feedback.users import User
from knowledge.access import AccessPolicy, Audience
from knowledge.answer import Answer, Turn

log = logging.getLogger(__name__)

PLATFORM = "web"
MAX_QUESTION = 2000
MAX_TURNS_KEPT = 20
MAX_PRINCIPAL = 200
VIEW_AS_REFUSED = "Only admins can view answers as someone else. Sign in as an admin, or ask without it."


@dataclass
class WebMessage:
    ref: MessageRef
    reply: Reply
    updates: int = 0


@dataclass
class WebOutbox:
    """`Outbox` that keeps what would be shown, in order, for the HTTP response to return."""

    max_message_len: int = 12_000
    messages: list[WebMessage] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def send(self, target: Target, reply: Reply) -> MessageRef:
        _check(reply)
        ref = MessageRef(target, target.channel, f"web-{next(self._ids)}")
        self.messages.append(WebMessage(ref, reply))
        return ref

    async def update(self, ref: MessageRef, reply: Reply) -> MessageRef:
        _check(reply)
        for message in self.messages:
            if message.ref.id == ref.id:
                message.reply, message.updates = reply, message.updates + 1
                return ref
        raise KeyError(f"no web message {ref.id}")

    def answer_parts(self) -> list[AnswerReply]:
        return [m.reply for m in self.messages if isinstance(m.reply, AnswerReply)]

    def notices(self) -> list[str]:
        return [m.reply.text for m in self.messages if isinstance(m.reply, Notice)]

    def errors(self) -> list[ErrorReply]:
        return [m.reply for m in self.messages if isinstance(m.reply, ErrorReply)]


def _check(reply: Reply) -> None:
    if not isinstance(reply, Progress | AnswerReply | ErrorReply | Notice):
        raise UnsupportedReply(f"the web chat cannot show {type(reply).__name__}")


def reply_view(reply: Reply) -> dict[str, Any]:
    """A reply as the page shows it (also what the Outbox contract tests read back)."""
    if isinstance(reply, AnswerReply):
        a = reply.answer
        sources = (
            [
                {
                    "n": c.n,
                    "title": c.title,
                    "url": c.url,
                    "href": safe_href(c.url),
                    "updated": c.updated_at[:10] if c.updated_at else "",
                }
                for c in a.citations
            ]
            if reply.is_last
            else []
        )
        return {
            "kind": "answer",
            "text": reply.text,
            "html": str(render_markdown(reply.text, cite_prefix=f"src-{a.answer_id[:12]}-")),
            "sources": sources,
            "feedback": reply.is_last,
        }
    if isinstance(reply, ErrorReply):
        return {"kind": "error", "text": reply.text, "correlation_id": reply.correlation_id}
    if isinstance(reply, Notice):
        return {"kind": "notice", "text": reply.text}
    if isinstance(reply, Progress):
        return {"kind": "progress", "text": reply.text}
    # The console has no experts to ask (no `Surface.experts`): nothing sends it these.
    raise UnsupportedReply(f"the web chat cannot render {type(reply).__name__}")


class WebThreadReader:
    """The earlier turns of a browser conversation, kept in the shared state store."""

    def __init__(self, state: StateStore, ttl: float) -> None:
        self.state, self.ttl = state, ttl

    @staticmethod
    def key(conversation: str) -> str:
        return f"web:turns:{conversation}"

    async def load(self, conversation: str) -> dict[str, Any]:
        raw = await self.state.get(self.key(conversation))
        return json.loads(raw) if raw else {"owner": None, "view": None, "turns": []}

    async def history(self, channel: str, thread: str, *, before: str | None = None) -> list[Turn]:
        data = await self.load(thread)
        return [Turn(role=t["role"], text=t["text"]) for t in data.get("turns", [])]

    async def append(
        self, conversation: str, owner: str, question: str, answer: str, view: str | None = None
    ) -> None:
        """`view`: whose view the turns were answered in (an admin's view-as), None for their own."""
        data = await self.load(conversation)
        turns = [
            *data.get("turns", []),
            {"role": "user", "text": question},
            {"role": "assistant", "text": answer},
        ]
        kept = {"owner": owner, "view": view, "turns": turns[-MAX_TURNS_KEPT:]}
        await self.state.put(self.key(conversation), json.dumps(kept), self.ttl)


class AskBody(BaseModel):
    question: str = Field(max_length=MAX_QUESTION)
    conversation: str | None = Field(default=None, pattern=r"^[a-f0-9]{32}$")
    view_as: str | None = Field(default=None, max_length=MAX_PRINCIPAL)  # admins only


def principals_of(user: User | None) -> frozenset[str]:
    """Who a console user is, for permissions: `web:<username>` (`[groups]` may list it)."""
    return frozenset({f"web:{user.username}"}) if user is not None else frozenset()


def view_as_choices(settings: Any) -> list[str]:
    """Suggestions for an admin's "view as" field: public, every group and its members, and the
    people and channels access lists name (any other principal can be typed)."""
    found = {"public", *(f"group:{g}" for g in settings.groups)}
    found.update(m for members in settings.groups.values() for m in members if "*" not in m)
    for src in settings.sources:
        for access in [src.access, *(rule.access for rule in src.access_rules)]:
            found.update(access)
    return sorted(found, key=lambda p: (p != "public", not p.startswith("group:"), p))


def view_note(principal: str, viewed: Audience, answer: Answer) -> dict[str, Any]:
    """What the page shows above a view-as answer: whose view, with which grants, what was left out."""
    grants = answer.audience or sorted(viewed.grants)
    n = answer.withheld
    left = f"{n} match{'es' if n != 1 else ''} left out" if n else "nothing left out"
    return {
        "as": principal,
        "audience": grants,
        "withheld": n,
        "text": f"Viewing as {principal} (reads {', '.join(grants)}): {left}.",
    }


class VoteBody(BaseModel):
    answer_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    value: str = Field(pattern=r"^(up|down)$")
    reason: str | None = None
    correction: str | None = Field(default=None, max_length=4000)


def chat_router(console: Console) -> APIRouter:
    router = APIRouter()
    services = console.services
    settings = services.settings
    threads = WebThreadReader(services.state, settings.chat.thread_ttl)

    policy = AccessPolicy(settings)

    async def author_of(request: Request) -> str | None:
        """Who is chatting: the signed-in user, or (public chat) this browser's anonymous id.
        None when the chat is private and nobody is signed in."""
        user = await run_in_threadpool(console.user, request)
        if user is not None:
            return f"user:{user.id}"
        if settings.web.private_chat:
            return None
        anon = request.session.get("anon")
        if not isinstance(anon, str):
            anon = uuid.uuid4().hex
            request.session["anon"] = anon
        return f"anon:{anon}"

    @router.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/chat", status_code=303)

    @router.get("/chat", response_class=HTMLResponse)
    async def chat_page(request: Request) -> Response:
        if await author_of(request) is None:
            return RedirectResponse("/login?next=/chat", status_code=303)
        user = getattr(request.state, "user", None)
        choices = view_as_choices(settings) if isinstance(user, User) and user.is_admin else []
        return console.page(request, "chat.html", reasons=VOTE_REASONS, view_as_choices=choices)

    @router.post("/api/ask")
    async def ask(request: Request, body: AskBody) -> Response:
        author = await author_of(request)
        if author is None:
            return JSONResponse({"error": "sign in to use the chat"}, status_code=401)
        question = body.question.strip()
        if not question:
            return JSONResponse({"error": "ask a question"}, status_code=400)
        user = await run_in_threadpool(console.user, request)  # the one author_of read (cached)
        view_as = (body.view_as or "").strip() or None
        viewed: Audience | None = None
        if view_as is not None:
            if user is None or not user.is_admin:
                who = f"reviewer {user.username}" if user is not None else "an anonymous user"
                log.warning("refused view-as from %s (admins only)", who)
                return JSONResponse({"status": "refused", "error": VIEW_AS_REFUSED}, status_code=403)
            try:
                viewed = policy.principal(view_as)
            except ValueError as exc:
                return JSONResponse(
                    {"status": "refused", "error": f"Can't view as that: {exc}"}, status_code=400
                )
            log.info("admin %s asks as %s", user.username, viewed.label)
        if author.startswith("anon:"):
            budget = Budget(f"web:addr:{client_address(request)}", settings.web.address_per_minute, 60)
            refused = await console.windows.take(budget)
            if refused is not None:
                wait = max(1, math.ceil(refused.wait))
                return JSONResponse(
                    {"status": "rate_limited", "error": rate_limited_text("user", wait)},
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
        owner = console.user_hash(author)
        conversation = body.conversation
        if conversation is not None:
            kept = await threads.load(conversation)
            if kept.get("owner") not in (None, owner):
                conversation = None  # not theirs: start afresh rather than read someone else's thread
            elif kept.get("turns") and kept.get("view") != view_as:
                conversation = None  # another view's turns would answer from what this one can't read
        is_follow_up = conversation is not None
        conversation = conversation or uuid.uuid4().hex
        msg = IncomingMessage(
            platform=PLATFORM,
            channel=conversation,
            message_id=uuid.uuid4().hex,
            author=author,
            text=question,
            thread=conversation if is_follow_up else None,
            reply_thread=conversation,
            is_direct=True,
            principals=principals_of(user),
            view_as=view_as,
        )
        outbox = WebOutbox()
        started = time.perf_counter()
        outcome = await services.conversation.handle_message(msg, Surface(PLATFORM, outbox, threads))
        wall_ms = round((time.perf_counter() - started) * 1000, 1)
        parts = outbox.answer_parts()
        if outcome.status == "answered" and parts:
            answer = parts[-1].answer
            await services.state.put(f"web:answer:{answer.answer_id}", owner, settings.chat.answer_ttl)
            await threads.append(conversation, owner, question, answer.text, view_as)
            views = [reply_view(p) for p in parts]
            extra = {"view": view_note(view_as, viewed, answer)} if view_as and viewed else {}
            return JSONResponse(
                {
                    **extra,
                    "status": "answered",
                    "answer_id": answer.answer_id,
                    "conversation": conversation,
                    "html": "\n".join(v["html"] for v in views),
                    "text": "\n\n".join(p.text for p in parts),
                    "sources": views[-1]["sources"],
                    "abstained": answer.abstained,
                    "notice": answer.notice,
                    "model": answer.model,
                    "timings": {**answer.timings.model_dump(), "wall_ms": wall_ms},
                }
            )
        errors, notices = outbox.errors(), outbox.notices()
        if outcome.status == "rate_limited":
            return JSONResponse({"status": "rate_limited", "error": " ".join(notices)}, status_code=429)
        if errors or outcome.status == "failed":
            text = errors[-1].text if errors else f"Sorry, something went wrong ({outcome.correlation_id})."
            return JSONResponse({"status": "failed", "error": text}, status_code=502)
        return JSONResponse(
            {"status": outcome.status, "error": " ".join(notices) or outcome.reason}, status_code=400
        )

    @router.post("/api/vote")
    async def vote(request: Request, body: VoteBody) -> Response:
        author = await author_of(request)
        if author is None:
            return JSONResponse({"error": "sign in to use the chat"}, status_code=401)
        owner = await services.state.get(f"web:answer:{body.answer_id}")
        if owner != console.user_hash(author):
            raise HTTPException(404, "no such answer in this browser's conversation")
        reason = body.reason if body.reason in VOTE_REASONS else None
        outbox = WebOutbox()
        target = Target(channel=f"vote-{body.answer_id}", user=author, ephemeral=True)
        record = await services.conversation.vote(
            VoteInput(
                platform=PLATFORM,
                user=author,
                answer_id=body.answer_id,
                value=body.value,  # type: ignore[arg-type]
                reason=reason if body.value == "down" else None,
                correction=(body.correction or None) if body.value == "down" else None,
            ),
            Surface(PLATFORM, outbox),
            target,
        )
        if record is None:
            return JSONResponse({"ok": False, "error": " ".join(outbox.notices())}, status_code=502)
        return JSONResponse({"ok": True, "message": " ".join(outbox.notices()), "vote_id": record.vote_id})

    return router
