"""A local emulator of Discord's gateway (v10) and REST API, for driving the real discord.py client in tests.

Named ``discord_emu`` (not ``discord``) so it can never shadow the real package on import.

    async with DiscordEmulator(guilds=[make_guild()], heartbeat_interval_ms=500) as emu, emu.patched():
        task = asyncio.create_task(bot.start("token"))  # bot built with guild_ready_timeout=0.05
        await emu.wait_ready()
        await emu.dispatch("MESSAGE_CREATE", message_create("hi", channel_id=123))
        [call] = await emu.wait_for("POST", r"/channels/123/messages")

Paths in ``emu.calls`` are relative to ``/api/v10``; ``path_regex`` arguments use ``re.fullmatch``.
Payload templates live in ``payloads/discord/`` (shapes from discord.py's ``discord/types`` TypedDicts and the
API docs, not captured from live Discord); the builders below fill them in.
"""

# ASYNC109: the ``timeout`` parameters are the test-facing API. ASYNC110: ``_until`` polls state that many
# code paths mutate; a 10 ms poll is simpler than threading an Event through all of them.
# ruff: noqa: ASYNC109, ASYNC110

from __future__ import annotations

import asyncio
import functools
import http
import json
import math
import re
import secrets
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

JSON = dict[str, Any]
Id = int | str
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_BOT_ID = 1_300_000_000_000_000_001
DEFAULT_OWNER_ID = 1_300_000_000_000_000_002
PAYLOADS = Path(__file__).parent / "payloads" / "discord"

PERM_ADMINISTRATOR, PERM_MANAGE_GUILD = 1 << 3, 1 << 5  # MANAGE_GUILD is "Manage Server"
# An ordinary member: react, view, send, embed, attach, read history, use slash commands, post in threads.
DEFAULT_PERMISSIONS = sum(1 << b for b in (6, 10, 11, 14, 15, 16, 31, 38))
INTENT_GUILDS, INTENT_GUILD_MESSAGES, INTENT_DMS, INTENT_MESSAGE_CONTENT = 1, 1 << 9, 1 << 12, 1 << 15
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
FLAG_SUPPRESS_EMBEDS, FLAG_HAS_THREAD, FLAG_EPHEMERAL, FLAG_LOADING = 1 << 2, 1 << 5, 1 << 6, 1 << 7

_last_snowflake = 0


