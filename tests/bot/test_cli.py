"""The `lore` command line: index, ask, sources, eval and config, through Typer's runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import write

SUMMARY_KEYS = {"added", "changed", "deleted", "unchanged", "chunks_embedded", "skipped", "seconds"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    docs = tmp_path / "docs"
    write(docs, "vpn.md", "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta.\n")
    write(docs, "leave.md", "# Leave\n\nEveryone gets 25 days of paid leave a year.\n")
    write(docs, "empty.md", "")
    (tmp_path / "lore.toml").write_text(
        '[llm]\nprovider = "extractive"\n\n[[sources]]\nname = "hb"\ntype = "directory"\npath = "docs"\n'
        'url_prefix = "https://git.example/hb/blob/main/"\n'
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result


def test_index_json_prints_exactly_the_summary(project):
    result = run("index", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["sources"] and list(data["sources"]) == ["hb"]
    summary = data["sources"]["hb"]
    assert set(summary) == SUMMARY_KEYS
    assert summary["added"] == 2 and summary["skipped"] == [{"path": "empty.md", "reason": "empty file"}]
    again = json.loads(run("index", "--json").stdout)["sources"]["hb"]
    assert again["unchanged"] == 2 and again["chunks_embedded"] == 0


def test_index_prints_a_readable_summary(project):
    result = run("index")
    assert result.exit_code == 0
    assert "hb" in result.stdout and "skipped hb:empty.md: empty file" in result.stdout


def test_ask_before_indexing_says_how_to_index(project):
    result = run("ask", "vpn?")
    assert result.exit_code == 1
    assert "lore index" in result.stderr


def test_ask_prints_answer_and_sources_and_json(project):
    run("index")
    result = run("ask", "how do I install the VPN?")
    assert result.exit_code == 0
    assert "WireGuard" in result.stdout and "[1] VPN" in result.stdout
    assert "https://git.example/hb/blob/main/vpn.md" in result.stdout
    data = json.loads(run("ask", "how do I install the VPN?", "--json").stdout)
    assert {
        "answer_id",
        "text",
        "abstained",
        "citations",
        "chunks",
        "model",
        "prompt_version",
        "timings",
    } <= set(data)
    assert set(data["timings"]) == {"retrieve_ms", "generate_ms", "total_ms"}
    assert set(data["citations"][0]) == {
        "n",
        "title",
        "url",
        "source",
        "path",
        "doc_id",
        "updated_at",
        "score",
    }
    assert data["chunks"][0]["doc_hash"]


def test_sources_lists_counts_and_last_sync(project):
    run("index")
    data = json.loads(run("sources", "--json").stdout)["sources"][0]
    assert data["name"] == "hb" and data["documents"] == 2 and data["chunks"] >= 2 and data["last_sync"]
    # Two chunks are too few to calibrate abstention on: the built-in thresholds, shown as such.
    assert data["abstention"]["origin"] == "default"
    assert "0.43 / 0.66 default" in run("sources", env={"COLUMNS": "200"}).stdout


def test_eval_reports_recall_mrr_and_abstention(project):
    run("index")
    questions = project / "q.jsonl"
    rows = [
        {"id": "1", "question": "how many days of leave?", "sources": ["leave.md"], "facts": ["25 days"]},
        {"id": "2", "question": "vpn client?", "sources": ["vpn.md"], "facts": ["WireGuard"]},
        {"id": "3", "question": "what is the stock price of Tesla today?", "sources": [], "facts": []},
    ]
    kinds = ["factual", "factual", "not-in-corpus"]
    lines = [json.dumps({**r, "kind": k}) for r, k in zip(rows, kinds, strict=True)]
    questions.write_text("\n".join(lines) + "\n")
    data = json.loads(run("eval", str(questions), "--k", "3", "--json").stdout)
    overall = data["overall"]
    assert overall["recall_at_k"] == 1.0 and overall["mrr"] == 1.0
    assert overall["abstain_not_in_corpus"] == 1.0 and overall["false_abstain"] == 0.0
    assert overall["fact_hit_rate"] == 1.0
    assert set(data["by_kind"]) == {"factual", "not-in-corpus"}
    bad = project / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "x"}\n')
    result = run("eval", str(bad))
    assert result.exit_code == 1 and "bad.jsonl:1" in result.stderr


def test_eval_answers_adds_the_answer_checks(project):
    run("index")
    questions = project / "q.jsonl"
    rows = [
        {
            "id": "1",
            "question": "how many days of leave?",
            "sources": ["leave.md"],
            "facts": ["25 days"],
            "kind": "factual",
            "ideal": "Everyone gets 25 days of paid leave a year.",
        },
        {
            "id": "2",
            "question": "vpn client?",
            "sources": ["vpn.md"],
            "facts": ["WireGuard"],
            "kind": "factual",
        },
        {
            "id": "3",
            "question": "what is the stock price of Tesla today?",
            "sources": [],
            "facts": [],
            "kind": "not-in-corpus",
        },
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plain = json.loads(run("eval", str(questions), "--json").stdout)
    assert "answers" not in plain and "answer_checks" not in plain["per_question"][0]
    data = json.loads(run("eval", str(questions), "--answers", "--json").stdout)
    assert {k: v for k, v in data.items() if k != "answers"}.keys() == plain.keys()
    overall = data["answers"]["overall"]
    # The extractive generator quotes its sources: every citation valid and supported.
    assert overall["answered"] == 2 and overall["citation_validity"] == 1.0
    assert overall["citation_support"] == 1.0 and overall["unsupported_claims"] == 0.0
    assert overall["fact_hit_rate"] == 1.0
    assert overall["abstain_not_in_corpus"] == 1.0 and overall["false_abstain"] == 0.0
    assert overall["ideal"]["pairs"] == 1 and overall["ideal"]["cosine"] > 0.6
    assert set(data["answers"]["by_kind"]) == {"factual", "not-in-corpus"}
    assert data["answers"]["by_kind"]["not-in-corpus"]["answered"] == 0
    checks = {r["id"]: r["answer_checks"] for r in data["per_question"]}
    assert checks["3"] is None and checks["1"]["citations"] >= 1
    table = run("eval", str(questions), "--answers", env={"COLUMNS": "200"}).stdout
    assert "Answers" in table and "citation support" in table


def test_config_show_masks_secrets(project):
    result = run(
        "config",
        "show",
        env={"LORE_LLM__API_KEY": "sk-very-secret-value", "LORE_SLACK__BOT_TOKEN": "xoxb-1234-secret"},
    )
    assert result.exit_code == 0
    assert "sk-very-secret-value" not in result.stdout and "xoxb-1234-secret" not in result.stdout
    data = json.loads(result.stdout)
    assert data["llm"]["api_key"] == "**********" and data["sources"][0]["name"] == "hb"


def test_environment_overrides_the_toml_file(project):
    data = json.loads(run("config", "show", env={"LORE_LLM__PROVIDER": "openai"}).stdout)
    assert data["llm"]["provider"] == "openai"


def test_malformed_toml_names_the_line(project):
    (project / "lore.toml").write_text('[[sources]]\nname = "hb"\ntype = "directory\npath = "docs"\n')
    result = run("sources")
    assert result.exit_code == 2 and "line 3" in result.stderr


def test_bad_value_names_the_setting_and_its_line(project):
    (project / "lore.toml").write_text(
        '[[sources]]\nname = "hb"\ntype = "directory"\npath = "docs"\n\n'
        '[[sources]]\nname = "site"\ntype = "website"\nurl = "https://x.example"\nmax_pages = "lots"\n'
    )
    result = run("sources")
    assert result.exit_code == 2
    assert "sources.1.max_pages" in result.stderr and "line 10" in result.stderr


def test_bad_environment_value_names_the_variable(project):
    result = run("sources", env={"LORE_RETRIEVAL__TOP_K": "many"})
    assert (
        result.exit_code == 2
        and "retrieval.top_k" in result.stderr
        and "LORE_RETRIEVAL__TOP_K" in result.stderr
    )


def test_lore_config_points_at_another_file(project, tmp_path):
    other = tmp_path / "elsewhere.toml"
    other.write_text('[llm]\nprovider = "local"\n')
    data = json.loads(run("config", "show", env={"LORE_CONFIG": str(other)}).stdout)
    assert data["llm"]["provider"] == "local" and data["sources"] == []
    missing = run("config", "show", env={"LORE_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


@pytest.mark.parametrize("engine", ["edge", "qdrant-local"])
def test_second_process_gets_a_clear_message(project, engine, monkeypatch):
    import subprocess
    import sys

    from config import load_settings
    from knowledge.store import DataDirLocked, IndexStore

    monkeypatch.setenv("LORE_INDEX__ENGINE", engine)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from config import load_settings; from knowledge.store import IndexStore\n"
            "from knowledge.embeddings import EmbedIdentity\n"
            "s = IndexStore(load_settings()); s.ensure_collection(EmbedIdentity('m', 4))\n"
            "print('ready', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DataDirLocked, match=r"Qdrant server") as info:
            IndexStore(load_settings())
        assert str(holder.pid) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    store = IndexStore(load_settings())  # a killed holder leaves nothing behind that blocks
    try:
        assert store.collection_info()["engine"] == engine
    finally:
        store.close()


# -- lore ask --as: whose rights, and where ----------------------------------------------------------

MARKER = "Salary band L5 pays MARKER-7Q2 a year"
ACCESS_TOML = """
[llm]
provider = "extractive"

