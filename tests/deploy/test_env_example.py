"""deploy/.env.example: every setting is in it, it is what scripts/env_example.py generates from
config/settings.py (so a new setting can't be forgotten), secrets are empty, and it parses."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from tests.conftest import REPO

EXAMPLE = REPO / "deploy" / ".env.example"
LINE = re.compile(r"^(#\s*)?(LORE_[A-Z0-9_]+)=(.*)$")


def settings_leaves(model: type[BaseModel], prefix: str = "LORE_") -> dict[str, bool]:
    """Every setting's environment name -> whether it is a secret (walked independently of the script)."""
    found: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found |= settings_leaves(ann, f"{prefix}{name.upper()}__")
        else:
            found[f"{prefix}{name.upper()}"] = ann is SecretStr or SecretStr in getattr(ann, "__args__", ())
    return found


def lines() -> dict[str, tuple[bool, str]]:
    """LORE_ name -> (commented out, value)."""
    found = {}
    for line in EXAMPLE.read_text().splitlines():
        m = LINE.match(line)
        if m:
            found[m.group(2)] = (bool(m.group(1)), m.group(3))
    return found


def test_it_is_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "env_example.py"), "--check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_listed() -> None:
    from config.settings import Settings

    missing = sorted(set(settings_leaves(Settings)) - set(lines()))
    assert not missing, f"not in deploy/.env.example: {missing} (run scripts/env_example.py)"


def test_secrets_are_set_empty_and_everything_else_shows_its_default_commented_out() -> None:
    from config.settings import Settings

    listed = lines()
    for name, secret in settings_leaves(Settings).items():
        commented, value = listed[name]
        if secret:
            assert not commented and value == "", name
        else:
            assert commented, name


def test_the_defaults_it_shows_are_lores_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from config.loader import load_settings

    for name, (_commented, value) in lines().items():
        if name != "LORE_CONFIG":
            monkeypatch.setenv(name, value)  # uncommented: as if every default were written out
    (tmp_path / "lore.toml").touch()
    monkeypatch.chdir(tmp_path)
    written = load_settings(tmp_path / "lore.toml")
    for name in [n for n in lines() if n != "LORE_CONFIG"]:
        monkeypatch.delenv(name)
    # From the environment a relative data_dir is relative to the working directory; the default
    # sits beside lore.toml. Here both are tmp_path, so they must name the same folder.
    assert written.data_dir.resolve() == load_settings(tmp_path / "lore.toml").data_dir.resolve()
    assert written.model_dump(exclude={"data_dir"}) == load_settings(tmp_path / "lore.toml").model_dump(
        exclude={"data_dir"}
    )
