"""Sessions, CSRF, sign-in throttling and role checks for the web console.

- **Sessions**: Starlette's signed-cookie session (itsdangerous) named `lore_session`: HttpOnly,
  SameSite=Lax, `Secure` when `web.secure_cookies`. It holds a random session token (`sid`), the
  CSRF token and, for the public chat, an anonymous per-browser id. The token names a server-side
  row (`feedback.users`: its hash, the user, when it started, last seen, revoked), read with the
  user and their role on every request: signing out revokes the row, so a copied cookie stops
  working too; a password or role reset, removing the user and `lore users sessions revoke` end
  all that user's sessions at once; and a session ends `web.session_hours` after sign-in. The
  signing key is `web.session_secret`, else one generated once and kept in `data_dir/session.key`
  (0600).
- **CSRF**: one random token per session. `CSRFMiddleware` refuses every POST/PUT/PATCH/DELETE
  (except Slack's own signed routes) unless the token arrives as the `csrf_token` form field or
  the `X-CSRF-Token` header (what the console's fetch calls send), and refuses cross-site
  `Origin`s. It runs before any route, so a new form cannot forget it.
- **Body size**: `BodyLimitMiddleware` answers 413 to any request body over `MAX_BODY`, by its
  Content-Length before anything is read, or counted as it arrives when it has none (chunked).
- **Throttling**: failed sign-ins per username and per client address within `web.login_window`
  seconds, on the same shared windows as the chat's rate limits (`bot.core.ratelimit`: Redis when
  configured, so every replica counts the same failures). The client address is the connection's,
  or the `X-Forwarded-For` one only from `web.trusted_proxies` (`client_address`).
- **Roles**: `require_reviewer` / `require_admin` dependencies on whole routers; signed-out
  browsers are redirected to /login, API calls get 401, the wrong role gets 403.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.core.ratelimit import Budget, Windows
from config.settings import Settings
from feedback.users import User

log = logging.getLogger(__name__)

SESSION_COOKIE = "lore_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SAFE = {"GET", "HEAD", "OPTIONS", "TRACE"}
# No request has a reason to be larger: questions are capped far below it, and Slack's own
# payloads are a few kilobytes. Forms (read by the CSRF check) and every other body alike.
MAX_BODY = 2 * 1024 * 1024


def load_session_secret(settings: Settings) -> str:
    """`web.session_secret`, else a key generated once in `data_dir/session.key` (mode 0600)."""
    if settings.web.session_secret is not None:
        return settings.web.session_secret.get_secret_value()
    path = settings.data_dir / "session.key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # atomic; if another process won the race, use theirs
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
    finally:
        tmp.unlink()
    return key


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


class CSRFMiddleware:
    """Refuse state-changing requests without this session's CSRF token (pure ASGI; runs inside
    the session middleware). Form bodies are read here and replayed to the route unchanged."""

    def __init__(self, app: ASGIApp, *, exempt_prefixes: tuple[str, ...] = ("/slack/",)) -> None:
        self.app = app
        self.exempt = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _same_origin(headers):
            log.warning("refused a cross-site %s %s", scope["method"], scope["path"])
            await _refuse(scope, receive, send, "cross-site request refused")
            return
        expected = (scope.get("session") or {}).get("csrf")
        token = headers.get(CSRF_HEADER)
        replay: list[Message] = []
        content_type = headers.get("content-type", "")
        if token is None and content_type.startswith("application/x-www-form-urlencoded"):
            body = b""
            while True:
                message = await receive()
                replay.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if len(body) > MAX_BODY:
                    await _refuse(scope, receive, send, "form too large", status=413)
                    return
                if not message.get("more_body", False):
                    break
            values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get(CSRF_FIELD)
            token = values[0] if values else None
        if not expected or not token or not _same_token(str(expected), token):
            log.warning("refused %s %s: missing or wrong CSRF token", scope["method"], scope["path"])
            await _refuse(
                scope, receive, send, "missing or invalid CSRF token: reload the page and try again"
            )
            return
        if not replay:
            await self.app(scope, receive, send)
            return

        async def replayed() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)


def _same_token(expected: str, given: str) -> bool:
    # Compared as bytes: compare_digest refuses non-ASCII str (a TypeError, so a 500 any visitor
    # could cause), and whatever a client sends must be just a wrong token.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _same_origin(headers: Headers) -> bool:
    origin = headers.get("origin")
    if not origin or origin == "null":
        return origin is None  # an opaque ("null") origin is never ours
    return urlsplit(origin).netloc == headers.get("host", "")


class _TooLarge(Exception):
    """Raised into the route that reads past the limit, so it stops reading."""


class BodyLimitMiddleware:
    """413 for a request body over `limit` bytes, on every route (pure ASGI, outermost): by its
    Content-Length before the route runs, else counted chunk by chunk as the route reads it."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:  # a malformed one: the server's 400
            await self._too_large(scope, receive, send)
            return
        received = 0
        over = answered = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def replacing_send(message: Message) -> None:
            # FastAPI turns any error while it parses a body into its own 400: once the body
            # went over, whatever the route answers is replaced by the 413.
            nonlocal answered
            if not over:
                answered = answered or message["type"] == "http.response.start"
                await send(message)
            elif not answered:
                answered = True
                await self._too_large(scope, receive, send)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counting_receive, replacing_send)
        if over and not answered:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.warning("refused %s %s: body over %d bytes", scope["method"], scope["path"], self.limit)
        why = f"request body too large (at most {self.limit} bytes)"
        await _refuse(scope, receive, send, why, status=413)


