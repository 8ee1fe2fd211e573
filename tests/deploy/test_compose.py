"""deploy/compose.yaml: valid against the Compose Specification, and wired to real Lore settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, interpolate, lore_accepts, run, settings_from_env, tool

COMPOSE = DEPLOY / "compose.yaml"
LORE_SERVICES = ["web", "slack", "discord", "worker-ingest", "worker-feedback", "beat"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_does_catch_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace('command: ["serve"', 'comand: ["serve"', 1))
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken))
    assert result.returncode == 1 and "comand" in result.stdout


def test_every_role_and_engine_is_a_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"qdrant", "redis", "postgres", *LORE_SERVICES}
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert any(v.endswith(":/qdrant/storage") for v in services["qdrant"]["volumes"])
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"  # AOF persistence
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["worker-ingest"]["deploy"]["replicas"] >= 2  # the replicas example
    assert services["slack"]["profiles"] == ["slack"] and services["discord"]["profiles"] == ["discord"]
    assert services["web"]["command"] == ["serve", "--no-gateways"]


@pytest.mark.parametrize("name", LORE_SERVICES)
def test_each_lore_service_runs_a_real_command_with_valid_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    service = compose["services"][name]
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    lore_accepts(service["command"])
    env = service["environment"]
    settings = settings_from_env(env, monkeypatch, tmp_path)
    assert settings.qdrant.url == "http://qdrant:6333" and settings.redis.url == "redis://redis:6379/0"
    assert settings.database.url and settings.database.url.startswith("postgresql://")
    assert settings.log_format == "json"
    if name == "beat":
        assert service["healthcheck"] == {"disable": True}
        return
    url = env["HEALTHCHECK_URL"]
    port = {
        "web": 8000,
        "slack": settings.web.ops_port,
        "discord": settings.web.ops_port,
        "worker-ingest": settings.worker.metrics_port,
        "worker-feedback": settings.worker.metrics_port,
    }[name]
    assert port and f"127.0.0.1:{port}/" in url


def test_the_mounted_settings_file_loads(compose: dict[str, Any]) -> None:
    from config.loader import load_settings

    mounts = compose["x-lore"]["volumes"]
    assert "./lore.toml:/etc/lore/lore.toml:ro" in mounts
    settings = load_settings(DEPLOY / "lore.toml")
    assert [s.name for s in settings.sources] == ["handbook"]
    assert str(settings.sources[0].path) == "/srv/docs"
    docs = interpolate(next(m for m in mounts if m.endswith(":/srv/docs:ro"))).split(":")[0]
    assert (COMPOSE.parent / docs).is_dir()
