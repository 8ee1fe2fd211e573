"""Build the settings once, with errors that name the setting (and the lore.toml line).

Relative paths written in lore.toml are relative to that file, so Lore started from another
directory (a service manager, a cron job) finds the same index and documents. Paths from
environment variables, `.env` and command-line options stay relative to the working
directory, as every other program's do. `_TOML_PATHS` lists the path settings.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.logs import url_password
from config.settings import Settings

# Settings that name a file or folder: (table, key), "" being the top level. Sources are below.
_TOML_PATHS = [
    ("", "data_dir"),
    ("datasets", "out_dir"),
    ("embedding", "model"),  # a local model directory
    ("embedding", "onnx_cache_dir"),
    ("llm", "local_model_path"),
]


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

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            layers = super().settings_customise_sources(
                settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
            )
            toml = _TomlRelativeToFile(settings_cls)
            return tuple(toml if isinstance(s, TomlConfigSettingsSource) else s for s in layers)

    try:
        settings: Settings = _Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, toml_file)) from None
    problems = settings.reference_problems()
    if problems:
        lines = [_line([str(p) for p in loc], msg, toml_file) for loc, msg in problems]
        raise ConfigError("\n".join(["invalid settings:", *lines]))
    return settings


class _TomlRelativeToFile(TomlConfigSettingsSource):
    """The TOML layer, with relative paths made absolute against the file's folder before the
    layers are merged: a path from the environment is never taken as relative to the file."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        # The default data_dir (.lore) belongs to the file too: a service started elsewhere with
        # this file must find the same index, not make an empty one in its working directory.
        data.setdefault("data_dir", ".lore")
        _paths_relative_to(Path(file_path).absolute().parent, data)
        return data


def _paths_relative_to(base: Path, data: dict[str, Any]) -> None:
    def fix(table: Any, key: str) -> None:
        if isinstance(table, dict) and isinstance(table.get(key), str) and table[key]:
            path = Path(table[key]).expanduser()
            table[key] = str(path if path.is_absolute() else (base / path).resolve())

    for section, key in _TOML_PATHS:
        fix(data.get(section) if section else data, key)
    for src in data.get("sources") or []:
        if not isinstance(src, dict):
            continue  # a validation error names it
        if src.get("type") == "directory":
            fix(src, "path")
        repo = str(src.get("repo", ""))
        if src.get("type") == "git" and "://" not in repo and not repo.startswith("git@"):
            fix(src, "repo")  # a local repository


def _check_toml_syntax(path: Path) -> None:
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _explain(exc: ValidationError, toml_file: Path | None) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("directory", "git", "website"))]
        lines.append(_line(loc, err["msg"], toml_file))
    return "\n".join(lines)


def _line(loc: list[str], msg: str, toml_file: Path | None) -> str:
    dotted = ".".join(loc)
    env = "LORE_" + "__".join(p.upper() for p in loc if not p.isdigit())
    where = ""
    if toml_file is not None:
        line = _find_line(toml_file, loc)
        if line:
            where = f" ({toml_file}, line {line})"
    return f"  {dotted or '(root)'}{where}: {msg} [env: {env}]"


def _find_line(path: Path, loc: list[str]) -> int | None:
    """Best effort: the line in lore.toml that sets `loc` (e.g. sources.1.max_pages, or
    sources.0.access_rules.2.access.0)."""
    text = path.read_text(encoding="utf-8").splitlines()
    start, table, keys = 0, list[str](), list(loc)
    # A table above an array of tables: [[slack.auto_answer]] is slack -> auto_answer -> n.
    while len(keys) >= 3 and not keys[0].isdigit() and not keys[1].isdigit() and keys[2].isdigit():
        table.append(keys.pop(0))
    while len(keys) >= 2 and keys[1].isdigit():  # an array of tables: find its n-th header
        header = re.compile(rf"^\s*\[\[\s*{re.escape('.'.join([*table, keys[0]]))}\s*\]\]")
        found = [i for i in range(start, len(text)) if header.match(text[i])]
        if int(keys[1]) >= len(found):
            if table:
                break  # not a table but a list value (`access = [...]`): its key's line
            return None
        table.append(keys[0])
        start = found[int(keys[1])]
        keys = keys[2:]
        if not keys:
            return start + 1
    keys = [k for k in keys if not k.isdigit()]
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
        if isinstance(value, str) and (password := url_password(value)):
            return value.replace(f":{password}@", ":**********@", 1)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return walk(settings.model_dump(mode="python"))  # type: ignore[no-any-return]
