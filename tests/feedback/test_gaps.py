"""Content gaps (feedback/gaps.py) on the real MiniLM embedder and real SQLite and PostgreSQL:
300 seeded questions, six planted topics the docs don't cover, clustered with scikit-learn."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from config.settings import Settings
from feedback.gaps import (
    KEEP_REPORTS,
    GapFilters,
    cluster_questions,
    last_run,
    latest_report,
    select_questions,
    store_report,
    view_report,
)
from tests.feedback.gapdata import ANSWERABLE_DOWN, PLANTED, PLANTED_PER_TOPIC, seed, topic_of


@pytest.fixture
def seeded(db):
    return seed(db.sessions)


def _settings(db, tmp_path, **gaps):
    return Settings(data_dir=tmp_path / "data", database={"url": db.url}, gaps=gaps)


def test_the_six_planted_topics_are_the_top_gaps(db, seeded, embedder, tmp_path):
    runs = cluster_questions(db.sessions, _settings(db, tmp_path), embedder, requested_by="test")
    by_kind = {r.kind: r for r in runs}
    assert by_kind["gaps"].questions == 6 * PLANTED_PER_TOPIC + ANSWERABLE_DOWN
    assert by_kind["top"].questions == 300

    report = latest_report(db.sessions, "gaps")
    views = view_report(report.clusters)
    top6 = views[:6]
    topics = []
    for v in top6:
        found = Counter(topic_of(q) for q in v.examples)
        [(topic, _n)] = found.most_common(1)
        topics.append(topic)
        assert topic_of(v.label) == topic  # the label is a question of that topic
    assert sorted(topics) == sorted(PLANTED)  # each planted topic is one of the six, once
    # Each planted cluster holds (nearly) all of its topic's questions and nothing else.
    for v in top6:
        members = next(c for c in report.clusters if c["label"] == v.label)["members"]
        kinds = Counter(topic_of(m["question"]) for m in members)
        assert len(kinds) == 1 and v.count >= PLANTED_PER_TOPIC * 0.9
    # The answerable questions that got a 👎 stay below every planted topic.
    assert all(v.count < min(t.count for t in top6) for v in views[6:])
    assert report.params["signals"] == ["abstained", "down", "escalated"]
    assert last_run(db.sessions) == max(report.finished_at, latest_report(db.sessions, "top").finished_at)

    # Top questions: the answerable questions are there too, with their 👍.
    top = view_report(latest_report(db.sessions, "top").clusters)
    assert sum(v.count for v in top) >= 280 and any(v.up for v in top)
    assert any("VPN" in v.label or "leave" in v.label or "deploy" in v.label.lower() for v in top[:10])


def test_questions_asked_of_experts_are_gaps_and_expert_answers_are_counted(db, seeded, embedder, tmp_path):
    """An answered question nobody voted on becomes a gap once someone asks an expert about it;
    a planted cluster shows how many of its questions experts were asked, and answered."""
    from feedback.experts import record_escalation, record_expert_reply
    from tests.feedback.test_experts import escalated, reply

    def escalate(answer_id: str, *, answered: bool) -> None:
        record_escalation(db.sessions, escalated(answer_id))
        if answered:
            record_expert_reply(db.sessions, reply(answer_id=answer_id, message_id=f"m-{answer_id}"))

    quiet = seeded["answerable"][-1]  # answered, maybe 👍, never 👎: not a gap on its own
    escalate(quiet, answered=False)
    topic, ids = next(iter(seeded["planted"].items()))
    for answer_id in ids[:4]:
        escalate(answer_id, answered=True)

    [gaps, _top] = cluster_questions(db.sessions, _settings(db, tmp_path), embedder, requested_by="test")
    assert gaps.questions == 6 * PLANTED_PER_TOPIC + ANSWERABLE_DOWN + 1
    since = datetime.now(UTC) - timedelta(days=90)
    [selected] = [
        q for q in select_questions(db.sessions, "gaps", since=since, limit=1000) if q.answer_id == quiet
    ]
    assert selected.escalated and not selected.expert
    clusters = latest_report(db.sessions, "gaps").clusters
    [planted] = [v for v in view_report(clusters) if topic_of(v.label) == topic]
    assert (planted.escalated, planted.expert_answered) == (4, 4)
    assert planted.as_dict()["expert_share"] == round(4 / planted.count, 3)


def test_filters_recount_a_stored_run(db, seeded, embedder, tmp_path):
    cluster_questions(db.sessions, _settings(db, tmp_path), embedder)
    clusters = latest_report(db.sessions, "gaps").clusters
    everything = view_report(clusters)
    slack = view_report(clusters, GapFilters(channel="slack"))
    discord = view_report(clusters, GapFilters(channel="discord"))
    assert sum(v.count for v in slack) + sum(v.count for v in discord) == sum(v.count for v in everything)
    assert all(set(v.platforms) == {"slack"} for v in slack)
    one = view_report(clusters, GapFilters(channel="slack:C0HELP"))
    assert 0 < sum(v.count for v in one) < sum(v.count for v in slack)
    recent = datetime.now(UTC).date() - timedelta(days=7)
    last_week = view_report(clusters, GapFilters(date_from=recent))
    assert 0 < sum(v.count for v in last_week) < sum(v.count for v in everything)
    assert view_report(clusters, GapFilters(source="handbook"))  # every seeded answer searched it
    assert view_report(clusters, GapFilters(source="nope")) == []
    # Weekly trend: eight weeks, adding up to the count when the whole range fits.
    v = everything[0]
    assert len(v.trend) == 8 and sum(n for _w, n in v.trend) == v.count
    parsed = GapFilters.parse({"source": " handbook ", "channel": "", "from": "2026-01-02", "to": "bad"})
    assert parsed == GapFilters(source="handbook", date_from=datetime(2026, 1, 2).date())


def test_runs_are_kept_per_kind_and_pruned(db):
    start = datetime.now(UTC)
    for i in range(KEEP_REPORTS + 3):
        store_report(db.sessions, "gaps", [], params={"i": i}, questions=i, started_at=start)
    store_report(db.sessions, "top", [], params={}, questions=1, started_at=start)
    assert latest_report(db.sessions, "gaps").params == {"i": KEEP_REPORTS + 2}
    from sqlalchemy import func, select

    from feedback.models import GapReport

    with db.sessions() as s:
        counts = dict(s.execute(select(GapReport.kind, func.count()).group_by(GapReport.kind)).all())
    assert counts == {"gaps": KEEP_REPORTS, "top": 1}


def test_the_celery_task_clusters_through_the_real_app(db, seeded, tmp_path):
    """`lore.cluster_gaps` as a worker runs it (Celery's own task machinery, executed here)."""
    from workers.app import make_celery
    from workers.names import QUEUE_OF, TaskName
    from workers.schedule import build_schedule

    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": db.url},
        redis={"url": "redis://127.0.0.1:6379/0", "prefix": "lore-gaps-test:"},
        gaps={"every": "6h"},
    )
    entry = build_schedule(settings)["cluster-gaps-every-6h"]
    assert entry["task"] == TaskName.CLUSTER_GAPS and entry["options"]["queue"] == "feedback"
    assert QUEUE_OF[TaskName.CLUSTER_GAPS] == "feedback"
    app = make_celery(settings)
    runs = app.tasks[TaskName.CLUSTER_GAPS].apply(kwargs=entry["kwargs"]).get(disable_sync_subtasks=False)
    assert {r["kind"] for r in runs} == {"gaps", "top"}
    report = latest_report(db.sessions, "gaps")
    assert report.requested_by == "schedule" and len(view_report(report.clusters)) >= 6