def snowflake() -> str:
    """A fresh snowflake: timestamp-based like Discord's and strictly increasing, so ids sort by creation."""
    global _last_snowflake
    _last_snowflake = max(_last_snowflake + 1, (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22)
    return str(_last_snowflake)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@functools.cache
def _template_text(kind: str) -> str:
    return (PAYLOADS / f"{kind}.json").read_text()


def template(kind: str, /, **fields: Any) -> JSON:
    """A fresh (deep) copy of ``payloads/discord/<kind>.json`` with ``fields`` set."""
    payload: JSON = json.loads(_template_text(kind))
    return payload | fields


def _sid(value: Id | None) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- payload builders (pure functions)


def make_user(user_id: Id | None = None, username: str = "alice", *, bot: bool = False) -> JSON:
    u: JSON = {
        "id": str(user_id or snowflake()),
        "username": username,
        "discriminator": "0",
        "avatar": None,
        "global_name": None if bot else username.title(),
        "public_flags": 0,
    }
    return (u | {"bot": True}) if bot else u


def make_member(
    user: JSON, *, roles: Sequence[Id] = (), permissions: int | str | None = None, nick: str | None = None
) -> JSON:
    """A guild member. ``permissions`` (computed channel permissions) only appears in interaction payloads."""
    m = template("member", user=user, roles=[str(r) for r in roles], nick=nick, joined_at=now_iso())
    return (m | {"permissions": str(permissions)}) if permissions is not None else m


def make_role(name: str, permissions: int = 0, *, role_id: Id | None = None) -> JSON:
    return template("role", id=str(role_id or snowflake()), name=name, permissions=str(permissions))


def make_text_channel(
    channel_id: Id | None = None,
    guild_id: Id | None = None,
    name: str = "general",
    *,
    parent_id: Id | None = None,
) -> JSON:
    return template(
        "text_channel",
        id=str(channel_id or snowflake()),
        guild_id=_sid(guild_id),
        name=name,
        parent_id=_sid(parent_id),
    )


def make_forum_channel(channel_id: Id | None = None, guild_id: Id | None = None, name: str = "help") -> JSON:
    """A forum channel (type 15): it holds posts (threads), never messages of its own."""
    return template("forum_channel", id=str(channel_id or snowflake()), guild_id=_sid(guild_id), name=name)


def forum_post(
    forum_id: Id, guild_id: Id, title: str, content: str, author: JSON, *, roles: Sequence[Id] = ()
) -> tuple[JSON, JSON]:
    """A new forum post as Discord sends it: THREAD_CREATE (a public thread named `title`, owned by
    the author) and the MESSAGE_CREATE of its first message, whose id is the thread's id."""
    thread = make_thread(forum_id, guild_id, title, owner_id=author["id"])
    thread |= {"message_count": 1, "total_message_sent": 1, "member_count": 1, "newly_created": True}
    message = message_create(content, author, thread["id"], guild_id, message_id=thread["id"], roles=roles)
    return thread, message | {"position": 0}


def member_reaction_add(
    emoji: str, member: JSON, channel_id: Id, message_id: Id, guild_id: Id, *, message_author_id: Id
) -> JSON:
    """MESSAGE_REACTION_ADD (needs the GUILD_MESSAGE_REACTIONS intent) for a unicode emoji."""
    return {
        "user_id": member["user"]["id"],
        "type": 0,
        "message_id": str(message_id),
        "message_author_id": str(message_author_id),
        "member": member,
        "emoji": {"name": emoji, "id": None},
        "channel_id": str(channel_id),
        "burst": False,
        "burst_colors": [],
        "guild_id": str(guild_id),
    }


def make_dm_channel(channel_id: Id, recipient: JSON) -> JSON:
    return {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0, "recipients": [recipient]}


def make_thread(
    parent_id: Id,
    guild_id: Id | None,
    name: str,
    *,
    thread_id: Id | None = None,
    owner_id: Id = DEFAULT_BOT_ID,
    thread_type: int = 11,
    auto_archive_duration: int = 1440,
) -> JSON:
    t = template(
        "thread",
        id=str(thread_id or snowflake()),
        type=thread_type,
        guild_id=_sid(guild_id),
        parent_id=str(parent_id),
        owner_id=str(owner_id),
        name=name,
    )
    t["thread_metadata"] |= {
        "auto_archive_duration": auto_archive_duration,
        "archive_timestamp": now_iso(),
        "create_timestamp": now_iso(),
    }
    return t


def make_guild(
    guild_id: Id | None = None,
    name: str = "Lore Test Guild",
    *,
    channels: Sequence[JSON] | None = None,
    members: Sequence[JSON] = (),
    roles: Sequence[JSON] = (),
    owner_id: Id = DEFAULT_OWNER_ID,
) -> JSON:
    """A full guild as sent in GUILD_CREATE (one "general" text channel unless ``channels`` is given)."""
    gid = str(guild_id or snowflake())
    chans = channels if channels is not None else [make_text_channel(None, gid)]
    everyone = make_role("@everyone", DEFAULT_PERMISSIONS, role_id=gid)  # @everyone's id is the guild's id
    return template(
        "guild",
        id=gid,
        name=name,
        owner_id=str(owner_id),
        roles=[everyone, *roles],
        channels=[c | {"guild_id": gid} for c in chans],
        members=list(members),
        member_count=len(members),
        joined_at=now_iso(),
    )


def message_create(
    content: str,
    author: JSON | None = None,
    channel_id: Id | None = None,
    guild_id: Id | None = None,
    mentions: Sequence[JSON] = (),
    message_id: Id | None = None,
    webhook_id: Id | None = None,
    author_is_bot: bool = False,
    roles: Sequence[Id] = (),
) -> JSON:
    """A MESSAGE_CREATE payload; without ``guild_id`` it is a DM. ``roles``: the author's role ids
    in the guild (the payload's ``member.roles``)."""
    author = (author or make_user()) | ({"bot": True} if author_is_bot else {})
    if webhook_id:  # webhook messages are "authored" by the webhook itself
        author = author | {"id": str(webhook_id), "bot": True, "discriminator": "0000"}
    msg = template(
        "message",
        id=str(message_id or snowflake()),
        channel_id=str(channel_id or snowflake()),
        author=author,
        content=content,
        timestamp=now_iso(),
        mentions=list(mentions),
    )
    if guild_id:
        partial = {k: v for k, v in make_member(author).items() if k != "user"}
        msg |= {"guild_id": str(guild_id), "mentions": [m | {"member": partial} for m in mentions]}
        msg |= {} if webhook_id else {"member": partial | {"roles": [str(r) for r in roles]}}
    return msg | ({"webhook_id": str(webhook_id)} if webhook_id else {})


def reaction_add(
    emoji: str,
    user: JSON,
    channel_id: Id,
    message_id: Id,
    guild_id: Id | None = None,
    roles: Sequence[Id] = (),
) -> JSON:
    """A MESSAGE_REACTION_ADD payload: `user` added the unicode `emoji` to a message."""
    data: JSON = {
        "user_id": str(user["id"]),
        "channel_id": str(channel_id),
        "message_id": str(message_id),
        "emoji": {"id": None, "name": emoji},
        "burst": False,
        "type": 0,
    }
    if guild_id:
        data |= {"guild_id": str(guild_id), "member": make_member(user, roles=roles)}
    return data


def _interaction(
    itype: int,
    data: JSON,
    user: JSON | None,
    member: JSON | None,
    guild_id: Id | None,
    channel_id: Id | None,
    permissions: int | str | None,
    message: JSON | None = None,
) -> JSON:
    user = (member or {}).get("user") or user or make_user()
    cid = str(channel_id or (message or {}).get("channel_id") or snowflake())
    perms = str(permissions if permissions is not None else DEFAULT_PERMISSIONS)
    inter = template(
        "interaction",
        id=snowflake(),
        application_id=str(DEFAULT_BOT_ID),  # dispatch() fixes it
        type=itype,
        data=data,
        token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
        channel_id=cid,
        app_permissions=str(DEFAULT_PERMISSIONS),
    )
    if guild_id:
        gid = str(guild_id)
        mem = (member or make_member(user)) | {"user": user}
        if permissions is not None or "permissions" not in mem:
            mem["permissions"] = perms
        inter |= {
            "guild_id": gid,
            "guild": {"id": gid, "locale": "en-US", "features": []},
            "member": mem,
            "guild_locale": "en-US",
            "channel": make_text_channel(cid, gid) | {"permissions": perms},
            "authorizing_integration_owners": {"0": gid},
            "context": 0,
        }
    else:  # in a DM with the bot, the guild-install owner is documented as "0"
        inter |= {
            "user": user,
            "channel": make_dm_channel(cid, user),
            "context": 1,
            "authorizing_integration_owners": {"0": "0"},
        }
    return inter | ({"message": message} if message is not None else {})


def interaction_command(
    name: str,
    options: Mapping[str, Any] | Sequence[JSON] | None = None,
    *,
    user: JSON | None = None,
    member: JSON | None = None,
    guild_id: Id | None = None,
    channel_id: Id | None = None,
    permissions: int | str | None = None,
    command_id: Id | None = None,
    command_guild_id: Id | None = None,
) -> JSON:
    """INTERACTION_CREATE type 2 (chat input). ``options`` as {name: value} or raw option dicts (subcommands).

    ``permissions``: the member's computed permissions (e.g. ``PERM_MANAGE_GUILD``), for permission checks.
    ``command_guild_id`` marks a guild-scoped command (discord.py then looks in that guild's tree)."""

    def kind(v: Any) -> int:
        return 5 if isinstance(v, bool) else 4 if isinstance(v, int) else 10 if isinstance(v, float) else 3

    opts = (
        [{"name": k, "type": kind(v), "value": v} for k, v in options.items()]
        if isinstance(options, Mapping)
        else list(options or [])
    )
    data: JSON = {"id": str(command_id or snowflake()), "name": name, "type": 1, "options": opts}
    data |= {"guild_id": str(command_guild_id)} if command_guild_id else {}
    return _interaction(2, data, user, member, guild_id, channel_id, permissions)


def interaction_component(
    custom_id: str,
    user: JSON | None = None,
    channel_id: Id | None = None,
    message: JSON | None = None,
    guild_id: Id | None = None,
    member: JSON | None = None,
    *,
    component_type: int = 2,
    values: Sequence[str] | None = None,
    permissions: int | str | None = None,
) -> JSON:
    """INTERACTION_CREATE type 3: a button (component_type 2) or a select (3, 5-8, pass ``values``)."""
    message = message or message_create("", make_user(DEFAULT_BOT_ID, "Lore", bot=True), channel_id, guild_id)
    data: JSON = {"custom_id": custom_id, "component_type": component_type}
    data |= {"values": list(values)} if values is not None else {}
    return _interaction(3, data, user, member, guild_id, channel_id, permissions, message)


def interaction_message_command(
    name: str,
    target: JSON,
    *,
    user: JSON | None = None,
    member: JSON | None = None,
    guild_id: Id | None = None,
    channel_id: Id | None = None,
    command_id: Id | None = None,
) -> JSON:
    """INTERACTION_CREATE type 2 for a message context-menu command (command type 3) on
    ``target``: Discord sends the target's id and the whole message under ``resolved``."""
    data: JSON = {
        "id": str(command_id or snowflake()),
        "name": name,
        "type": 3,
        "target_id": target["id"],
        "resolved": {"messages": {target["id"]: target}},
    }
    return _interaction(2, data, user, member, guild_id, channel_id or target["channel_id"], None)


def make_attachment(url: str, filename: str, size: int, content_type: str) -> JSON:
    """A message's attachment as the gateway shows it (`url` on the CDN, here the emulator's)."""
    aid = snowflake()
    image = {"width": 64, "height": 64} if content_type.startswith("image/") else {}
    return {
        "id": aid,
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url.replace("/attachments/", "/media/", 1),
        "content_type": content_type,
        **image,
    }


def interaction_modal_submit(
    custom_id: str,
    components: Mapping[str, str] | Sequence[JSON],
    user: JSON | None = None,
    channel_id: Id | None = None,
    guild_id: Id | None = None,
    member: JSON | None = None,
    *,
    message: JSON | None = None,
    permissions: int | str | None = None,
) -> JSON:
    """INTERACTION_CREATE type 5. ``components`` as {text_input_custom_id: value} or raw component dicts."""
    if isinstance(components, Mapping):  # one action row per text input, as for a classic TextInput modal
        components = [
            {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
            for k, v in components.items()
        ]
    data: JSON = {"custom_id": custom_id, "components": list(components)}
    return _interaction(5, data, user, member, guild_id, channel_id, permissions, message)


# ---------------------------------------------------------------- the emulator


@dataclass
class Call:
    """One REST request (path relative to /api/v10), recorded once its reply is built (``status`` is set)."""

    method: str
    path: str
    json: Any
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    files: list[JSON] = field(default_factory=list)
    at: float = 0.0  # time.monotonic() on receipt


CALL = web.RequestKey("call", Call)  # the Call being answered, for handlers


@dataclass
class Frame:
    at: float  # time.monotonic()
    op: int
    d: Any
    t: str | None = None


@dataclass
class _Failure:
    method: str
    pattern: str
    status: int
    retry_after: float
    left: int
    code: int = 0


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    zlib: Any  # a zlib compressobj when the client asked for compress=zlib-stream
    live: bool = False  # set once READY/RESUMED went out; until then dispatches only go to the buffer


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py compares it verbatim and reads "...; charset=utf-8" as text.
    # Via: discord.py takes a 429 without it for a Cloudflare ban, and real responses always carry it.
    return web.Response(
        body=json.dumps(obj).encode(),
        status=status,
        headers={"Content-Type": "application/json", "Via": "1.1 google", **(headers or {})},
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status)


class DiscordEmulator:
    def __init__(
        self,
        *,
        bot_id: int = DEFAULT_BOT_ID,
        application_id: int | None = None,
        bot_name: str = "Lore",
        owner_id: int = DEFAULT_OWNER_ID,
        guilds: Sequence[JSON] = (),
        heartbeat_interval_ms: int = 41_250,
        echo_messages: bool = True,
        token: str | None = None,
        message_content_allowed: bool = True,
    ) -> None:
        self.bot_user = make_user(bot_id, bot_name, bot=True) | {"verified": True, "mfa_enabled": False}
        self.owner_user = make_user(owner_id, "owner")
        self.application_id = str(application_id or bot_id)  # modern apps: bot user id == application id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo_messages = echo_messages  # like Discord, echo the bot's own posts as MESSAGE_CREATE/UPDATE
        self.token = (
            token  # when set, bot-authenticated REST calls and IDENTIFY must use it (else 401 / 4004)
        )
        # False: the privileged Message Content intent is not enabled in the (emulated) Developer Portal,
        # so an IDENTIFY asking for it is closed with 4014, as Discord does.
        self.message_content_allowed = message_content_allowed
        self.port = 0
        self.calls: list[Call] = []
        self.frames: list[Frame] = []  # received from the client
        self.sent: list[Frame] = []  # sent to the client
        self.heartbeats: list[tuple[float, float]] = []  # (received_at, acked_at), time.monotonic()
        self.identifies: list[JSON] = []
        self.connects: list[dict[str, str]] = []  # query string of each gateway connection
        self.identify_count = self.resume_count = self.seq = 0
        self.session_id: str | None = None
        self.guilds: dict[str, JSON] = {}
        self.channels: dict[str, JSON] = {}
        self.messages: dict[str, JSON] = {}
        self.history: dict[str, list[JSON]] = {}
        self.commands: dict[str | None, list[JSON]] = {}  # None = global, else guild id
        self.interactions: dict[str, JSON] = {}  # by token
        self.originals: dict[str, JSON] = {}  # token -> @original response message
        self._command_ids: dict[tuple[str | None, str], str] = {}
        self.files: dict[str, bytes] = {}  # CDN path -> content (`attach`)
        self._acked: set[str] = set()
        self._failures: list[_Failure] = []
        self._buffer: deque[tuple[int, str, JSON]] = deque(maxlen=1000)  # replayed on RESUME
        self._conns: set[_Conn] = set()
        self._conn: _Conn | None = None
        self._intents = 0
        self._ready_sent = self._resumed_sent = 0
        self._replay_after: int | None = None
        self._lock = asyncio.Lock()  # keeps seq order and each zlib stream intact across concurrent sends
        self._runner: web.AppRunner | None = None
        for g in guilds:  # Discord always lists the bot itself among a guild's members (guild.me)
            members = g.get("members", [])
            members = (
                members
                if any(m["user"]["id"] == self.bot_user["id"] for m in members)
                else [*members, make_member(self.bot_user)]
            )
            self.guilds[g["id"]] = g | {"members": members, "member_count": len(members)}
            self.channels |= {c["id"]: c for c in g.get("channels", []) + g.get("threads", [])}

    async def __aenter__(self) -> DiscordEmulator:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        c, m, w = "/channels/{cid}", "/channels/{cid}/messages/{mid}", "/webhooks/{app}/{token}"
        cmds = ("/applications/{app}/commands", "/applications/{app}/guilds/{gid}/commands")
        for method, path, handler in [
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._app_info),
            ("GET", "/gateway", self._gateway_info),
            ("GET", "/gateway/bot", self._gateway_info),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/guilds/{gid}/members/{uid}", self._get_member),
            ("GET", c, self._get_channel),
            ("GET", f"{c}/messages", self._get_history),
            ("POST", f"{c}/messages", self._post_message),
            *((verb, m, self._channel_message) for verb in ("GET", "PATCH", "DELETE")),
            ("POST", f"{c}/typing", self._no_content),
            ("POST", f"{m}/threads", self._thread_from_message),
            ("POST", f"{c}/threads", self._thread_without_message),
            ("POST", "/interactions/{iid}/{token}/callback", self._interaction_callback),
            ("POST", w, self._followup),
            *((verb, f"{w}/messages/{{mid}}", self._webhook_message) for verb in ("GET", "PATCH", "DELETE")),
            *((verb, path, self._commands) for verb in ("GET", "PUT") for path in cmds),
        ]:
            app.router.add_route(method, API_PREFIX + path, handler)
        app.router.add_get("/attachments/{tail:.*}", self._attachment)
        app.router.add_route("*", "/{tail:.*}", self._catch_all)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def patched(self) -> AbstractContextManager[DiscordEmulator]:
        """Context manager pointing discord.py at this emulator (see ``patch_discord``)."""
        return patch_discord(self)

    # -- test API
    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        return [c for c in self.calls if c.method == method.upper() and re.fullmatch(path_regex, c.path)]

    async def wait_for(self, method: str, path_regex: str, count: int = 1, timeout: float = 10) -> list[Call]:
        """Wait until at least ``count`` calls match; returns all matching calls."""
        await self._until(
            lambda: len(self.calls_to(method, path_regex)) >= count,
            timeout,
            f"{count} x {method} {path_regex}; saw {[(c.method, c.path) for c in self.calls]}",
        )
        return self.calls_to(method, path_regex)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: float = 0.5,
        times: int = 1,
        code: int = 0,
    ) -> None:
        """Answer the next ``times`` matching calls with ``status`` (429: a real-looking route rate limit).
        ``code`` is the JSON error code of other statuses, e.g. 50013 (Missing Permissions) with 403."""
        self._failures.append(_Failure(method.upper(), path_regex, status, retry_after, times, code))

    def add_history(self, channel_id: Id, messages: Sequence[JSON]) -> None:
        """Preload history (e.g. ``message_create`` payloads) served by GET /channels/{id}/messages."""
        for msg in messages:
            self._remember(msg | {"channel_id": str(channel_id)})

    def attach(
        self, channel_id: Id, filename: str, data: bytes, content_type: str, *, size: int | None = None
    ) -> JSON:
        """Put a file on the emulated CDN and return its attachment object (`size` overrides the
        real size, to play an oversize upload without sending one)."""
        path = f"/attachments/{channel_id}/{snowflake()}/{filename}"
        self.files[path] = data
        url = f"http://127.0.0.1:{self.port}{path}?ex=6790a1b2&is=678f5032&hm=0123abcd"
        return make_attachment(url, filename, len(data) if size is None else size, content_type)

    async def _attachment(self, request: web.Request) -> web.Response:
        """The CDN: no credentials needed (the signed query string is the capability)."""
        self.calls.append(Call("GET", request.path, None, dict(request.query), dict(request.headers), 200))
        data = self.files.get(request.path)
        return web.Response(body=data) if data is not None else web.Response(status=404)

    def add_channel(self, channel: JSON) -> None:
        self.channels[channel["id"]] = channel

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until READY was sent (on_ready fires ``guild_ready_timeout`` after the last GUILD_CREATE)."""
        await self._until(lambda: self._ready_sent > 0, timeout, "READY")

    async def dispatch(self, event: str, data: JSON) -> int | None:
        """Send op 0 ``event`` with the next seq (and buffer it for resumes). Returns the seq, or None
        when the client's intents mean Discord would not deliver it (e.g. no GUILD_MESSAGES intent)."""
        prepared = self._prepare(event, data)
        if prepared is None:
            return None
        async with self._lock:
            self.seq += 1
            if event != "READY":  # a resume replays missed events, never the handshake
                self._buffer.append((self.seq, event, prepared))
            if self._conn is not None and self._conn.live:
                await self._write(self._conn, {"op": 0, "s": self.seq, "t": event, "d": prepared})
            return self.seq

    async def force_reconnect(
        self,
        mode: Literal["op7", "close", "invalidate"] = "op7",
        *,
        replay_after: int | None = None,
        timeout: float = 10,
    ) -> None:
        """Make the client reconnect; returns once it is back. "op7" sends RECONNECT, "close" drops the socket
        with 4000 (both resumable: the client sends RESUME); "invalidate" sends op 9 false (it re-IDENTIFYs).
        ``replay_after=seq`` replays buffered events after ``seq`` on resume even if the client already had
        them, as Discord may redeliver (duplicate-event tests). Events dispatched meanwhile come on resume."""
        conn = self._conn
        assert conn is not None, "no gateway connection"
        resumed, ready = self._resumed_sent, self._ready_sent
        self._replay_after = replay_after
        if mode == "close":
            await conn.ws.close(code=4000)
        else:
            async with self._lock:
                await self._write(conn, {"op": 7, "d": None} if mode == "op7" else {"op": 9, "d": False})
        if mode == "invalidate":
            await self._until(lambda: self._ready_sent > ready, timeout, "re-IDENTIFY and READY")
        else:
            await self._until(lambda: self._resumed_sent > resumed, timeout, "RESUME and RESUMED")

    # -- internals: gateway
    async def _until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None

    async def _write(self, conn: _Conn, payload: JSON) -> None:  # caller holds self._lock
        payload = {"op": payload["op"], "d": payload.get("d"), "s": payload.get("s"), "t": payload.get("t")}
        self.sent.append(Frame(time.monotonic(), payload["op"], payload["d"], payload["t"]))
        text = json.dumps(payload)
        try:
            if conn.zlib is None:
                await conn.ws.send_str(text)
            else:  # zlib-stream: one deflate context per connection; each message ends in a Z_SYNC_FLUSH
                data = conn.zlib.compress(text.encode()) + conn.zlib.flush(zlib.Z_SYNC_FLUSH)
                await conn.ws.send_bytes(data)
        except ConnectionResetError:
            pass  # the socket went away mid-send; the event stays buffered for a resume

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        # discord.py 2.7 always asks for ?compress=zlib-stream (zstd-stream if `zstandard` is installed) and
        # decompresses only binary frames. We honour zlib-stream so the client's real decompression path runs,
        # and send plain text frames otherwise. IDENTIFY's own `compress` flag is ignored, as Discord does.
        self.connects.append(dict(request.query))
        conn = _Conn(ws, zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None)
        self._conns.add(conn)
        self._conn = conn
        async with self._lock:
            await self._write(conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    self.frames.append(Frame(time.monotonic(), frame.get("op"), frame.get("d")))
                    await self._on_frame(conn, frame.get("op"), frame.get("d"))
        finally:
            self._conns.discard(conn)
            self._conn = None if self._conn is conn else self._conn
        return ws

    async def _on_frame(self, conn: _Conn, op: int | None, d: Any) -> None:
        if op == 1:  # ack at once, so gaps in `heartbeats` reflect only the client's timing
            got = time.monotonic()
            async with self._lock:
                await self._write(conn, {"op": 11})
            self.heartbeats.append((got, time.monotonic()))
        elif op == 2:
            await self._identify(conn, d)
        elif op == 6:
            await self._resume(conn, d)
        elif op == 8 and (g := self.guilds.get(str(d.get("guild_id")))):  # REQUEST_GUILD_MEMBERS (chunking)
            chunk = {"guild_id": g["id"], "members": g["members"], "chunk_index": 0, "chunk_count": 1}
            await self.dispatch("GUILD_MEMBERS_CHUNK", chunk | {"nonce": d.get("nonce")})

    async def _identify(self, conn: _Conn, d: JSON) -> None:
        self.identify_count += 1
        self.identifies.append(d)
        if self.token is not None and d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if not self.message_content_allowed and int(d.get("intents") or 0) & INTENT_MESSAGE_CONTENT:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._intents = int(d.get("intents") or 0)
        async with self._lock:
            self.session_id, self.seq, conn.live = secrets.token_hex(16), 0, True
            self._buffer.clear()
        await self.dispatch(
            "READY",
            template(
                "ready",
                user=self.bot_user,
                session_id=self.session_id,
                resume_gateway_url=self.gateway_url,
                guilds=[{"id": gid, "unavailable": True} for gid in self.guilds],
                shard=d.get("shard", [0, 1]),
                application={"id": self.application_id, "flags": 0},
            ),
        )
        for g in self.guilds.values():  # READY lists guilds as unavailable; each then arrives as GUILD_CREATE
            # ... with the guild's active threads, those opened since it started included.
            threads = [
                c
                for c in self.channels.values()
                if c.get("guild_id") == g["id"]
                and "thread_metadata" in c
                and not c["thread_metadata"].get("archived")
            ]
            await self.dispatch("GUILD_CREATE", g | {"threads": threads})
        self._ready_sent += 1

    async def _resume(self, conn: _Conn, d: JSON) -> None:
        self.resume_count += 1
        async with self._lock:
            if d.get("session_id") != self.session_id:
                await self._write(conn, {"op": 9, "d": False})
                return
            after = int(d.get("seq") or 0)
            if self._replay_after is not None:
                after, self._replay_after = min(after, self._replay_after), None
            for seq, event, data in list(self._buffer):
                if seq > after:
                    await self._write(conn, {"op": 0, "s": seq, "t": event, "d": data})
            self.seq += 1
            await self._write(conn, {"op": 0, "s": self.seq, "t": "RESUMED", "d": {}})
            conn.live = True
        self._resumed_sent += 1

    def _remember(self, msg: JSON) -> None:
        if msg["id"] in self.messages:
            return
        self.messages[msg["id"]] = msg
        cid, gid = msg["channel_id"], msg.get("guild_id")
        if cid not in self.channels:
            self.channels[cid] = make_text_channel(cid, gid) if gid else make_dm_channel(cid, msg["author"])
        if not msg.get("flags", 0) & FLAG_EPHEMERAL:
            self.history.setdefault(cid, []).append(msg)

    def _prepare(self, event: str, data: JSON) -> JSON | None:
        """Track what the client is told, and filter/redact like Discord does for the client's intents."""
        if event == "INTERACTION_CREATE":
            data = data | {"application_id": self.application_id}  # interactions always belong to this app
            self.interactions[data["token"]] = data
            if data.get("message"):
                self._remember(data["message"])
        elif event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            if event == "MESSAGE_CREATE":
                self._remember(data)
            in_guild, bot_id = bool(data.get("guild_id")), self.bot_user["id"]
            if not self._intents & (INTENT_GUILD_MESSAGES if in_guild else INTENT_DMS):
                return None
            addressed = bot_id in [data["author"]["id"], *(u["id"] for u in data.get("mentions", []))]
            if in_guild and not addressed and not self._intents & INTENT_MESSAGE_CONTENT:  # privileged intent
                data = data | {"content": "", "embeds": [], "attachments": [], "components": []}
        elif event == "THREAD_CREATE":
            if not self._intents & INTENT_GUILDS:
                return None
            self.channels.setdefault(data["id"], {k: v for k, v in data.items() if k != "newly_created"})
        elif event == "MESSAGE_REACTION_ADD" and not self._intents & INTENT_GUILD_MESSAGE_REACTIONS:
            return None
        return data

    # -- internals: REST
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)  # the gateway websocket
        body: Any = None
        files: list[JSON] = []
        if request.content_type.startswith("multipart/"):  # uploads: JSON rides along as payload_json
            form = await request.post()
            body = json.loads(str(form.get("payload_json", "{}")))
            files = [
                {"field": k, "filename": v.filename, "size": len(v.file.read())}
                for k, v in form.items()
                if isinstance(v, web.FileField)
            ]
        elif raw := await request.read():
            body = json.loads(raw)
        path = request.path.removeprefix(API_PREFIX)
        # Webhook and interaction-callback routes authenticate with the token in their path instead.
        bot_auth = not path.startswith(("/webhooks/", "/interactions/"))
        if (
            self.token is not None
            and bot_auth
            and request.headers.get("Authorization") != f"Bot {self.token}"
        ):
            self.calls.append(
                Call(request.method, path, body, dict(request.query), dict(request.headers), 401)
            )
            return _error(401, 0, "401: Unauthorized")
        call = request[CALL] = Call(
            request.method,
            path,
            body,
            dict(request.query),
            dict(request.headers),
            files=files,
            at=time.monotonic(),
        )
        try:
            response: web.StreamResponse = self._take_failure(call) or await handler(request)
            call.status = response.status
            return response
        finally:
            self.calls.append(call)

    def _take_failure(self, call: Call) -> web.Response | None:
        for f in self._failures:
            if f.left > 0 and f.method in (call.method, "*") and re.fullmatch(f.pattern, call.path):
                f.left -= 1
                if f.status != 429:
                    return _error(f.status, f.code, f"{f.status}: {http.HTTPStatus(f.status).phrase}")
                headers = {
                    "Retry-After": str(math.ceil(f.retry_after)),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{f.retry_after:.3f}",
                    "X-RateLimit-Reset": f"{time.time() + f.retry_after:.3f}",
                    "X-RateLimit-Scope": "user",
                    "X-RateLimit-Bucket": f"{zlib.crc32(f.pattern.encode()):08x}",
                }
                return _json(
                    {"message": "You are being rate limited.", "retry_after": f.retry_after, "global": False},
                    429,
                    headers,
                )
        return None

    async def _me(self, _request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _app_info(self, _request: web.Request) -> web.Response:
        return _json(
            template(
                "application",
                id=self.application_id,
                name=self.bot_user["username"],
                owner=self.owner_user,
                bot=self.bot_user,
            )
        )

    async def _gateway_info(self, _request: web.Request) -> web.Response:  # /gateway and /gateway/bot
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _no_content(self, _request: web.Request) -> web.Response:  # e.g. the typing indicator
        return web.Response(status=204)

    async def _catch_all(self, _request: web.Request) -> web.Response:  # unknown route: 200 {}, but recorded
        return _json({})

    async def _create_dm(self, request: web.Request) -> web.Response:
        rid = str(request[CALL].json["recipient_id"])
        dms = [c for c in self.channels.values() if c["type"] == 1 and c["recipients"][0]["id"] == rid]
        ch = dms[0] if dms else make_dm_channel(snowflake(), make_user(rid, f"user{rid[-4:]}"))
        self.channels[ch["id"]] = ch
        return _json(ch)

    async def _get_member(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/members/{user}: the member as in the guild's GUILD_CREATE."""
        guild = self.guilds.get(request.match_info["gid"])
        if guild is None:
            return _error(404, 10004, "Unknown Guild")
        uid = request.match_info["uid"]
        member = next((m for m in guild.get("members", []) if m["user"]["id"] == uid), None)
        return _json(member) if member is not None else _error(404, 10007, "Unknown Member")

    async def _get_channel(self, request: web.Request) -> web.Response:
        ch = self.channels.get(request.match_info["cid"])
        return _json(ch) if ch else _error(404, 10003, "Unknown Channel")

    async def _get_history(self, request: web.Request) -> web.Response:
        q = request.query
        msgs = sorted(self.history.get(request.match_info["cid"], []), key=lambda m: int(m["id"]))
        limit = max(1, min(100, int(q.get("limit", 50))))
        if "after" in q:  # the oldest `limit` after the id -- still returned newest first, like Discord
            msgs = [m for m in msgs if int(m["id"]) > int(q["after"])][:limit]
        else:
            msgs = [m for m in msgs if "before" not in q or int(m["id"]) < int(q["before"])][-limit:]
        return _json(msgs[::-1])

    async def _create_message(
        self, channel_id: str, body: JSON, files: Sequence[JSON] = (), interaction: JSON | None = None
    ) -> JSON:
        msg = message_create(body.get("content") or "", self.bot_user, channel_id)
        cdn = f"https://cdn.discordapp.com/attachments/{channel_id}"
        msg |= {
            "tts": bool(body.get("tts")),
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "flags": int(body.get("flags") or 0),
            "attachments": [
                {
                    "id": snowflake(),
                    "filename": f["filename"],
                    "size": f["size"],
                    "url": f"{cdn}/{f['filename']}",
                    "proxy_url": f"{cdn}/{f['filename']}",
                }
                for f in files
            ],
        }
        if gid := self.channels.get(channel_id, {}).get("guild_id"):
            msg["guild_id"] = gid
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        if ref := body.get("message_reference"):  # a reply
            msg |= {
                "type": 19,
                "message_reference": {"type": 0, "channel_id": channel_id, **ref},
                "referenced_message": self.messages.get(str(ref.get("message_id"))),
            }
        if interaction is not None:
            user = interaction.get("user") or interaction["member"]["user"]
            meta = {
                "id": interaction["id"],
                "type": interaction["type"],
                "user": user,
                "authorizing_integration_owners": interaction["authorizing_integration_owners"],
            }
            msg |= {
                "type": 20 if interaction["type"] == 2 else 0,
                "webhook_id": self.application_id,
                "application_id": self.application_id,
                "interaction_metadata": meta,
            }
        self._remember(msg)
        if self.echo_messages and not msg["flags"] & FLAG_EPHEMERAL:
            await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def _edit(self, msg: JSON, body: JSON) -> JSON:
        for key in ("content", "embeds", "components", "attachments"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ("" if key == "content" else [])
        # An edit may only toggle SUPPRESS_EMBEDS: ephemerality is fixed, and any edit ends "thinking…".
        new = int(body["flags"] or 0) & FLAG_SUPPRESS_EMBEDS if "flags" in body else msg["flags"]
        msg["flags"] = (msg["flags"] & (FLAG_EPHEMERAL | FLAG_HAS_THREAD)) | (new & ~FLAG_LOADING)
        msg["edited_timestamp"] = now_iso()
        if self.echo_messages and not msg["flags"] & FLAG_EPHEMERAL:
            await self.dispatch("MESSAGE_UPDATE", msg)
        return msg

    async def _message_op(self, request: web.Request, msg: JSON | None) -> web.Response:  # GET/PATCH/DELETE
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            self.messages.pop(msg["id"], None)
            cid = msg["channel_id"]
            self.history[cid] = [m for m in self.history.get(cid, []) if m is not msg]
            return web.Response(status=204)
        return _json(await self._edit(msg, request[CALL].json or {}) if request.method == "PATCH" else msg)

    async def _post_message(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        return _json(await self._create_message(request.match_info["cid"], call.json or {}, call.files))

    async def _channel_message(self, request: web.Request) -> web.Response:
        msg = self.messages.get(request.match_info["mid"])
        in_channel = msg is not None and msg["channel_id"] == request.match_info["cid"]
        return await self._message_op(request, msg if in_channel else None)

    async def _open_thread(self, parent_id: str, body: JSON, thread_id: str | None, kind: int) -> JSON:
        guild_id = self.channels.get(parent_id, {}).get("guild_id")
        thread = make_thread(
            parent_id,
            guild_id,
            body.get("name") or "thread",
            thread_id=thread_id,
            owner_id=self.bot_user["id"],
            thread_type=int(body.get("type") or kind),
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        self.channels[thread["id"]] = thread
        if guild_id in self.guilds:
            await self.dispatch("THREAD_CREATE", thread | {"newly_created": True})
        return thread

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        mid = request.match_info["mid"]  # like Discord, the thread takes its starter message's id
        if mid in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        thread = await self._open_thread(request.match_info["cid"], request[CALL].json or {}, mid, 11)
        if msg := self.messages.get(mid):
            msg |= {"thread": thread, "flags": msg["flags"] | FLAG_HAS_THREAD}
        return _json(thread)

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        # The API's default for a thread without a starter message is a private thread (12).
        return _json(await self._open_thread(request.match_info["cid"], request[CALL].json or {}, None, 12))

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        token = request.match_info["token"]
        inter = self.interactions.get(token)
        if inter is None or inter["id"] != request.match_info["iid"]:
            return _error(404, 10062, "Unknown interaction")
        if token in self._acked:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        self._acked.add(token)
        rtype, data = int(call.json["type"]), call.json.get("data") or {}
        flags = int(data.get("flags") or 0)
        info: JSON = {"id": inter["id"], "type": inter["type"]}
        resource: JSON = {"type": rtype}
        if rtype in (4, 5):  # a reply, or a deferred one (a "thinking…" placeholder)
            body = data if rtype == 4 else {"flags": flags | FLAG_LOADING}
            msg = await self._create_message(inter["channel_id"], body, call.files, inter)
            self.originals[token] = msg
            info |= {
                "response_message_id": msg["id"],
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": bool(flags & FLAG_EPHEMERAL),
            }
            resource["message"] = msg
        elif rtype in (6, 7) and (source := inter.get("message")):  # (deferred) update of the clicked message
            msg = self.originals[token] = self.messages.get(source["id"]) or source
            info["response_message_id"] = msg["id"]
            if rtype == 7:
                resource["message"] = await self._edit(msg, data)
        if call.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json({"interaction": info, "resource": resource})

    async def _followup(self, request: web.Request) -> web.Response:
        call: Call = request[CALL]
        token = request.match_info["token"]
        if (inter := self.interactions.get(token)) is None:
            return _error(404, 10015, "Unknown Webhook")
        original = self.originals.get(token)
        if original is not None and original["flags"] & FLAG_LOADING:
            # The first follow-up after a deferred reply replaces the "thinking…" placeholder (keeping its
            # ephemerality, whatever the follow-up's flags say).
            return _json(await self._edit(original, call.json or {}))
        return _json(await self._create_message(inter["channel_id"], call.json or {}, call.files, inter))

    async def _webhook_message(self, request: web.Request) -> web.Response:
        token, mid = request.match_info["token"], request.match_info["mid"]
        msg = self.originals.get(token) if mid == "@original" else self.messages.get(mid)
        return await self._message_op(request, msg if token in self.interactions else None)

    async def _commands(self, request: web.Request) -> web.Response:
        gid = request.match_info.get("gid")
        if request.method == "PUT":  # bulk overwrite; like Discord, a command keeps its id across syncs
            defaults = {"type": 1, "description": "", "options": [], "default_member_permissions": None}
            self.commands[gid] = [
                defaults
                | cmd
                | {
                    "id": self._command_ids.setdefault((gid, cmd["name"]), snowflake()),
                    "application_id": self.application_id,
                    "version": snowflake(),
                }
                | ({"guild_id": gid} if gid else {})
                for cmd in request[CALL].json or []
            ]
        return _json(self.commands.get(gid, []))


@contextmanager
def patch_discord(emu: DiscordEmulator) -> Iterator[DiscordEmulator]:
    """Point discord.py's REST base and default gateway at ``emu``; restores the originals on exit.

    A plain Client/Bot never asks REST for the gateway URL (only AutoShardedClient calls GET /gateway/bot),
    and resumes go to READY's ``resume_gateway_url``, which the emulator sets to itself."""
    route, ws = discord.http.Route, discord.gateway.DiscordWebSocket
    old_base, old_gateway = route.BASE, ws.DEFAULT_GATEWAY
    route.BASE, ws.DEFAULT_GATEWAY = emu.rest_base, yarl.URL(emu.gateway_url)
    try:
        yield emu
    finally:
        route.BASE, ws.DEFAULT_GATEWAY = old_base, old_gateway
