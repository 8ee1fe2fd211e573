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
