"""A local Slack Web API + Socket Mode emulator for tests that drive the real slack_sdk / bolt.

    async with SlackEmulator() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
        envelope_id = await slack.send_event(app_mention_event("<@U0LOREBOT> hi", "U1", "C1", "1.000100"))
        ack = await slack.wait_for_ack(envelope_id)
        [post] = await slack.wait_for("chat.postMessage")

Only what Lore relies on is modelled; other methods answer {"ok": true} and are still recorded.
The payload builders at the bottom mirror payloads/slack/*.json (shapes as real Slack sends them).
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

from aiohttp import WSMsgType, web

JSON = dict[str, Any]

BOT_TOKEN = "xoxb-1-emulator-bot-token"
APP_TOKEN = "xapp-1-A0LORE-1-emulator-app-token"
TEAM_ID = "T0LORE"
APP_ID = "A0LORE"
BOT_USER_ID = "U0LOREBOT"
BOT_ID = "B0LORE"
VERIFICATION_TOKEN = "emulator-verification-token"
PAYLOADS_DIR = Path(__file__).parent / "payloads" / "slack"
# slack_sdk form-encodes these as JSON strings (e.g. api_call(data=...)); tests want them as objects.
_JSON_FIELDS = frozenset({"blocks", "attachments", "view", "metadata", "unfurls"})


@dataclass
class Call:
    method: str
    args: JSON
    headers: dict[str, str]
    status: int = 200  # HTTP status we answered with (429/5xx when a failure was injected)
    at: float = field(default_factory=time.monotonic)  # lets tests measure Retry-After gaps
    name: str = ""  # for response_url calls: the name given to new_response_url()


@dataclass
class Ack:
    envelope_id: str
    payload: JSON | None
    latency: float  # seconds from sending the envelope to receiving this ack
    raw: JSON


class SlackEmulator:
    # The token's scopes, as Slack lists them in every Web API response's `x-oauth-scopes` header
    # ("chat:write,users:read"); None sends no header.
    scopes: str | None = None

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (BOT_TOKEN,),
        app_tokens: Iterable[str] = (APP_TOKEN,),
        user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        team_id: str = TEAM_ID,
        user: str = "lore",
        team: str = "Lore Test",
        app_id: str = APP_ID,
        users: dict[str, JSON] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        channels: dict[str, JSON] | None = None,
        members: dict[str, list[str]] | None = None,
    ) -> None:
        """`tokens` are valid bot/user tokens, `app_tokens` valid xapp- tokens; `users` feeds
        users.info (an "email" entry becomes profile.email); `usergroups` (S… -> user ids) feeds
        usergroups.users.list; `channels` (id -> fields such as is_ext_shared) conversations.info;
        `members` (channel -> user ids) conversations.members."""
        self.tokens, self.app_tokens = set(tokens), set(app_tokens)
        self.user_id, self.bot_id, self.team_id = user_id, bot_id, team_id
        self.user, self.team, self.app_id = user, team, app_id
        self.users = {uid: _user_object(uid, team_id, info) for uid, info in (users or {}).items()}
        self.users.setdefault(user_id, _user_object(user_id, team_id, {"name": user, "is_bot": True}))
        self.usergroups = {k: list(v) for k, v in (usergroups or {}).items()}
        self.channels = dict(channels or {})
        self.members = {k: list(v) for k, v in (members or {}).items()}
        self.calls: list[Call] = []
        self.acks: list[Ack] = []
        self.messages: dict[str, list[JSON]] = {}  # channel -> posted and preloaded messages
        self.files: dict[str, tuple[bytes, str]] = {}  # url path -> (content, mimetype), `add_file`
        self.port = 0
        self._failures: dict[str, list[tuple[int, int, str, bool]]] = {}
        self._holds: dict[str, tuple[Callable[[JSON], bool], asyncio.Event]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._sent_at: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._last_us = 0
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_users,
            "conversations.info": self._conversation_info,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "conversations.members": self._members,
            "chat.getPermalink": self._permalink,
            "apps.connections.open": self._connections_open,
        }

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response_url/{name}", self._handle_response_url)
        app.router.add_get("/files-pri/{tail:.*}", self._handle_file)
        app.router.add_get("/socket-mode/{tail:.*}", self._handle_socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()  # port 0: tests run in parallel
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"  # slack_sdk appends the method name to this

    def new_response_url(self, name: str = "") -> str:
        """A response_url that records POSTs as Call(method="response_url", ...)."""
        return f"http://127.0.0.1:{self.port}/response_url/{name or uuid.uuid4().hex[:8]}"

    # ---- test controls -------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[JSON]:
        """Messages stored in `channel` whose thread is `thread_ts` (the parent included), in order."""
        found = [m for m in self.messages.get(channel, []) if thread_ts in (m["ts"], m.get("thread_ts"))]
        return sorted(found, key=lambda m: Decimal(m["ts"]))

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10,  # noqa: ASYNC109
        what: str = "condition",
    ) -> None:
        """Wait until `predicate()` holds; it is re-checked after every Web API call and ack."""
        await self._wait_until(predicate, timeout, what)

    # ASYNC109: a timeout argument reads better in tests than wrapping every wait in asyncio.timeout().
    async def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:  # noqa: ASYNC109
        await self._wait_until(lambda: len(self.calls_to(method)) >= count, timeout, f"{count}x {method}")
        return self.calls_to(method)

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
        *,
        after_applying: bool = False,
    ) -> None:
        """Answer the next `times` calls to `method` with an error (429 carries Retry-After).

        `after_applying`: the call takes effect first (e.g. the message is created) and only then
        is the error returned, as when Slack fails between storing a message and answering."""
        error = error or ("ratelimited" if status == 429 else "internal_error")
        self._failures.setdefault(method, []).extend([(status, retry_after, error, after_applying)] * times)

    @contextlib.asynccontextmanager
    async def holding(
        self, name: str, matching: Callable[[JSON], bool] = lambda args: True
    ) -> AsyncIterator[asyncio.Event]:
        """Hold the replies to POSTs to response_url `name` whose body is `matching`: they are
        recorded (Slack has the message) but answered only when the yielded event is set or the
        block exits, so the app is still waiting for its reply."""
        release = asyncio.Event()
        self._holds[name] = (matching, release)
        try:
            yield release
        finally:
            release.set()
            self._holds.pop(name, None)

    def preload_thread(self, channel: str, thread_ts: str, messages: Iterable[JSON]) -> None:
        """Seed a thread for conversations.replies; include a message with ts == thread_ts as the parent."""
        for message in messages:
            message = {"type": "message", **message}
            message.setdefault("ts", self._next_ts())
            message.setdefault("thread_ts", thread_ts)
            self.messages.setdefault(channel, []).append(message)

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def wait_connected(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        await self._wait_until(lambda: self.connected, timeout, "a Socket Mode connection")

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5) -> Ack:  # noqa: ASYNC109
        def find() -> Ack | None:
            return next((a for a in self.acks if a.envelope_id == envelope_id), None)

        await self._wait_until(lambda: find() is not None, timeout, f"ack of envelope {envelope_id}")
        ack = find()
        assert ack is not None
        return ack

    async def send_envelope(
        self,
        payload: JSON,
        envelope_type: str,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool = False,
    ) -> str:
        """Send one Socket Mode envelope to the connected client; returns its envelope_id."""
        await self.wait_connected()  # the client's ws_connect can return before our handler registers it
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        self._sent_at[envelope_id] = time.monotonic()
        await [ws for ws in self._sockets if not ws.closed][-1].send_json(envelope)
        return envelope_id

    async def send_event(
        self,
        event: JSON,
        *,
        envelope_type: str = "events_api",
        retry_attempt: int = 0,
        retry_reason: str | None = None,
        event_id: str | None = None,
        event_time: int | None = None,
        ext_shared: bool = False,
    ) -> str:
        """Wrap `event` in an event_callback; reuse `event_id` with retry_attempt>0 to simulate
        redelivery. `ext_shared`: the channel is a Slack Connect channel (is_ext_shared_channel)."""
        self.remember_event(event)
        payload = event_callback(
            event,
            team_id=self.team_id,
            api_app_id=self.app_id,
            bot_user_id=self.user_id,
            event_id=event_id,
            event_time=event_time,
            ext_shared=ext_shared,
        )
        reason = retry_reason if retry_reason is not None else ("timeout" if retry_attempt else "")
        return await self.send_envelope(
            payload, envelope_type, retry_attempt=retry_attempt, retry_reason=reason
        )

    async def send_slash_command(self, payload: JSON) -> str:
        return await self.send_envelope(payload, "slash_commands", accepts_response_payload=True)

    async def send_interactive(self, payload: JSON) -> str:
        # Slack only lets the ack carry a response for these (e.g. view_submission errors).
        accepts = payload.get("type") in ("view_submission", "block_suggestion")
        return await self.send_envelope(payload, "interactive", accepts_response_payload=accepts)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does every few hours."""
        await self.wait_connected()
        for ws in [ws for ws in self._sockets if not ws.closed]:
            await ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-emu"}}
            )

    # ---- HTTP / websocket plumbing -------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_until(self, predicate: Callable[[], bool], seconds: float, what: str) -> None:
        try:
            async with asyncio.timeout(seconds), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise TimeoutError(f"no {what} within {seconds}s; Web API calls so far: {seen}") from None

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.pop("token", None)
        status, body, headers = self._respond(method, args, token)
        self.calls.append(Call(method, args, dict(request.headers), status))
        await self._notify()
        if self.scopes is not None:
            headers = {**headers, "x-oauth-scopes": self.scopes}
        return web.json_response(body, status=status, headers=headers)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        args, headers = await _read_args(request), dict(request.headers)
        name = request.match_info["name"]
        self.calls.append(Call("response_url", args, headers, name=name))
        await self._notify()
        if (hold := self._holds.get(name)) is not None and hold[0](args):
            await hold[1].wait()
        return web.json_response({"ok": True})

    async def _handle_file(self, request: web.Request) -> web.Response:
        """url_private: the file with a valid bot token; without one, Slack's sign-in page (HTTP
        200, text/html), as real Slack answers a request that lacks files:read or a token."""
        auth = request.headers.get("Authorization", "")
        self.calls.append(Call("files-pri", {"path": request.path}, dict(request.headers)))
        await self._notify()
        found = self.files.get(request.path)
        if auth.removeprefix("Bearer ") not in self.tokens:
            return web.Response(text="<!DOCTYPE html><html>Sign in to Slack</html>", content_type="text/html")
        if found is None:
            return web.Response(status=404, text="Not Found")
        data, mimetype = found
        return web.Response(body=data, content_type=mimetype)

    def add_file(self, name: str, data: bytes, mimetype: str, *, size: int | None = None) -> JSON:
        """Store a file and return its Slack file object, as a message's `files` carries it
        (`size` overrides the real size, to play an oversize upload without sending one)."""
        fid = "F" + uuid.uuid4().hex[:10].upper()
        path = f"/files-pri/{self.team_id}-{fid}/{name}"
        self.files[path] = self.files[f"/files-pri/{self.team_id}-{fid}/download/{name}"] = (data, mimetype)
        base = f"http://127.0.0.1:{self.port}"
        filetype = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
        return {
            "id": fid,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": "U1",
            "user_team": self.team_id,
            "editable": False,
            "size": len(data) if size is None else size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": base + path,
            "url_private_download": f"{base}/files-pri/{self.team_id}-{fid}/download/{name}",
            "permalink": f"https://loretest.slack.com/files/U1/{fid}/{name}",
            "permalink_public": f"https://slack-files.com/{self.team_id}-{fid}-0123456789",
            "has_rich_preview": False,
            "file_access": "visible",
        }

    def _respond(self, method: str, args: JSON, token: str | None) -> tuple[int, JSON, dict[str, str]]:
        if failures := self._failures.get(method):
            status, retry_after, failure, after_applying = failures.pop(0)
            if after_applying and (handler := self._methods.get(method)):
                handler(args)
            headers = {"Retry-After": str(retry_after)} if status == 429 else {}
            return status, _error(failure), headers
        if auth_error := self._auth_error(method, token):
            return 200, _error(auth_error), {}  # Slack reports auth errors with HTTP 200
        handler = self._methods.get(method)
        return 200, handler(args) if handler else {"ok": True}, {}

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        wants_app_token = method.startswith("apps.connections.")
        if token.startswith("xapp-") != wants_app_token:
            return "not_allowed_token_type"
        return None if token in (self.app_tokens if wants_app_token else self.tokens) else "invalid_auth"

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)  # autoping answers slack_sdk's "sdk-ping-pong" pings
        await ws.prepare(request)
        # Slack greets first; registering after hello guarantees no envelope overtakes it.
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets) + 1,
                "debug_info": {
                    "host": "applink-emu",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._sockets.append(ws)
        await self._notify()
        try:
            async for msg in ws:
                data = json.loads(msg.data) if msg.type == WSMsgType.TEXT and msg.data[:1] == "{" else {}
                if data.get("envelope_id"):
                    sent = self._sent_at.get(data["envelope_id"])
                    latency = time.monotonic() - sent if sent is not None else math.nan
                    self.acks.append(Ack(data["envelope_id"], data.get("payload"), latency, data))
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    def remember_event(self, event: JSON) -> None:
        """A user's new message is part of the channel from then on (conversations.replies and
        chat.getPermalink see it). Called for events this emulator sends; an HTTP-mode test that
        posts an event to Lore itself calls it too, as Slack would still hold the message."""
        if (
            event.get("type") not in ("message", "app_mention")
            or event.get("subtype")
            or "channel" not in event
        ):
            return
        stored = self.messages.setdefault(event["channel"], [])
        if any(m["ts"] == event["ts"] for m in stored):
            return  # a redelivery, or the app_mention twin of a message event
        keep = (
            "type",
            "user",
            "text",
            "ts",
            "thread_ts",
            "bot_id",
            "client_msg_id",
            "team",
            "blocks",
            "files",
        )
        stored.append({"type": "message"} | {k: event[k] for k in keep if k in event and k != "type"})

    def next_ts(self) -> str:
        """A fresh message ts, later than every one so far (as Slack's are)."""
        return self._next_ts()

    def _next_ts(self) -> str:
        # Integer microseconds: unique, increasing, and formatted exactly like Slack's "epoch.micros".
        self._last_us = max(time.time_ns() // 1000, self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    # ---- Web API methods -----------------------------------------------------------------------

    def _auth_test(self, args: JSON) -> JSON:
        return {
            "ok": True,
            "url": "https://loretest.slack.com/",
            "team": self.team,
            "user": self.user,
            "team_id": self.team_id,
            "user_id": self.user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: JSON) -> JSON:
        channel = args.get("channel")
        if not channel:
            return _error("channel_not_found")
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return _error("no_text")
        message = {
            "type": "message",
            "user": self.user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": args.get("text", ""),
            "ts": self._next_ts(),
        }
        message |= {k: args[k] for k in ("blocks", "attachments", "thread_ts", "metadata") if args.get(k)}
        self.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _update(self, args: JSON) -> JSON:
        channel, ts = args.get("channel", ""), args.get("ts")
        message = next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)
        if message is None:
            return _error("message_not_found")
        message |= {k: args[k] for k in ("text", "blocks", "attachments", "metadata") if k in args}
        return {"ok": True, "channel": channel, "ts": ts, "text": message.get("text", ""), "message": message}

    def _post_ephemeral(self, args: JSON) -> JSON:
        if not args.get("channel"):
            return _error("channel_not_found")
        return {"ok": True, "message_ts": self._next_ts()} if args.get("user") else _error("user_not_found")

    def _views_open(self, args: JSON) -> JSON:
        view = args.get("view")
        if not isinstance(view, dict) or not args.get("trigger_id"):
            return _error("invalid_arguments")
        view_id = "V" + uuid.uuid4().hex[:10].upper()
        defaults = {"callback_id": "", "private_metadata": "", "external_id": "", "previous_view_id": None}
        return {
            "ok": True,
            "view": defaults
            | view
            | {
                "id": view_id,
                "root_view_id": view_id,
                "team_id": self.team_id,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
                "state": {"values": {}},
                "hash": uuid.uuid4().hex[:16],
            },
        }

    def _users_info(self, args: JSON) -> JSON:
        user = self.users.get(args.get("user", ""))
        return {"ok": True, "user": user} if user else _error("user_not_found")

    def _usergroup_users(self, args: JSON) -> JSON:
        group = self.usergroups.get(str(args.get("usergroup") or ""))
        return {"ok": True, "users": list(group)} if group is not None else _error("no_such_subteam")

    def _conversation_info(self, args: JSON) -> JSON:
        """A channel as conversations.info shows it: public, not shared unless `channels` says so."""
        cid = str(args.get("channel") or "")
        if not cid:
            return _error("channel_not_found")
        flags = ("is_private", "is_shared", "is_ext_shared", "is_org_shared", "is_pending_ext_shared")
        channel = {"id": cid, "name": cid.lower(), "is_channel": True, "is_im": cid.startswith("D")}
        channel |= dict.fromkeys(flags, False) | {"context_team_id": self.team_id}
        return {"ok": True, "channel": channel | self.channels.get(cid, {})}

    def _replies(self, args: JSON) -> JSON:
        # Real Slack says thread_not_found for unknown threads; an empty thread keeps unrelated tests simple.
        ts, channel = args.get("ts"), self.messages.get(args.get("channel", ""), [])
        thread = [m for m in channel if ts in (m["ts"], m.get("thread_ts"))]
        return _page(thread, args)

    def _permalink(self, args: JSON) -> JSON:
        channel, ts = str(args.get("channel") or ""), str(args.get("message_ts") or "")
        message = next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)
        if message is None:
            return _error("message_not_found")
        link = f"https://loretest.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if message.get("thread_ts") and message["thread_ts"] != ts:
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _history(self, args: JSON) -> JSON:
        """The channel's top-level messages (thread parents included), newest first, as Slack does."""
        channel = self.messages.get(args.get("channel", ""), [])
        top = [m for m in channel if m.get("thread_ts") in (None, m["ts"])]
        page = _page(top, args)
        page["messages"].reverse()
        return page

    def _members(self, args: JSON) -> JSON:
        """A channel's members, paged by `limit` with a cursor, as Slack pages them."""
        members = self.members.get(str(args.get("channel") or ""))
        if members is None:
            return _error("channel_not_found")
        start = int(str(args.get("cursor") or "0") or 0)
        limit = int(args.get("limit") or 100)
        page = members[start : start + limit]
        cursor = str(start + limit) if start + limit < len(members) else ""
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": cursor}}

    def _connections_open(self, args: JSON) -> JSON:
        ticket = uuid.uuid4()
        return {
            "ok": True,
            "url": f"ws://127.0.0.1:{self.port}/socket-mode/link/?ticket={ticket}&app_id={self.app_id}",
        }


