"""Build the settings once, with errors that name the setting (and the lore.toml line)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from config.settings import DirectorySource, GitSource, Settings


class ConfigError(Exception):
    """Settings could not be built. The message is meant for the person running Lore."""


def config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    return Path(os.environ.get("LORE_CONFIG", "lore.toml"))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    path = config_path(config_file)
    explicit = config_file is not None or "LORE_CONFIG" in os.environ
    if explicit and not path.is_file():
        raise ConfigError(f"config file {path} does not exist (from LORE_CONFIG or --config)")
    toml_file = path if path.is_file() else None
    if toml_file is not None:
        _check_toml_syntax(toml_file)

    class _Settings(Settings):
        model_config = SettingsConfigDict(toml_file=toml_file)

    try:
        settings: Settings = _Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, toml_file)) from None
    if toml_file is not None:
        _resolve_source_paths(settings, toml_file.parent)
    return settings


def _check_toml_syntax(path: Path) -> None:
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _resolve_source_paths(settings: Settings, base: Path) -> None:
    # Relative paths in lore.toml are relative to the file, not to wherever Lore was started.
    for src in settings.sources:
        if isinstance(src, DirectorySource) and not src.path.is_absolute():
            src.path = (base / src.path).resolve()
        if isinstance(src, GitSource) and "://" not in src.repo and not src.repo.startswith("git@"):
            repo = Path(src.repo)
            if not repo.is_absolute():
                src.repo = str((base / repo).resolve())


def _explain(exc: ValidationError, toml_file: Path | None) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("directory", "git", "website"))]
        dotted = ".".join(loc)
        env = "LORE_" + "__".join(p.upper() for p in loc if not p.isdigit())
        where = ""
        if toml_file is not None:
            line = _find_line(toml_file, loc)
            if line:
                where = f" ({toml_file}, line {line})"
        lines.append(f"  {dotted or '(root)'}{where}: {err['msg']} [env: {env}]")
    return "\n".join(lines)


def _find_line(path: Path, loc: list[str]) -> int | None:
    """Best effort: the line in lore.toml that sets `loc` (e.g. sources.1.max_pages)."""
    text = path.read_text(encoding="utf-8").splitlines()
    start, keys = 0, list(loc)
    if len(keys) >= 2 and keys[1].isdigit():  # an array of tables: find its n-th header
        header = re.compile(rf"^\s*\[\[\s*{re.escape(keys[0])}\s*\]\]")
        seen = -1
        for i, line in enumerate(text):
            if header.match(line):
                seen += 1
                if seen == int(keys[1]):
                    start = i
                    break
        else:
            return None
        keys = keys[2:]
        if not keys:
            return start + 1
    key = keys[-1] if keys else loc[0]
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start, len(text)):
        if pattern.match(text[i]):
            return i + 1
    return None


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret masked."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "**********" if value.get_secret_value() else ""
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return walk(settings.model_dump(mode="python"))  # type: ignore[no-any-return]