[groups]
hr = ["slack:U0HR1", "web:hana"]

[[sources]]
name = "hb"
type = "directory"
path = "docs"

[[sources.access_rules]]
glob = "hr/**"
access = ["group:hr"]

[[sources.access_rules]]
glob = "finance/**"
access = ["channel:slack:C0FIN"]

[[sources]]
name = "eng"
type = "directory"
path = "eng"

[[slack.channel_sources]]
channel = "C0ENG"
sources = ["eng"]
"""


@pytest.fixture
def restricted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    docs = tmp_path / "docs"
    write(docs, "vpn.md", "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta.\n")
    write(docs, "hr/salary.md", f"# Salary bands\n\n{MARKER}. Bands are reviewed every April.\n")
    write(docs, "finance/budget.md", "# Budget\n\nThe 2027 budget is 4 million.\n")
    write(tmp_path / "eng", "deploys.md", "# Deploys\n\nFriday deploys need the on-call lead.\n")
    (tmp_path / "lore.toml").write_text(ACCESS_TOML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _settings(root: Path):
    from config import load_settings

    return load_settings(root / "lore.toml")


def test_as_in_a_dm_is_the_persons_audience_counted_against_everything(restricted):
    from bot.commands.ask import view_for

    settings = _settings(restricted)
    view = view_for(settings, "slack:U0HR1")
    assert view.where == "dm" and view.sources is None
    assert view.audience.grants == {"public", "slack:U0HR1", "group:hr"}
    assert view.wider.grants == {"public", "group:hr", "channel:slack:C0FIN"}  # all lore.toml grants
    assert view_for(settings, "web:hana", "dm").audience.grants == {"public", "web:hana", "group:hr"}
    assert view_for(settings, "group:hr").audience.grants == {"public", "group:hr"}
    assert view_for(settings, "public").audience.grants == {"public"}
    assert view_for(settings, "slack:U0ENG").audience.grants == {"public", "slack:U0ENG"}
    # One person's several principals, as Slack's directory would find them (user group, email).
    combined = view_for(settings, ["slack:U0ENG", "slack:group:S0PAY", "email:ann@acme.example"])
    assert combined.principal == "slack:U0ENG slack:group:S0PAY email:ann@acme.example"
    assert combined.audience.grants == {
        "public",
        "slack:U0ENG",
        "slack:group:S0PAY",
        "email:ann@acme.example",
    }


def test_as_in_a_channel_is_the_channels_audience_and_scope_with_the_person_as_the_wider_one(restricted):
    from bot.commands.ask import view_for

    settings = _settings(restricted)
    view = view_for(settings, "slack:U0HR1", "channel:C0FIN")  # a bare id is Slack's
    assert view.where == "channel:slack:C0FIN" and view.sources is None
    assert view.audience.grants == {"public", "channel:slack:C0FIN"}
    assert view.wider.grants == {"public", "slack:U0HR1", "group:hr"}
    scoped = view_for(settings, "slack:U0HR1", "channel:slack:C0ENG")
    assert scoped.sources == ["eng"] and scoped.audience.grants == {"public", "channel:slack:C0ENG"}
    discord = view_for(settings, "discord:123456", "channel:discord:987654")
    assert discord.audience.grants == {"public", "channel:discord:987654"}
    assert discord.as_dict()["where"] == "channel:discord:987654"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--as", "alice"], "'alice': use slack:U…"),
        (["--as", "slack:alice"], "is not a principal"),
        (["--as", "group:legal"], "unknown group 'legal'"),
        (["--as", "slack:U0HR1", "--where", "lobby"], "use dm or channel:ID"),
        (["--as", "slack:U0HR1", "--where", "channel:general"], "a Slack channel id looks like"),
        (["--as", "slack:U0HR1", "--where", "channel:discord:abc"], "a Discord one is a number"),
        (["--where", "dm"], "--where needs --as"),
        (["--as", "slack:U0HR1", "--as", "group:hr"], "is not a person's principal"),
        (["--as", "public", "--where", "channel:C0ENG", "--source", "hb"], "answers only from eng"),
    ],
)
def test_as_and_where_refuse_what_they_cannot_mean(restricted, args, says):
    result = run("ask", "what are the salary bands?", *args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.stderr.split())


def test_as_refuses_a_channel_lore_does_not_answer_in(restricted):
    result = run(
        "ask", "x", "--as", "public", "--where", "channel:C0FIN", env={"LORE_SLACK__CHANNELS": '["C0ENG"]'}
    )
    assert result.exit_code == 2 and "does not answer in slack channel C0FIN" in result.stderr


def _filters_inside_the_engine() -> bool:
    import inspect

    from knowledge.engine import CitingQueryEngine

    return "audience" in inspect.signature(CitingQueryEngine.answer).parameters


@pytest.mark.skipif(
    not _filters_inside_the_engine(), reason="needs the engine's access filter (issue 19, access-index)"
)
def test_ask_as_answers_exactly_as_lore_would_and_json_says_with_what_and_what_was_left_out(restricted):
    assert run("index").exit_code == 0
    question = "what does salary band L5 pay?"

    unfiltered = run("ask", question, "--json")  # the admin at the keyboard: everything
    assert unfiltered.exit_code == 0 and "MARKER-7Q2" in unfiltered.stdout
    assert json.loads(unfiltered.stdout)["audience"] == []

    outsider = run("ask", question, "--as", "slack:U0ENG", "--json")
    assert outsider.exit_code == 0, outsider.output
    assert "MARKER-7Q2" not in outsider.stdout
    data = json.loads(outsider.stdout)
    assert data["audience"] == ["public", "slack:U0ENG"] and data["withheld"] >= 1
    assert all(c["access"] == ["public"] for c in data["chunks"])
    assert data["asked_as"]["principal"] == "slack:U0ENG" and data["asked_as"]["where"] == "dm"

    member = json.loads(run("ask", question, "--as", "web:hana", "--json").stdout)
    assert "MARKER-7Q2" in json.dumps(member["chunks"]) and "group:hr" in member["audience"]
    assert any(c["access"] == ["group:hr"] for c in member["chunks"])

    # In a channel the member's own rights don't count; what they could read is counted as withheld.
    channel = run("ask", question, "--as", "web:hana", "--where", "channel:C0FIN", "--json")
    data = json.loads(channel.stdout)
    assert "MARKER-7Q2" not in channel.stdout and data["withheld"] >= 1
    assert data["audience"] == ["channel:slack:C0FIN", "public"]

    # The readable form says whose view it is and how many matches were left out.
    text = run("ask", question, "--as", "slack:U0ENG", env={"COLUMNS": "200"})
    assert "MARKER-7Q2" not in text.output
    assert "as slack:U0ENG in a DM" in text.stderr and "left out" in text.stderr

    # Scoped channels answer from their sources only.
    scoped = json.loads(
        run("ask", "friday deploys?", "--as", "public", "--where", "channel:C0ENG", "--json").stdout
    )
    assert {c["source"] for c in scoped["chunks"]} == {"eng"}


def test_a_person_in_a_group_through_their_email_domain_gets_it(restricted, monkeypatch):
    from bot.commands.ask import view_for
    from knowledge.access import AccessPolicy

    monkeypatch.setenv("LORE_GROUPS", '{"hr": ["slack:U0HR1"], "staff": ["email:*@acme.example"]}')
    settings = _settings(restricted)
    view = view_for(settings, ["slack:U0ENG", "email:ann@acme.example"])
    assert "group:staff" in view.audience.grants and "group:hr" not in view.audience.grants
    # What someone's view is compared with: every grant lore.toml hands out.
    assert AccessPolicy(settings).everything().grants == {"public", "group:hr", "channel:slack:C0FIN"}