async def _read_args(request: web.Request) -> JSON:
    args: JSON = dict(request.query)
    if request.content_type == "application/json":
        args |= await request.json() if request.can_read_body else {}
    elif request.can_read_body:
        args |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}  # files are dropped
    for key in _JSON_FIELDS & args.keys():
        if isinstance(args[key], str) and args[key][:1] in ("[", "{"):
            args[key] = json.loads(args[key])
    return args


def _page(messages: list[JSON], args: JSON) -> JSON:
    """Messages after `oldest` and before `latest`, oldest first; metadata only when asked for."""
    oldest, latest = Decimal(str(args.get("oldest") or 0)), args.get("latest")
    found = [
        m
        for m in messages
        if Decimal(m["ts"]) > oldest and (not latest or Decimal(m["ts"]) < Decimal(latest))
    ]
    if str(args.get("include_all_metadata")).lower() not in ("true", "1"):
        found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
    found.sort(key=lambda m: Decimal(m["ts"]))
    return {"ok": True, "messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}


def _error(error: str) -> JSON:
    return {"ok": False, "error": error}


def _user_object(uid: str, team_id: str, info: JSON) -> JSON:
    name = info.get("name", uid.lower())
    flags = ("deleted", "is_admin", "is_owner", "is_primary_owner", "is_restricted", "is_bot", "is_app_user")
    profile = {"real_name": name, "display_name": name, "team": team_id}
    if "email" in info:  # only with the users:read.email scope; Slack leaves it out otherwise
        info = dict(info)
        profile["email"] = info.pop("email")
    return (
        {
            "id": uid,
            "team_id": team_id,
            "name": name,
            "real_name": name,
            "tz": "Europe/London",
            "profile": profile,
        }
        | dict.fromkeys(flags, False)
        | info
    )


def load_payload(name: str) -> JSON:
    """A recorded payload from payloads/slack/, e.g. load_payload("app_mention")."""
    payload: JSON = json.loads((PAYLOADS_DIR / f"{name}.json").read_text())
    return payload


def sign_request(body: str, signing_secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack adds to HTTP-mode (Events API) requests: HMAC-SHA256 over v0:{ts}:{body}."""
    ts = str(int(time.time()) if timestamp is None else timestamp)  # now, unless testing replay windows
    digest = hmac.new(signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": ts}


# ---- payload builders (pure, deterministic) ------------------------------------------------------


def _later(ts: str, seconds: int = 1) -> str:
    return f"{Decimal(ts) + seconds:.6f}"


def _rich_text(text: str) -> list[JSON]:
    # Slack adds a rich_text block to every human message, with mentions as user elements.
    parts = re.split(r"<@(\w+)>", text)
    elements = [
        {"type": "user", "user_id": p} if i % 2 else {"type": "text", "text": p}
        for i, p in enumerate(parts)
        if p
    ]
    block_id = hashlib.sha1(text.encode()).hexdigest()[:5]  # an id, not security
    return [
        {
            "type": "rich_text",
            "block_id": block_id,
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def _human_message(text: str, user: str, ts: str, team: str) -> JSON:
    return {
        "client_msg_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{user}:{ts}")),
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": _rich_text(text),
        "team": team,
    }


def event_callback(
    event: JSON,
    *,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    event_time: int | None = None,
    ext_shared: bool = False,
) -> JSON:
    """The Events API body around `event`, as POSTed in HTTP mode or carried in a Socket Mode envelope."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": event_time if event_time is not None else int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": ext_shared,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def app_mention_event(
    text: str,
    user: str,
    channel: str,
    ts: str,
    thread_ts: str | None = None,
    *,
    team: str = TEAM_ID,
    files: list[JSON] | None = None,
) -> JSON:
    """@Lore in a channel; `files` (from `SlackEmulator.add_file`) shared with it, as Slack
    sends them: the file objects, and `upload: false` with `display_as_bot: false`."""
    event = _human_message(text, user, ts, team) | {"type": "app_mention", "channel": channel, "event_ts": ts}
    if files:
        event |= {"files": files, "upload": False, "display_as_bot": False}
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def message_shortcut_payload(
    callback_id: str,
    message: JSON,
    user: str,
    channel: str,
    *,
    response_url: str,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
) -> JSON:
    """A message shortcut ("More actions" on `message`), as Slack sends a `message_action`."""
    return {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": _later(str(message["ts"])),
        "team": {"id": team_id, "domain": "loretest"},
        "user": _actor(user, team_id),
        "channel": {"id": channel, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or f"{int(time.time())}.1111111111.{uuid.uuid4().hex[:24]}",
        "message_ts": message["ts"],
        "message": message,
        "response_url": response_url,
    }


def message_event(
    text: str,
    user: str,
    channel: str,
    ts: str,
    *,
    thread_ts: str | None = None,
    parent_user_id: str | None = None,
    channel_type: str = "channel",
    bot_id: str | None = None,
    team: str = TEAM_ID,
) -> JSON:
    """A new message: DM (channel_type="im"), channel, thread reply (thread_ts) or a bot's (bot_id)."""
    event = _human_message(text, user, ts, team)
    event |= {"channel": channel, "event_ts": ts, "channel_type": channel_type}
    if thread_ts:
        event |= {"thread_ts": thread_ts, "parent_user_id": parent_user_id or user}
    if bot_id:  # bots post without client_msg_id and carry their identity
        del event["client_msg_id"]
        event |= {
            "bot_id": bot_id,
            "app_id": APP_ID,
            "bot_profile": {
                "id": bot_id,
                "app_id": APP_ID,
                "name": "lore",
                "team_id": team,
                "deleted": False,
            },
        }
    return event


def reaction_added_event(
    reaction: str, user: str, channel: str, message_ts: str, *, item_user: str = ""
) -> JSON:
    """Someone added `reaction` (a name, e.g. "white_check_mark") to message `message_ts`."""
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": message_ts},
        "event_ts": f"{time.time():.6f}",
    }


def message_changed_event(
    text: str,
    previous_text: str,
    user: str,
    channel: str,
    ts: str,
    *,
    edited_ts: str | None = None,
    channel_type: str = "channel",
    team: str = TEAM_ID,
) -> JSON:
    """The event Slack sends when message `ts` is edited; the event's own ts is the edit time."""
    edited_ts = edited_ts or _later(ts)
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": _human_message(text, user, ts, team)
        | {"edited": {"user": user, "ts": edited_ts}, "source_team": team, "user_team": team},
        "previous_message": _human_message(previous_text, user, ts, team),
        "channel": channel,
        "hidden": True,
        "ts": edited_ts,
        "event_ts": edited_ts,
        "channel_type": channel_type,
    }