def test_the_scheduled_digest_task_posts_through_the_real_celery_app(db, seeded, embedder, tmp_path):
    """`lore.gaps_digest` as beat schedules it and a feedback worker runs it (Celery's own task
    machinery, executed here), to the Slack emulator, asking Slack which channels are public."""
    import asyncio

    from tests.emulators.slack import BOT_TOKEN, SlackEmulator
    from workers.app import make_celery
    from workers.names import QUEUE_OF, TaskName
    from workers.schedule import build_schedule

    async def run() -> tuple[dict, list, list]:
        async with SlackEmulator(channels={"C0ENG": {"is_private": True}}) as slack:
            settings = Settings(
                data_dir=tmp_path / "data",
                database={"url": db.url},
                redis={"url": "redis://127.0.0.1:6379/0", "prefix": "lore-digest-test:"},
                slack={"bot_token": BOT_TOKEN, "api_url": slack.base_url},
                gaps={"digest_every": "7d", "digest_channel": "slack:C0DOCS"},
            )
            cluster_questions(db.sessions, settings, embedder)
            entry = build_schedule(settings)["gaps-digest-every-7d"]
            assert entry["task"] == TaskName.GAPS_DIGEST and entry["options"]["queue"] == "feedback"
            assert QUEUE_OF[TaskName.GAPS_DIGEST] == "feedback"
            task = make_celery(settings).tasks[TaskName.GAPS_DIGEST]
            result = await asyncio.to_thread(lambda: task.apply(kwargs=entry["kwargs"]).get())
            return result, slack.calls_to("chat.postMessage"), slack.calls_to("conversations.info")

    result, [call], infos = asyncio.run(run())
    assert result == {"posted": True, "channel": "slack:C0DOCS", "clusters": 5}
    assert call.args["channel"] == "C0DOCS" and call.args["text"].startswith("Top new documentation gaps")
    assert sorted(c.args["channel"] for c in infos) == ["C0DOCS", "C0ENG", "C0HELP"]  # once each
    # C0ENG is private: every label is a question asked in C0HELP or on Discord's side.
    private = {m["question"] for c in latest_report(db.sessions, "gaps").clusters for m in c["members"]}
    private -= {
        m["question"]
        for c in latest_report(db.sessions, "gaps").clusters
        for m in c["members"]
        if m["channel"] != "C0ENG"
    }
    assert not [q for q in private if q in call.args["text"]]


