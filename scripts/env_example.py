#!/usr/bin/env python3
"""Write deploy/.env.example: every Lore setting as an environment variable, with its default and
the comment written beside it in config/settings.py.

    .venv/bin/python scripts/env_example.py > deploy/.env.example    # regenerate
    .venv/bin/python scripts/env_example.py --check deploy/.env.example   # exit 1 if out of date

tests/deploy/test_env_example.py runs the check, so a new setting can't be missing from it.
"""

from __future__ import annotations

import ast
import io
import json
import sys
import tokenize
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402 - after the repository is on the path

SETTINGS_SOURCE = REPO / "config" / "settings.py"

HEADER = """\
# Lore's settings as environment variables: LORE_ + the setting's path in capitals, with `__`
# between levels (llm.base_url -> LORE_LLM__BASE_URL). Lists and tables are JSON.
# Generated from config/settings.py by scripts/env_example.py; regenerate, don't edit:
#   .venv/bin/python scripts/env_example.py > deploy/.env.example
#
# deploy/compose.yaml reads this file as `.env` (cp .env.example .env): for its own ${VARS} and as
# every Lore container's environment. A commented line shows the default. An empty value means
# "not set". Secrets are empty: fill in the ones you use, and keep .env out of version control.

# ---- the compose stack (deploy/compose.yaml) -----------------------------------------------------
POSTGRES_PASSWORD=lore
QDRANT_API_KEY=
# LORE_IMAGE=lore:latest
# LORE_PORT=8000
# LORE_DOCS=../examples/handbook
# QDRANT_VERSION=v1.19.0

# ---- where the settings file is (default: lore.toml in the working directory) --------------------
# LORE_CONFIG=/etc/lore/lore.toml
"""


def field_comments(path: Path) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment beside the field, or the comment lines above it."""
    text = path.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = text.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            start, end = item.lineno, item.end_lineno or item.lineno
            inline = [comments[n] for n in range(start, end + 1) if n in comments]
            above: list[str] = []
            n = start - 1
            while n >= 1 and lines[n - 1].strip().startswith("#"):
                above.insert(0, comments.get(n, ""))
                n -= 1
            found[(node.name, item.target.id)] = " ".join(above + inline).strip()
    return found


def _render(value: Any) -> str:
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _section(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and get_origin(annotation) is None:
        return annotation
    return None


def leaves(
    model: type[BaseModel], prefix: str = "LORE_"
) -> list[tuple[str, str, Any, bool, type[BaseModel]]]:
    """(env name, field name, default, is secret, owning class) for every setting, in order."""
    out = []
    for name, field in model.model_fields.items():
        section = _section(field.annotation)
        if section is not None:
            out.extend(leaves(section, f"{prefix}{name.upper()}__"))
            continue
        has_default = field.default is not PydanticUndefined or field.default_factory is not None
        default = field.get_default(call_default_factory=True) if has_default else None
        out.append((f"{prefix}{name.upper()}", name, default, _is_secret(field.annotation), model))
    return out


def render() -> str:
    comments = field_comments(SETTINGS_SOURCE)
    parts = [HEADER]
    current: type[BaseModel] | None = None
    for env, name, default, secret, owner in leaves(Settings):
        if owner is not current:
            current = owner
            title = "top level" if owner is Settings else env.removeprefix("LORE_").split("__")[0].lower()
            doc = ""
            if owner is not Settings and owner.__doc__:
                doc = owner.__doc__.strip().splitlines()[0].split(". ")[0].rstrip(".:")
            rule = "-" * max(4, 90 - len(title) - len(doc))
            parts.append(f"\n# ---- {title}{f': {doc}' if doc else ''} {rule}")
        note = comments.get((owner.__name__, name), "")
        if name == "sources":
            note = (
                'the sources, as JSON (usually [[sources]] in lore.toml), e.g. [{"name": "handbook", '
                '"type": "directory", "path": "/srv/docs"}]'
            )
        if note:
            parts.append(f"# {note}")
        parts.append(f"{env}=" if secret else f"# {env}={_render(default)}")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if len(argv) == 2 and argv[0] == "--check":
        current = Path(argv[1]).read_text(encoding="utf-8") if Path(argv[1]).exists() else ""
        if current != text:
            print(f"{argv[1]} is out of date: run .venv/bin/python scripts/env_example.py > {argv[1]}")
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