def _actor(user: str, team_id: str) -> JSON:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id}


def block_action_payload(
    action_id: str,
    value: str,
    user: str,
    channel: str,
    message_ts: str,
    *,
    trigger_id: str = "1111111111.2222222222.emulatortrigger",
    block_id: str = "lore_actions",
    thread_ts: str | None = None,
    message: JSON | None = None,
    team_id: str = TEAM_ID,
    response_url: str | None = None,
    is_ephemeral: bool = False,
) -> JSON:
    """A button click on message `message_ts` (a bot message; pass `message` for the full original).

    Pass `response_url=emulator.new_response_url()` when the app will answer through it. A click
    on an ephemeral message (`is_ephemeral`) carries no `message`, as in real Slack."""
    thread = {"thread_ts": thread_ts} if thread_ts else {}
    payload: JSON = {
        "type": "block_actions",
        "user": _actor(user, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": is_ephemeral,
        }
        | thread,
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": "loretest"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": message
        or {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": "",
            "ts": message_ts,
            "team": team_id,
            "blocks": [],
        }
        | thread,
        "state": {"values": {}},
        "response_url": response_url or f"https://hooks.slack.com/actions/{team_id}/1111111111/emulator",
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "action_ts": _later(message_ts),
            }
        ],
    }
    if is_ephemeral:
        del payload["message"]
    return payload


def view_submission_payload(
    callback_id: str,
    private_metadata: str,
    state_values: JSON,
    user: str,
    *,
    view_id: str = "V0EMULATOR",
    team_id: str = TEAM_ID,
) -> JSON:
    """`state_values` is view.state.values: {block_id: {action_id: {"type": ..., "value": ...}}}."""
    view = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state_values},
        "hash": "1700000000.emulator",
        "title": {"type": "plain_text", "text": "Lore", "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": APP_ID,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": BOT_ID,
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "loretest"},
        "user": _actor(user, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": "1111111111.2222222222.emulatorview",
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def slash_command_payload(
    command: str,
    text: str,
    user_id: str,
    channel_id: str,
    response_url: str | None = None,
    *,
    team_id: str = TEAM_ID,
) -> JSON:
    # Slack form-encodes commands, so every value is a string (is_enterprise_install included).
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": "loretest",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or f"https://hooks.slack.com/commands/{team_id}/1111111111/emulator",
        "trigger_id": "1111111111.2222222222.emulatorcommand",
    }