def test_the_in_process_client_clusters_on_request(db, seeded, tmp_path, embedder):
    import time

    from knowledge.service import Knowledge
    from workers.inprocess import InProcessTaskClient

    settings = _settings(db, tmp_path)
    knowledge = Knowledge(settings, embedder=embedder)
    client = InProcessTaskClient(settings, knowledge=knowledge)
    try:
        client.request_gap_report(requested_by="console:ada")
        deadline = time.monotonic() + 120
        while latest_report(db.sessions, "top") is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.close()
        knowledge.close()
    report = latest_report(db.sessions, "gaps")
    assert report is not None and report.requested_by == "console:ada"


def test_lore_gaps_prints_the_same_clusters_as_json(db, seeded, tmp_path):
    from typer.testing import CliRunner

    from bot.cli import app

    config = tmp_path / "lore.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db.url}"\n')
    first = CliRunner().invoke(app, ["--config", str(config), "gaps", "--json"])
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["kind"] == "gaps" and len(body["clusters"]) >= 6
    labels = [c["label"] for c in body["clusters"]]
    assert sorted(topic_of(x) for x in labels[:6]) == sorted(PLANTED)
    stored = [v.label for v in view_report(latest_report(db.sessions, "gaps").clusters, limit=20)]
    assert labels == stored  # the CLI prints the stored run, as the page shows it
    since = (datetime.now(UTC).date() - timedelta(days=7)).isoformat()
    recent = CliRunner().invoke(app, ["--config", str(config), "gaps", "--json", "--since", since])
    assert recent.exit_code == 0, recent.output
    assert sum(c["count"] for c in json.loads(recent.stdout)["clusters"]) < sum(
        c["count"] for c in body["clusters"]
    )
    bad = CliRunner().invoke(app, ["--config", str(config), "gaps", "--since", "last week"])
    assert bad.exit_code == 2


