"""Lore as a multi-process deployment on this machine: real Redis, real PostgreSQL, five processes.

    lore worker -Q ingest     owns the embedded index (no Qdrant server here): syncs, and answers
                              the other processes' questions over the `answer` queue
    lore worker -Q feedback   answer and vote writes into PostgreSQL, the sync dispatcher
    lore beat                 the schedule (every source syncs every 10 s here)
    lore serve                web console + Slack (Socket Mode) + Discord, with index.owner = worker:
                              it never opens the index

Each process has its own data directory, as on separate machines: they share only Redis and
PostgreSQL. Slack and Discord are the local emulators; every token is a distinctive fake value,
and the logs of the whole run are grepped for them at the end. Logs are JSON, at DEBUG. The tests
share one cluster, but each makes its own questions and votes and passes alone and in any order:
the cluster is ready once the beat's first sync has indexed both sources, and the test that stops
every process with SIGTERM (as an orchestrator would) leaves it to be started again for the next
test.

The second source is issue 19's canary (tests/canary/corpus.py): 20 restricted documents, each
with a unique marker, for `group:secret` (one Slack user and one Discord user, by id), beside
public twins. Its 100 questions go through Slack (channel mentions, a thread's follow-ups, DMs)
and Discord (DMs, mentions answered in threads, follow-ups) to `lore serve`, and from there over
Redis to the index-owning worker. People without rights get no marker and no restricted path in
anything Lore sent to Slack or Discord, nor does any process's log or /metrics hold one; the
members get the markers in their DMs, and "Answer privately" on their channel answers.

Not exercised here: a Qdrant server (none can be installed on this machine), so the index is the
embedded engine owned by the ingest worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from redis import Redis

from tests.bot.discord.conftest import ALICE, BOB, GUILD_ID, SUPPORT, DiscordPeople, answer_id_of
from tests.bot.discord.conftest import DM_CHANNEL as ALICE_DM
from tests.bot.discord.conftest import visible_text as shown
from tests.bot.slack.conftest import SlackPeople, block_texts, button_values
from tests.canary import on_discord, on_slack
from tests.canary.corpus import CanaryCorpus, canary_source, spread, write_canary_corpus
from tests.conftest import REPO, free_port
from tests.emulators.discord_emu import DiscordEmulator, make_guild, make_text_channel
from tests.emulators.slack import SlackEmulator, block_action_payload
from tests.ops.conftest import (
    LORE,
    REDIS_URL,
    Proc,
    base_env,
    drop_prefix,
    make_docs,
    metric,
    new_prefix,
    pg_database,
)

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.slow,
]

MARK = "LOREMARK7Q"  # in every fake secret: no log line may contain it
SECRETS = {
    "slack_bot": f"xoxb-7001-{MARK}-bot-token",
    "slack_app": f"xapp-1-A0LORE-7001-{MARK}-app-token",
    "slack_signing": f"{MARK}-signing-secret-0123",
    "discord": f"{MARK}.discord-bot-token.0123456789",
    "llm": f"sk-{MARK}-llm-key-0123456789",
    "session": f"{MARK}-session-secret-0123456789",
    "hash": f"{MARK}-user-hash-key-0123456789",
}
ADMIN, ADMIN_PW = "ada", "correct horse battery staple"
# The canary (tests/canary/corpus.py): the member of `secret` is U0SECRET on Slack and BOB on
# Discord, each by user id; U2 and ALICE are not.
SECRET, OUTSIDER = "U0SECRET", "U2"
SECRET_DM, OUTSIDER_DM = "D1", "D2"
BOB_DM = "1400000000000000098"
# The app as installed from its manifest: `lore doctor` checks the scopes permissions use.
MANIFEST = yaml.safe_load((REPO / "deploy" / "slack" / "manifest.yaml").read_text(encoding="utf-8"))


@dataclass
class Cluster:
    tmp: Path
    prefix: str
    db_url: str
    slack: SlackEmulator
    discord: DiscordEmulator
    canary: CanaryCorpus
    web_port: int
    metrics_ports: dict[str, int]
    procs: dict[str, Proc] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def redis(self) -> Redis:
        return Redis.from_url(REDIS_URL)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.db_url) as conn:
            return list(conn.execute(sql, args).fetchall())


async def _start(tmp: Path, slack: SlackEmulator, discord: DiscordEmulator, db_url: str) -> Cluster:
    docs = make_docs(tmp / "docs")
    cluster = Cluster(
        tmp=tmp,
        prefix=new_prefix(),
        db_url=db_url,
        slack=slack,
        discord=discord,
        canary=write_canary_corpus(tmp / "canary"),
        web_port=free_port(),
        metrics_ports={"ingest": free_port(), "feedback": free_port()},
    )
    common = {
        "sources": [
            {
                "name": "handbook",
                "type": "directory",
                "path": str(docs),
                "url_prefix": "https://wiki.example/hb/",
                "every": "10s",
            },
            canary_source(cluster.canary.root) | {"every": "10s"},
        ],
        "groups": {"secret": [f"slack:{SECRET}", f"discord:{BOB['id']}"]},
        "log_format": "json",
        "log_level": "debug",
        "llm": {"provider": "extractive", "api_key": SECRETS["llm"]},
        "redis": {"url": REDIS_URL, "prefix": cluster.prefix},
        "database": {"url": db_url},
        "index": {"owner": "worker"},
        "chat": {"user_per_minute": 1000, "channel_per_minute": 1000},
        "slack": {
            "bot_token": SECRETS["slack_bot"],
            "app_token": SECRETS["slack_app"],
            "signing_secret": SECRETS["slack_signing"],
            "api_url": slack.base_url,
        },
        "discord": {
            "token": SECRETS["discord"],
            "api_base": discord.rest_base,
            "gateway_url": discord.gateway_url,
        },
        "web": {"session_secret": SECRETS["session"], "port": cluster.web_port, "index_on_start": False},
        "feedback": {"user_hash_key": SECRETS["hash"], "spool_flush_interval": 0.5},
    }

    def env(role: str, **extra: Any) -> dict[str, str]:
        data = tmp / f"data-{role}"  # separate machines: nothing shared but Redis and PostgreSQL
        settings = {**common, "data_dir": str(data), **extra}
        cluster.envs[role] = base_env(tmp, **settings)
        return cluster.envs[role]

    env("ingest", worker={"metrics_port": cluster.metrics_ports["ingest"]})
    env("feedback", worker={"metrics_port": cluster.metrics_ports["feedback"]})
    env("beat")
    env("serve")
    await _launch(cluster)
    return cluster


async def _launch(cluster: Cluster) -> None:
    """Start the four processes (again, after a test stopped them) and wait until the cluster
    answers: every process ready, the chat adapters connected, the index built."""
    for proc in cluster.procs.values():
        proc.kill()  # a stopped one only closes its log files
    identified = cluster.discord.identify_count
    uid = uuid.uuid4().hex[:6]
    # No --loglevel: `lore worker` and `lore beat` log at lore.toml's log_level (debug here).
    commands = {
        "ingest": ["worker", "-Q", "ingest", "-n", f"ingest-{uid}@%h"],
        "feedback": ["worker", "-Q", "feedback", "-n", f"feedback-{uid}@%h"],
        "beat": ["beat"],
        "serve": ["serve"],
    }
    cluster.procs = {
        name: Proc(name, args, cluster.envs[name], cluster.tmp) for name, args in commands.items()
    }
    await cluster.procs["ingest"].wait_log(r"answer server ready", 180)
    await cluster.procs["feedback"].wait_log(r" ready\.", 120)
    await cluster.procs["beat"].wait_log(r"beat: Starting", 120)
    await cluster.procs["serve"].wait_log(r"web app listening", 180)
    await cluster.slack.wait_connected(timeout=60)
    await cluster.procs["serve"].wait_for(
        lambda: cluster.discord.identify_count > identified, 60, "the Discord gateway session"
    )
    await cluster.discord.wait_ready(timeout=60)
    await cluster.procs["ingest"].wait_for(lambda: _indexed(cluster), 180, "the beat's first sync")


def _indexed(cluster: Cluster) -> bool:
    """The handbook and the canary have each been synced once without error (by the beat, or anyone)."""
    redis = cluster.redis()
    try:
        events = [json.loads(x) for x in redis.lrange(f"{cluster.prefix}sync:history", 0, -1)]
    finally:
        redis.close()
    synced = {e.get("source") for e in events if e.get("event") == "finished" and e.get("error") is None}
    return synced >= {"handbook", "company"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    guild = make_guild(GUILD_ID, channels=[make_text_channel(SUPPORT, GUILD_ID, "support")])
    with pg_database() as db_url:
        async with (
            SlackEmulator(tokens=[SECRETS["slack_bot"]], app_tokens=[SECRETS["slack_app"]]) as slack,
            DiscordEmulator(guilds=[guild], token=SECRETS["discord"]) as discord,
        ):
            slack.scopes = ",".join(MANIFEST["oauth_config"]["scopes"]["bot"])
            started: Cluster | None = None
            try:
                started = await _start(tmp, slack, discord, db_url)
                yield started
            finally:
                if started is not None:
                    for proc in started.procs.values():
                        proc.kill()
                    drop_prefix(started.prefix)


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def running(cluster: Cluster) -> Cluster:
    """The cluster, started again if an earlier test stopped it."""
    if not all(proc.alive() for proc in cluster.procs.values()):
        await _launch(cluster)
    return cluster


async def web_ask(cluster: Cluster, question: str, vote: tuple[str, str] | None = None) -> dict[str, Any]:
    """Ask in the web chat (and vote on the answer): its JSON answer."""
    async with httpx.AsyncClient(base_url=cluster.base, timeout=60) as client:
        chat = await client.get("/chat")
        token = re.search(r'name="csrf-token" content="([^"]+)"', chat.text).group(1)
        answer = await client.post("/api/ask", json={"question": question}, headers={"X-CSRF-Token": token})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if vote is not None:
            voted = await client.post(
                "/api/vote",
                json={"answer_id": body["answer_id"], "value": vote[0], "reason": vote[1]},
                headers={"X-CSRF-Token": token},
            )
            assert voted.status_code == 200, voted.text
    return body


async def slack_ask(cluster: Cluster, question: str) -> dict[str, Any]:
    """Mention Lore in Slack: the chat.update that put the answer into its thread."""
    people = SlackPeople(cluster.slack)
    ts = await people.mention(question, user="U1")
    args: dict[str, Any] = (await people.wait_answer(ts, timeout=60)).args
    return args


async def discord_ask(cluster: Cluster, question: str, expected: str) -> None:
    """DM Lore on Discord and wait for one more answer, which contains `expected`."""
    people = DiscordPeople(cluster.discord)
    before = len(people.answers(ALICE_DM))
    await people.dm(question, user=ALICE, channel=ALICE_DM)
    answer = await people.wait_answer(ALICE_DM, count=before + 1, timeout=60)
    assert expected in json.dumps(answer)


async def signed_in(cluster: Cluster) -> tuple[httpx.AsyncClient, str]:
    """A browser session of the admin, and its CSRF token."""
    proc = await asyncio.create_subprocess_exec(
        LORE,
        "users",
        "add",
        ADMIN,
        "--role",
        "admin",
        "--password-stdin",
        env=cluster.envs["serve"],
        cwd=cluster.tmp,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(proc.communicate(ADMIN_PW.encode() + b"\n"), 120))[0].decode()
    assert proc.returncode == 0, output
    client = httpx.AsyncClient(base_url=cluster.base, timeout=60)
    login = await client.get("/login")
    token = re.search(r'name="csrf-token" content="([^"]+)"', login.text).group(1)
    response = await client.post(
        "/login",
        data={"username": ADMIN, "password": ADMIN_PW, "next": "/admin/sources", "csrf_token": token},
    )
    assert response.status_code == 303, response.text
    page = await client.get("/admin/sources")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    return client, token


async def test_a_sync_requested_from_the_console_completes_on_the_ingest_worker(cluster: Cluster) -> None:
    client, token = await signed_in(cluster)
    try:
        queued = await client.post(
            "/admin/reindex",
            data={"source": "handbook"},
            headers={"X-CSRF-Token": token, "Accept": "application/json"},
        )
        assert queued.status_code == 200, queued.text
        [handle] = queued.json()["queued"]
        # The beat syncs every source every 10 s here, so `last` on the status page may already
        # be a later sync's: wait for this task's own "finished" event in the history.
        redis = cluster.redis()
        try:
            deadline = time.monotonic() + 120
            while True:
                events = [json.loads(x) for x in redis.lrange(f"{cluster.prefix}sync:history", 0, -1)]
                mine = [e for e in events if e.get("task_id") == handle["task_id"]]
                done = [e for e in mine if e.get("event") == "finished"]
                if done:
                    break
                assert time.monotonic() < deadline, (
                    f"{handle} not finished; history: {events}\n{cluster.procs['ingest'].tail()}"
                )
                await asyncio.sleep(0.5)
        finally:
            redis.close()
        assert done[0].get("error") is None and done[0]["added"] + done[0]["unchanged"] == 4, done[0]
        status = (await client.get("/admin/sync-status")).json()
        assert status["last"]["handbook"]["state"] == "done", status
        # The sources page reads the index through its owner: the chat process never opens it.
        page = await client.get("/admin/sources")
        assert page.status_code == 200 and "could not be read" not in page.text
        assert re.search(r"handbook", page.text)
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ready", ready
    finally:
        await client.aclose()
    ingest = cluster.procs["ingest"].err()
    assert handle["task_id"] in ingest and "succeeded" in ingest
    assert not (cluster.tmp / "data-serve" / "edge").exists()  # the web process has no index of its own


async def test_answers_come_from_the_index_owner_with_one_correlation_id_across_processes(
    cluster: Cluster,
) -> None:
    body = await web_ask(cluster, "How do I set up the VPN?")
    assert not body["abstained"] and any(s["url"].endswith("it/vpn.md") for s in body["sources"])
    serve, ingest = cluster.procs["serve"], cluster.procs["ingest"]
    [bot_line] = [r for r in serve.records() if r["msg"].startswith(f"answered {body['answer_id']}")]
    owner_line = await ingest.wait_for(
        lambda: [r for r in ingest.records() if r["msg"].startswith(f"answered {body['answer_id']} for")],
        10,
        "the owner's answer line",
    )
    assert bot_line["correlation_id"] not in ("-", None)
    assert owner_line[0]["correlation_id"] == bot_line["correlation_id"]


async def test_votes_flow_through_the_feedback_worker_into_postgresql(cluster: Cluster) -> None:
    answer_id = (await web_ask(cluster, "How do I set up the VPN?", vote=("down", "outdated")))["answer_id"]
    deadline = time.monotonic() + 60
    while not (votes := cluster.query("SELECT value, reason FROM votes WHERE answer_id = %s", answer_id)):
        assert time.monotonic() < deadline, cluster.procs["feedback"].tail()
        await asyncio.sleep(0.5)
    assert votes == [("down", "outdated")]
    deadline = time.monotonic() + 60
    while not (
        rows := cluster.query("SELECT platform, question FROM interactions WHERE answer_id = %s", answer_id)
    ):
        assert time.monotonic() < deadline, cluster.procs["feedback"].tail()
        await asyncio.sleep(0.5)
    [(platform, question)] = rows
    assert platform == "web" and "VPN" in question
    assert re.search(r"Task lore\.record_vote\[vote-\w+\] succeeded", cluster.procs["feedback"].err())


async def test_slack_and_discord_answer_through_the_same_processes(cluster: Cluster) -> None:
    update = await slack_ask(cluster, "how many days of leave do we get?")
    assert "25 days" in json.dumps(update)
    await cluster.discord.wait_for("PUT", r"/applications/\d+/commands", timeout=30)
    await discord_ask(cluster, "what is the per diem in New York?", "95 USD")


def answered_by_the_owner(cluster: Cluster, answer_id: str) -> bool:
    """The ingest worker, which owns the index, logged answering `answer_id` for the chat process."""
    line = f"answered {answer_id} for a chat process"
    return any(r["msg"].startswith(line) for r in cluster.procs["ingest"].records())


async def slack_privately(cluster: Cluster, answer: Any, clicker: str, url_name: str) -> Any:
    """`clicker` clicks "Answer privately" on a channel answer: the ephemeral answer they get."""
    [value] = on_slack.private_values(answer.args)

    def theirs() -> list[Any]:
        calls = cluster.slack.calls_to("chat.postEphemeral")
        return [c for c in calls if c.args.get("user") == clicker and button_values(c.args)]

    before, url = len(theirs()), cluster.slack.new_response_url(url_name)
    click = block_action_payload(
        "lore_answer_privately", value, clicker, "C1", answer.args["ts"], response_url=url
    )
    await cluster.slack.send_interactive(click)
    await cluster.slack.wait_until(lambda: len(theirs()) > before, 60, "the private answer")
    return theirs()[before]


async def discord_privately(discord: DiscordPeople, answer: dict[str, Any], clicker: dict[str, Any]) -> Any:
    """`clicker` clicks "Answer privately" on a channel answer: the click, and the ephemeral answer."""
    [button] = on_discord.private_ids(answer)
    click = await discord.click(button, answer, user=clicker)
    reply = await on_discord.interaction_reply(discord, click["token"])
    assert discord.is_ephemeral(reply)
    return click, reply


async def test_the_canary_never_leaks_through_slack_or_discord_from_the_index_owning_worker(
    cluster: Cluster,
) -> None:
    # Issue 19's canary in worker-owner mode: `lore serve` never opens the index, every question
    # goes over Redis to the ingest worker. All 100 questions, each platform gets every subject.
    canary, serve = cluster.canary, cluster.procs["serve"]
    slack, discord = SlackPeople(cluster.slack), DiscordPeople(cluster.discord)
    paths = spread(canary.questions(), 5)  # 20 questions each, one per subject
    # Every process logs at DEBUG here: `lore serve` too, as a message not for Lore shows.
    await slack.say(paths[0][0][0], user=OUTSIDER)
    await serve.wait_for(
        lambda: [r for r in serve.records() if r["level"] == "DEBUG" and r["logger"].startswith("bot.")],
        30,
        "a DEBUG line about the message Lore ignored",
    )

    # Slack, as U2: @mentions in C1 (no "Answer privately": nothing they may read was left out),
    # follow-ups in a thread, DMs.
    for answer in await on_slack.mentions(slack, paths[0], user=OUTSIDER):
        assert on_slack.private_values(answer.args) == []
    await on_slack.thread(slack, paths[1][:10], user=OUTSIDER)
    await on_slack.dms(slack, paths[1][10:], user=OUTSIDER, channel=OUTSIDER_DM)
    # Discord, as ALICE: DMs, @mentions in #support (answered in threads), a thread's follow-ups.
    await on_discord.dms(discord, paths[2], user=ALICE, channel=ALICE_DM)
    for answer in await on_discord.mentions(discord, paths[3][:10], user=ALICE):
        assert on_discord.private_ids(answer) == []
    await on_discord.thread(discord, paths[3][10:], user=ALICE)

    # The member of `secret` asks in the channels: public content, with "Answer privately" on
    # offer. The outsider clicks it on one answer (their own rights: public), the member on another.
    secrets = await on_slack.mentions(slack, paths[4][:10], user=SECRET)
    assert all(len(on_slack.private_values(a.args)) == 1 for a in secrets)
    await slack_privately(cluster, secrets[0], OUTSIDER, "outsider-private")
    ours = await slack_privately(cluster, secrets[1], SECRET, "secret-private")
    assert paths[4][1][1].marker in block_texts(ours.args)
    bobs = await on_discord.mentions(discord, paths[4][10:], user=BOB)
    assert all(len(on_discord.private_ids(a)) == 1 for a in bobs)
    await discord_privately(discord, bobs[0], ALICE)
    click, his = await discord_privately(discord, bobs[1], BOB)
    assert paths[4][11][1].marker in shown(his)

    # The member of `secret` in a DM: the markers (half the subjects on each platform), each with
    # its restricted document cited, answered by the index owner.
    on_slack_dm, on_discord_dm = canary.questions()[0::10], canary.questions()[5::10]
    answers = await on_slack.dms(slack, on_slack_dm, user=SECRET, channel=SECRET_DM)
    for (_, c), answer in zip(on_slack_dm, answers, strict=True):
        assert c.marker in block_texts(answer.args), c.subject
        assert c.restricted_path in json.dumps(answer.args["blocks"]), c.subject
        assert answered_by_the_owner(cluster, button_values(answer.args)[0].split(":")[2]), c.subject
    answers = await on_discord.dms(discord, on_discord_dm, user=BOB, channel=BOB_DM)
    for (_, c), answer in zip(on_discord_dm, answers, strict=True):
        assert c.marker in shown(answer) and c.restricted_path in json.dumps(answer), c.subject
        assert answered_by_the_owner(cluster, answer_id_of(answer)), c.subject
    await asyncio.sleep(1)  # anything Lore still sends after the last answer

    # Nothing restricted in anything Lore sent anyone else, in any process's log, or in a metric.
    leaked = [x for x in on_slack.seen_by_others(cluster.slack, SECRET, SECRET_DM) if canary.exposed(x)]
    assert leaked == [], leaked[0][:400]
    leaked = [
        x for x in on_discord.seen_by_others(cluster.discord, BOB_DM, {click["token"]}) if canary.exposed(x)
    ]
    assert leaked == [], leaked[0][:400]
    for name, proc in cluster.procs.items():
        assert canary.exposed(proc.err() + proc.out()) == [], f"the log of {name}"
        # At DEBUG after start-up too: Celery's own lines come after its logging set-up.
        celery = name != "serve"
        assert any(
            r["level"] == "DEBUG" and r["logger"].startswith("celery.") == celery for r in proc.records()
        ), name
    ports = cluster.metrics_ports.values()
    for url in (f"{cluster.base}/metrics", *(f"http://127.0.0.1:{port}/metrics" for port in ports)):
        assert canary.leaks(await scrape(url)) == [], url
    assert not (cluster.tmp / "data-serve" / "edge").exists()  # the chat process has no index of its own


async def test_beat_schedules_syncs_that_the_workers_run(cluster: Cluster) -> None:
    redis = cluster.redis()

    def scheduled() -> list[dict[str, Any]]:
        events = [json.loads(x) for x in redis.lrange(f"{cluster.prefix}sync:history", 0, -1)]
        return [e for e in events if e.get("event") == "started" and e.get("requested_by") == "schedule"]

    try:
        await cluster.procs["beat"].wait_for(scheduled, 60, "a scheduled sync to start")
    finally:
        redis.close()
    assert "lore.sync_all" in cluster.procs["feedback"].err()


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(url)).text


async def test_metrics_from_the_web_process_and_the_workers(cluster: Cluster) -> None:
    web_url = f"{cluster.base}/metrics"
    before = await scrape(web_url)
    await web_ask(cluster, "How do I set up the VPN?", vote=("down", "outdated"))
    await slack_ask(cluster, "how many days of leave do we get?")
    await discord_ask(cluster, "what is the per diem in New York?", "95 USD")

    def grew(text: str, name: str, **labels: str) -> float:
        return (metric(text, name, **labels) or 0) - (metric(before, name, **labels) or 0)

    def counted(text: str) -> bool:  # an answer is counted just after it is delivered
        platforms = ("web", "slack", "discord")
        return all(grew(text, "lore_answers_total", platform=p, outcome="answered") >= 1 for p in platforms)

    deadline = time.monotonic() + 10
    while not counted(web := await scrape(web_url)):
        assert time.monotonic() < deadline, web
        await asyncio.sleep(0.25)
    assert grew(web, "lore_votes_total", platform="web", vote="down") == 1
    assert grew(web, "lore_answer_seconds_count", platform="web", stage="retrieve") >= 1
    assert metric(web, "lore_queue_depth", queue="ingest") is not None
    assert metric(web, "lore_broker_up") == 1
    ingest = await scrape(f"http://127.0.0.1:{cluster.metrics_ports['ingest']}/metrics")
    feedback = await scrape(f"http://127.0.0.1:{cluster.metrics_ports['feedback']}/metrics")
    assert (metric(ingest, "lore_sync_duration_seconds_count", source="handbook", outcome="done") or 0) >= 1
    assert (metric(ingest, "lore_sync_documents_sum", source="handbook") or 0) >= 4
    assert metric(ingest, "lore_sync_chunks_embedded_count", source="handbook") is not None
    assert metric(feedback, "lore_queue_depth", queue="feedback") is not None
    assert "answer" not in re.findall(r"user|channel|question", web)  # no user data in labels
    assert "U1" not in web and "alice" not in web


async def test_doctor_is_all_green_against_the_running_deployment(cluster: Cluster) -> None:
    proc = await asyncio.create_subprocess_exec(
        LORE,
        "doctor",
        "--json",
        env=cluster.envs["serve"],
        cwd=cluster.tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    report = json.loads(out)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert proc.returncode == 0 and report["ok"], json.dumps(report, indent=1) + err.decode()[-2000:]
    assert statuses == {
        "settings": "pass",
        "redis": "pass",
        "database": "pass",
        "index": "pass",
        "collection": "pass",
        "slack": "pass",
        "slack scopes": "pass",  # the manifest's: what the canary's restricted documents need
        "slack app token": "pass",
        "discord": "pass",
        "llm": "pass",
        "workers": "pass",
    }
    assert MARK not in out.decode() + err.decode()


async def test_every_process_stops_cleanly_on_sigterm_and_no_log_holds_a_secret(cluster: Cluster) -> None:
    # Some work on every platform first, so the logs checked below have answers in them.
    await web_ask(cluster, "How do I set up the VPN?")
    await slack_ask(cluster, "how many days of leave do we get?")
    await discord_ask(cluster, "what is the per diem in New York?", "95 USD")
    order = ["serve", "beat", "feedback", "ingest"]  # the chat side first, as in a rolling stop
    for name in order:
        proc = cluster.procs[name]
        proc.terminate()
        code = await proc.stopped(timeout=60)
        assert code == 0, f"{name} exited {code}\n{proc.tail()}"
    assert "SIGTERM received; shutting down" in cluster.procs["serve"].err()
    assert "answer server stopped" in cluster.procs["ingest"].err()

    for name, proc in cluster.procs.items():
        for path in (proc.out_path, proc.err_path):
            text = path.read_text(errors="replace")
            assert MARK not in text, f"a secret leaked into {path.name}"
            for secret in SECRETS.values():
                assert secret not in text
        # Every stderr line is a JSON log record; Celery's own notices on stdout are the only plain text.
        for line in proc.err().splitlines():
            assert line.startswith("{") and json.loads(line)["level"], f"{name}: {line!r}"
        for line in proc.out().splitlines():
            assert line.startswith("worker: ") or not line.strip(), f"{name} stdout: {line!r}"
    # Correlation ids are on the answer lines.
    answered = [r for r in cluster.procs["serve"].records() if r["msg"].startswith("answered ")]
    assert len(answered) >= 3 and all(re.fullmatch(r"[0-9a-f]{12}", r["correlation_id"]) for r in answered)