async def _refuse(scope: Scope, receive: Receive, send: Send, why: str, *, status: int = 403) -> None:
    accept = Headers(scope=scope).get("accept", "")
    response: Response
    if "application/json" in accept or scope["path"].startswith("/api/"):
        response = JSONResponse({"error": why}, status_code=status)
    else:
        response = PlainTextResponse(f"Refused: {why}.", status_code=status)
    await response(scope, receive, send)


# ---- sign-in throttling ---------------------------------------------------------------------


class LoginThrottle:
    """At most `attempts` failed sign-ins per username and per address (5x as many) per `window`
    seconds; then sign-ins for that key wait until the oldest failure leaves the window."""

    def __init__(self, windows: Windows, attempts: int, window: int) -> None:
        self.windows, self.attempts, self.window = windows, attempts, window

    def _user(self, username: str) -> Budget:
        return Budget(f"login:user:{username.lower()}", self.attempts, self.window)

    def _address(self, address: str) -> Budget:
        return Budget(f"login:addr:{address}", self.attempts * 5, self.window)

    async def retry_after(self, username: str, address: str) -> int:
        """Seconds to wait before trying again (0: go ahead)."""
        refused = await self.windows.full(self._user(username), self._address(address))
        return 0 if refused is None else max(1, math.ceil(refused.wait))

    async def failed(self, username: str, address: str) -> None:
        await self.windows.count(self._user(username), self._address(address))

    async def succeeded(self, username: str) -> None:
        await self.windows.forget(self._user(username))


def client_address(request: Request) -> str:
    """Who is connecting: the socket's peer, or behind `web.trusted_proxies` the client their
    X-Forwarded-For names (uvicorn's `ProxyHeadersMiddleware` rewrote it; see `create_app`)."""
    return request.client.host if request.client else "unknown"


# ---- who is asking ---------------------------------------------------------------------------


class SignInRequired(Exception):
    """Raised by the role dependencies; answered with a redirect to /login or a 401."""


class Forbidden(Exception):
    """Signed in, but without the role this needs; answered with a 403."""


UserLoader = Callable[[str], User | None]  # session token -> its user, if the session is good


def session_user(request: Request, load: UserLoader) -> User | None:
    """The signed-in user (cached on the request), or None. A token that no longer signs anyone
    in (signed out, revoked, expired, user removed) is dropped from the cookie."""
    if hasattr(request.state, "user"):
        cached: User | None = request.state.user
        return cached
    user: User | None = None
    token = request.session.get("sid")
    if isinstance(token, str):
        user = load(token)
        if user is None:
            request.session.pop("sid", None)
    request.state.user = user
    return user


def sign_in(request: Request, user: User, token: str) -> None:
    """A fresh cookie for the session `token` of `user`: nothing from before sign-in is kept
    (but the chat's anonymous id), and a new CSRF token."""
    anon = request.session.get("anon")
    request.session.clear()
    request.session["sid"] = token
    if anon:
        request.session["anon"] = anon
    csrf_token(request.session)
    request.state.user = user


def sign_out(request: Request) -> str | None:
    """Clear the cookie; returns the session token it held, for the caller to revoke."""
    token = request.session.get("sid")
    request.session.clear()
    request.state.user = None
    return token if isinstance(token, str) else None


def signed_in(request: Request) -> User:
    """The user the router's role dependency already checked (routes behind `requirement`)."""
    user = getattr(request.state, "user", None)
    if not isinstance(user, User):
        raise SignInRequired()
    return user


def requirement(
    role: str, load_user: Callable[[Request], User | None]
) -> Callable[[Request], Awaitable[User]]:
    """A dependency: the signed-in user with `role` (admins may do everything reviewers may).

    Put it on a whole router (`APIRouter(dependencies=[Depends(...)])`) so that no route in it can
    forget the check; routes then read the user with `signed_in(request)`."""
    from starlette.concurrency import run_in_threadpool

    async def check(request: Request) -> User:
        user = await run_in_threadpool(load_user, request)
        if user is None:
            raise SignInRequired()
        if role == "admin" and not user.is_admin:
            log.warning(
                "refused %s %s to reviewer %s (admin only)", request.method, request.url.path, user.username
            )
            raise Forbidden()
        return user

    return check