def test_the_digest_posts_the_top_new_gaps_to_slack_without_mentions(db, seeded, embedder, tmp_path):
    import asyncio

    from tests.emulators.slack import BOT_TOKEN, SlackEmulator
    from workers.jobs import gaps_digest
    from workers.post import post_message

    async def run() -> list:
        async with SlackEmulator() as slack:
            settings = Settings(
                data_dir=tmp_path / "data",
                database={"url": db.url},
                slack={"bot_token": BOT_TOKEN, "api_url": slack.base_url},
                gaps={
                    "digest_every": "7d",
                    "digest_channel": "slack:C0DOCS",
                    "console_url": "https://lore.example",
                },
            )
            cluster_questions(db.sessions, settings, embedder)
            result = await asyncio.to_thread(
                gaps_digest, db.sessions, settings, lambda c, t: post_message(settings, c, t)
            )
            assert result["posted"] and result["clusters"] == 5
            return slack.calls_to("chat.postMessage")

    [call] = asyncio.run(run())
    assert call.args["channel"] == "C0DOCS"
    text = call.args["text"]
    assert text.startswith("Top new documentation gaps since")
    assert "<https://lore.example/gaps|Open the Gaps page>" in text
    lines = text.splitlines()[1:6]
    assert all(topic_of(line.split(". ", 1)[1].rsplit(" (", 1)[0]) for line in lines)


def test_digest_text_quotes_questions_inertly():
    from feedback.gaps import ClusterView
    from workers.post import digest_message

    view = ClusterView(1, "<!channel> @here who fixes the printer?", 4, [], [], 4, 0, 0, {}, [])
    since = datetime(2026, 12, 1, tzinfo=UTC)
    slack = digest_message("slack", [view], since=since, url=None)
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack and "@\u2060here" in slack
    discord = digest_message("discord", [view], since=since, url="https://lore.example/")
    assert "Gaps page: <https://lore.example/gaps>" in discord


def test_the_digest_posts_to_a_discord_channel_mentioning_nobody(db, seeded, embedder, tmp_path):
    import asyncio

    from tests.emulators.discord_emu import DiscordEmulator, make_guild, make_text_channel
    from tests.feedback.gapdata import CHANNELS, WORKSPACES
    from workers.jobs import gaps_digest
    from workers.post import post_message

    async def run() -> list:
        gid = WORKSPACES["discord"]  # the seeded questions' channels are this server's, open to all
        asked_in = [make_text_channel(c, gid, f"help-{c}") for c in CHANNELS["discord"]]
        guild = make_guild(gid, channels=[make_text_channel("100000000", gid, "docs"), *asked_in])
        channel = guild["channels"][0]["id"]
        async with DiscordEmulator(guilds=[guild]) as emu:
            settings = Settings(
                data_dir=tmp_path / "data",
                database={"url": db.url},
                discord={"token": "emulator-token", "api_base": emu.rest_base},
                gaps={"digest_every": "7d", "digest_channel": f"discord:{channel}", "digest_top": 3},
            )
            cluster_questions(db.sessions, settings, embedder)
            result = await asyncio.to_thread(
                gaps_digest, db.sessions, settings, lambda c, t: post_message(settings, c, t)
            )
            assert result == {"posted": True, "channel": f"discord:{channel}", "clusters": 3}
            return emu.calls_to("POST", rf"/channels/{channel}/messages")

    [call] = asyncio.run(run())
    assert call.status == 200 and call.json["allowed_mentions"] == {"parse": []}
    assert call.headers["Authorization"] == "Bot emulator-token"
    lines = call.json["content"].splitlines()
    assert len(lines) == 5 and lines[-1] == "The Gaps page of Lore's console has the details."
    assert all(topic_of(line.split(". ", 1)[1].rsplit(" (", 1)[0]) for line in lines[1:4])


SALARY = [  # a topic asked mostly privately, a few times in a public channel
    "When is my salary review this year?",
    "How is the yearly salary raise decided?",
    "What salary band am I in?",
    "When do salary increases take effect?",
    "Who approves a salary raise for my level?",
]
SALARY_IN_PUBLIC = [
    "How are salary reviews scheduled?",
    "Is there a salary review calendar?",
    "When are salary raises announced?",
]
PIP = [  # a topic asked only privately
    "What happens if I am put on a performance improvement plan?",
    "Can I be fired during a performance improvement plan?",
    "How long does a performance improvement plan last?",
    "Who sees my performance improvement plan?",
]
# Where a question can be asked without the whole workspace reading it, as the log records it:
# (platform, workspace, channel, thread)
PRIVATE_PLACES = [
    ("slack", "T0LORE", "D0ALICE", None),  # a DM
    ("slack", "T0LORE", "C0HELP", None),  # an ephemeral /ask in a public channel
    ("slack", "T0LORE", "C0SECRET", "1.000001"),  # a private channel (conversations.info says so)
    ("slack", "T0LORE", "C0HR", "1.000002"),  # a channel a rule grants restricted documents
    ("slack", "T0LORE", "G0GROUP", "1.000003"),  # a group DM
    ("discord", None, "555555555", None),  # a Discord DM
    ("web", None, None, None),  # the console's chat
]


def _ask(db, question: str, place: tuple, at: datetime) -> str:
    from feedback.schema import InteractionRecord
    from feedback.store import record_interaction
    from knowledge.answer import ABSTAIN_TEXT, Answer

    platform, workspace, channel, thread = place
    answer = Answer(
        question=question, text=ABSTAIN_TEXT, abstained=True, model="extractive", prompt_version="v1"
    )
    record = InteractionRecord(
        answer=answer,
        correlation_id=answer.answer_id,
        platform=platform,
        workspace=workspace,
        channel=channel,
        thread=thread,
        user_hash="someone",
        created_at=at,
    )
    record_interaction(db.sessions, record)
    return answer.answer_id


def test_the_digest_quotes_only_questions_asked_in_public_channels(db, seeded, embedder, tmp_path):
    """A channel reads the digest: questions asked in DMs, with /ask, in private or group
    channels, in a channel with restricted documents or in the console never appear in it. A
    cluster of such questions is posted as a count; one with a few public questions is labelled
    by one of those. The console's Gaps page (reviewers) still shows everything."""
    import asyncio

    from tests.emulators.slack import BOT_TOKEN, SlackEmulator
    from workers.jobs import gaps_digest
    from workers.post import post_message

    now = datetime.now(UTC)
    private = []
    for i in range(28):
        place = PRIVATE_PLACES[i % len(PRIVATE_PLACES)]
        at = now - timedelta(hours=1 + i)
        private.append(SALARY[i % len(SALARY)])
        _ask(db, SALARY[i % len(SALARY)], place, at)
        private.append(PIP[i % len(PIP)])
        _ask(db, PIP[i % len(PIP)], place, at)
    public_place = ("slack", "T0LORE", "C0HELP", "1.000009")
    for i, question in enumerate(SALARY_IN_PUBLIC):
        _ask(db, question, public_place, now - timedelta(hours=2 + i))

    async def run() -> tuple[dict, list, list]:
        async with SlackEmulator(channels={"C0SECRET": {"is_private": True}}) as slack:
            settings = Settings(
                data_dir=tmp_path / "data",
                database={"url": db.url},
                slack={"bot_token": BOT_TOKEN, "api_url": slack.base_url},
                sources=[
                    {
                        "name": "handbook",
                        "type": "directory",
                        "path": str(tmp_path),
                        "access_rules": [{"glob": "pay/**", "access": ["channel:slack:C0HR"]}],
                    }
                ],
                gaps={"digest_every": "7d", "digest_channel": "slack:C0DOCS", "digest_top": 8},
            )
            cluster_questions(db.sessions, settings, embedder)
            result = await asyncio.to_thread(
                gaps_digest, db.sessions, settings, lambda c, t: post_message(settings, c, t)
            )
            return result, slack.calls_to("chat.postMessage"), slack.calls_to("conversations.info")

    result, [call], infos = asyncio.run(run())
    assert result["posted"] and result["clusters"] == 8
    text = call.args["text"]
    for question in {*private}:
        assert question not in text
    assert "salary band" not in text.lower() and "improvement plan" not in text.lower()
    lines = text.splitlines()[1:9]
    [pip] = [line for line in lines if "asked privately" in line]
    assert pip.split(". ", 1)[1] == "28 questions asked privately (the Gaps page has them)"
    [salary] = [line for line in lines if "salary" in line.lower()]
    assert salary.split(". ", 1)[1].rsplit(" (", 1)[0] in SALARY_IN_PUBLIC
    assert salary.endswith(f"({28 + len(SALARY_IN_PUBLIC)} questions)")  # counts stay whole
    # Each channel is looked up once; DMs, group DMs and restricted channels need no look-up.
    asked = sorted(c.args["channel"] for c in infos)
    assert asked == sorted(set(asked)) and "C0SECRET" in asked and "C0HELP" in asked
    assert not {"D0ALICE", "G0GROUP", "C0HR"} & set(asked)

    # Reviewers see everything on the Gaps page: the private questions are its labels and examples.
    views = view_report(latest_report(db.sessions, "gaps").clusters)
    shown = {q for v in views for q in [v.label, *v.examples]}
    assert set(PIP) & shown and set(SALARY) & shown


def test_a_digest_channel_shared_with_another_organisation_quotes_no_question(db, seeded, embedder, tmp_path):
    import asyncio

    from tests.emulators.slack import BOT_TOKEN, SlackEmulator
    from workers.jobs import gaps_digest
    from workers.post import post_message

    async def run() -> str:
        async with SlackEmulator(channels={"C0DOCS": {"is_shared": True, "is_ext_shared": True}}) as slack:
            settings = Settings(
                data_dir=tmp_path / "data",
                database={"url": db.url},
                slack={"bot_token": BOT_TOKEN, "api_url": slack.base_url},
                gaps={"digest_every": "7d", "digest_channel": "slack:C0DOCS"},
            )
            cluster_questions(db.sessions, settings, embedder)
            result = await asyncio.to_thread(
                gaps_digest, db.sessions, settings, lambda c, t: post_message(settings, c, t)
            )
            assert result["posted"] and result["clusters"] == 5
            [call] = slack.calls_to("chat.postMessage")
            return str(call.args["text"])

    lines = asyncio.run(run()).splitlines()[1:6]
    assert all(line.endswith("asked privately (the Gaps page has them)") for line in lines), lines


def test_a_discord_channel_is_public_unless_everyone_is_denied_viewing_it(tmp_path):
    """What the digest asks Discord (REST, against the emulator) before quoting a channel's
    questions: open text and forum channels yes; one hiding from @everyone, an unknown channel
    or no token, no."""
    import asyncio

    from tests.emulators.discord_emu import (
        DiscordEmulator,
        make_forum_channel,
        make_guild,
        make_text_channel,
    )
    from workers.post import VIEW_CHANNEL, channel_is_public

    gid = "888888888888"
    open_, forum = make_text_channel("100000001", gid, "help"), make_forum_channel("100000002", gid)
    hidden = make_text_channel("100000003", gid, "leads") | {
        "permission_overwrites": [{"id": gid, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}]
    }
    others = make_text_channel("100000004", gid, "ops") | {  # another role denied: still public
        "permission_overwrites": [{"id": "777", "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}]
    }

    async def run() -> dict[str, bool]:
        async with DiscordEmulator(guilds=[make_guild(gid, channels=[open_, forum, hidden, others])]) as emu:
            settings = Settings(
                data_dir=tmp_path, discord={"token": "emulator-token", "api_base": emu.rest_base}
            )
            ids = ["100000001", "100000002", "100000003", "100000004", "100000009"]
            found = {c: await asyncio.to_thread(channel_is_public, settings, "discord", c) for c in ids}
            found["no token"] = await asyncio.to_thread(
                channel_is_public, Settings(data_dir=tmp_path), "discord", "100000001"
            )
            return found

    assert asyncio.run(run()) == {
        "100000001": True,
        "100000002": True,
        "100000003": False,
        "100000004": True,
        "100000009": False,  # unknown: 404
        "no token": False,
    }
