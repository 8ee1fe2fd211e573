"""The docs tell the truth where a test can check it.

README.md, ARCHITECTURE.md and docs/*.md are read as a newcomer would use them, and each claim a
machine can check is checked against the code itself:

- every `lore …` command line names commands, sub-commands and options the real CLI has (through
  the Typer app's Click commands);
- every setting named as `group.field` (with its value, when one is given) or as `LORE_…` exists in
  config/settings.py's `Settings`, and every TOML example validates against it;
- docs/configuration.md lists every setting with the default the code has;
- every relative link (and its #anchor) resolves, and every repository path, dotted module name
  and `Class.member` named in code spans exists;
- README.md and ARCHITECTURE.md stay maps: at most 10 KiB and 12 KiB.

Pure parsing: no index, no network, no services.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel, TypeAdapter

from tests.conftest import REPO

DOCS = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
PACKAGES = ("config", "knowledge", "feedback", "workers", "bot")
# LORE_* variables that are not settings, and the file that reads each.
OTHER_ENV = {
    "LORE_CONFIG": "config/loader.py",
    "LORE_WHEEL_CACHE": "scripts/bootstrap",
    "LORE_DOCS": "deploy/compose.yaml",
}
FILE_TYPES = {"py", "md", "toml", "yaml", "json", "jsonl", "sqlite3", "key", "lock"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---- reading markdown ------------------------------------------------------------------------


def fences(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def spans(text: str) -> list[str]:
    """Every inline code span outside fenced blocks (a span may wrap onto the next line)."""
    return [" ".join(m.group(1).split()) for m in SPAN.finditer(prose(text))]


def code_lines(text: str) -> Iterator[str]:
    """Each line of code: fenced lines (shell comments cut off) and inline spans."""
    for _lang, body in fences(text):
        for line in body.splitlines():
            yield re.split(r"\s#\s", line, maxsplit=1)[0]
    yield from spans(text)


# ---- the CLI ---------------------------------------------------------------------------------


@cache
def cli() -> Any:
    """The real `lore` app as Click commands (Typer's own Click: groups have `commands`)."""
    from bot.cli import app

    return typer.main.get_command(app)


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _options(command: Any) -> dict[str, bool]:
    """Each option name of `command`, and whether it takes a value."""
    found = {"--help": False}
    for param in command.params:
        if param.param_type_name == "option":
            for name in [*param.opts, *param.secondary_opts]:
                found[name] = not param.is_flag
    return found


def _placeholder(token: str) -> bool:
    return token in ("…", "...") or re.fullmatch(r"[A-Z][A-Z_]*", token) is not None


def check_command_line(tokens: list[str]) -> list[str]:
    """Problems with `lore TOKENS…`: unknown commands, sub-commands or options."""
    command = cli()
    path = ["lore"]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-"):
            name = token.split("=", 1)[0]
            options = _options(command)
            if name not in options:
                return [f"`{' '.join(path)}` has no option {name}"]
            i += 2 if options[name] and "=" not in token else 1
            continue
        if not _is_group(command) or _placeholder(token):
            break
        alternatives = token.split("|")
        unknown = [a for a in alternatives if a not in command.commands]
        if unknown:
            return [f"`{' '.join(path)}` has no command {unknown[0]!r}"]
        if len(alternatives) > 1:
            return []
        command = command.commands[token]
        path.append(token)
        i += 1
    if _is_group(command) and i == len(tokens) and len(path) > 1:
        return [f"`{' '.join(path)}` needs a sub-command"]
    problems = []
    options = _options(command)
    for token in tokens[i:]:
        word = token.strip("[](),.;:")
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", word) and word.split("=", 1)[0] not in options:
            problems.append(f"`{' '.join(path)}` has no option {word.split('=', 1)[0]}")
    return problems


LORE_CALL = re.compile(r"(?:^|(?<=[\s(]))(?:\.venv/bin/)?lore(?=\s|$)(.*)")


def command_lines(text: str) -> Iterator[list[str]]:
    for line in code_lines(text):
        for match in LORE_CALL.finditer(line):
            rest = re.split(r"\s(?:&&|\|\||;|>|\|)\s", match.group(1), maxsplit=1)[0]
            yield rest.split()


# ---- settings --------------------------------------------------------------------------------


@cache
def settings_model() -> type[BaseModel]:
    from config.settings import Settings

    return Settings


def _groups() -> dict[str, type[BaseModel]]:
    groups = {}
    for name, field in settings_model().model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            groups[name] = annotation
    return groups


def _field(path: list[str]) -> Any:
    """The pydantic field at `path` (e.g. ["slack", "bot_token"]), or None."""
    model: type[BaseModel] = settings_model()
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(path) - 1:
            return field
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


def _is_module(*parts: str) -> bool:
    base = REPO.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def setting_problems(token: str) -> list[str]:
    """`group.field` or `group.field = value` (also a top-level `name = value`)."""
    match = re.fullmatch(r"([a-z_]+)(?:\.([a-z_0-9]+))?(?:\s*=\s*(.+))?", token)
    if match is None:
        return []
    group, name, value = match.groups()
    if name is None:
        if value is None or group not in settings_model().model_fields:
            return []  # a bare word, or `x = …` that is not a setting
        path = [group]
    else:
        if group not in _groups() or _is_module(group, name) or name in FILE_TYPES:
            return []  # not a setting: a module (`feedback.store`) or a file (`chat.py`)
        path = [group, name]
    field = _field(path)
    if field is None:
        return [f"no setting {'.'.join(path)}"]
    if value is not None:
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
            TypeAdapter(field.annotation).validate_python(parsed)
        except Exception as exc:
            return [f"{'.'.join(path)} = {value} is not a valid value: {exc}"]
    return []


def env_problems(text: str) -> list[str]:
    problems = []
    for name in sorted(set(re.findall(r"\bLORE_[A-Z0-9_]*[A-Z0-9]", text))):
        if name in OTHER_ENV:
            if name not in (REPO / OTHER_ENV[name]).read_text():
                problems.append(f"{name} is not read by {OTHER_ENV[name]} any more")
            continue
        path = name.removeprefix("LORE_").lower().split("__")
        if _field(path) is None:
            problems.append(f"{name}: no setting {'.'.join(path)}")
    return problems


def toml_problems(text: str) -> list[str]:
    problems = []
    for lang, body in fences(text):
        if lang != "toml":
            continue
        data = tomllib.loads(body)
        for key, value in data.items():
            field = settings_model().model_fields.get(key)
            if field is None:
                problems.append(f"TOML example: no setting {key}")
                continue
            try:
                TypeAdapter(field.annotation).validate_python(value)
            except Exception as exc:
                problems.append(f"TOML example [{key}]: {exc}")
    return problems


# ---- code references -------------------------------------------------------------------------


@cache
def symbols() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per module ("bot.core.conversation"): its top-level names; per class name: its members."""
    modules: dict[str, set[str]] = {}
    classes: dict[str, set[str]] = {}
    for package in PACKAGES:
        for file in (REPO / package).rglob("*.py"):
            tree = ast.parse(file.read_text())
            parts = list(file.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names = modules.setdefault(".".join(parts), set())
            for node in tree.body:
                names |= _defined(node)
                if isinstance(node, ast.ClassDef):
                    members = classes.setdefault(node.name, set())
                    for item in node.body:
                        members |= _defined(item)
    return modules, classes


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    if isinstance(node, ast.ImportFrom | ast.Import):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return set()


def reference_problems(token: str) -> list[str]:
    token = re.sub(r"\(.*\)$", "", token)  # `Outbox.send(Progress)`
    if re.fullmatch(r"(?:\.?[\w-]+/)+[\w.-]*", token) and token.split("/")[0] in (
        *PACKAGES,
        "tests",
        "deploy",
        "scripts",
        "docs",
        "examples",
        "bench",
    ):
        return [] if (REPO / token).exists() else [f"no file {token}"]
    modules, classes = symbols()
    parts = token.split(".")
    if re.fullmatch(r"[a-z_]+(\.\w+)+", token) and parts[0] in PACKAGES:
        if len(parts) == 2 and parts[0] in _groups() and not _is_module(*parts):
            return []  # a setting, checked as one
        for cut in range(len(parts), 0, -1):
            module = ".".join(parts[:cut])
            if module in modules:
                rest = parts[cut:]
                if rest and rest[0] not in modules[module]:
                    return [f"{module} has no {rest[0]}"]
                if len(rest) > 1 and rest[0] in classes and rest[1] not in classes[rest[0]]:
                    return [f"{rest[0]} has no {rest[1]}"]
                return []
        return [f"no module {token}"]
    match = re.fullmatch(r"([A-Z]\w+)\.(\w+)", token)
    if match and match.group(1) in classes and match.group(2) not in classes[match.group(1)]:
        return [f"{match.group(1)} has no {match.group(2)}"]
    return []


# ---- links -----------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text, flags=re.ASCII).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", prose(path.read_text()), re.M)}


def link_problems(path: Path) -> list[str]:
    problems = []
    text = SPAN.sub("", prose(path.read_text()))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"link to {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"link to {target}: no such heading")
    return problems


# ---- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_lore_command_line_exists(doc: Path) -> None:
    text = doc.read_text()
    problems = [p for tokens in command_lines(text) for p in check_command_line(tokens)]
    assert not problems, problems


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_setting_named_exists(doc: Path) -> None:
    text = doc.read_text()
    problems = [p for token in spans(text) for p in setting_problems(token)]
    problems += env_problems(text) + toml_problems(text)
    assert not problems, problems


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_file_module_and_member_named_exists(doc: Path) -> None:
    problems = [p for token in spans(doc.read_text()) for p in reference_problems(token)]
    assert not problems, problems


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_resolves(doc: Path) -> None:
    assert not link_problems(doc)


def _default(field: Any) -> Any:
    return field.default_factory() if field.default_factory is not None else field.default


def test_the_configuration_reference_lists_every_setting_with_its_default() -> None:
    rows: dict[str, str] = {}
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[a-z_]+(\.[a-z_0-9]+)?`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    wanted = {f"{group}.{name}" for group, model in _groups().items() for name in model.model_fields} | {
        name for name in settings_model().model_fields if name not in _groups()
    }
    assert sorted(wanted - rows.keys()) == [], "settings missing from docs/configuration.md"
    wrong = []
    for key, cell in rows.items():
        field = _field(key.split("."))
        assert field is not None, f"docs/configuration.md: no setting {key}"
        default = _default(field)
        if cell == "none":
            documented: Any = None
        else:
            literal = re.fullmatch(r"`(.+)`", cell)
            assert literal, f"docs/configuration.md: {key}'s default {cell!r} is not `a TOML value` or none"
            documented = tomllib.loads(f"v = {literal.group(1)}")["v"]
        actual = str(default) if isinstance(default, Path) else default
        if isinstance(default, BaseModel):  # a table of settings: documented as the TOML it takes
            actual = default.model_dump(exclude_none=True)
        if documented != actual:
            wrong.append(f"{key}: documented {cell}, the code says {default!r}")
    assert not wrong, wrong


def test_readme_and_architecture_stay_maps() -> None:
    assert (REPO / "README.md").stat().st_size <= 10 * 1024
    assert (REPO / "ARCHITECTURE.md").stat().st_size <= 12 * 1024


# ---- the checks catch what they are for ------------------------------------------------------


@pytest.mark.parametrize(
    "line, problem",
    [
        ("lore index --full", None),
        ("lore users sessions revoke rex", None),
        ("lore --config lore.toml worker -Q ingest -n one", None),
        ("lore reindex", "has no command 'reindex'"),
        ("lore users rename ada", "has no command 'rename'"),
        ("lore sync", "needs a sub-command"),
        ("lore serve --no-console", "has no option --no-console"),
        ("lore index [--source NAME] [--everything]", "has no option --everything"),
    ],
)
def test_the_command_check_catches_a_wrong_name(line: str, problem: str | None) -> None:
    [tokens] = list(command_lines(f"`{line}`"))
    found = check_command_line(tokens)
    assert (found == []) if problem is None else (problem in " ".join(found)), found


@pytest.mark.parametrize(
    "text, problem",
    [
        ("`slack.bot_token` and `LORE_WEB__PORT`", None),
        ('`discord.answer_in = "reply"`', None),
        ("`slack.bot_tokens`", "no setting slack.bot_tokens"),
        ('`discord.answer_in = "dm"`', "not a valid value"),
        ("LORE_SLACK__TOKEN", "no setting slack.token"),
        ("```toml\n[discord]\nguild = [1]\n```", "TOML example [discord]"),
    ],
)
def test_the_settings_check_catches_a_wrong_name(text: str, problem: str | None) -> None:
    found = [p for t in spans(text) for p in setting_problems(t)] + env_problems(text) + toml_problems(text)
    assert (found == []) if problem is None else (problem in " ".join(found)), found


@pytest.mark.parametrize(
    "token, problem",
    [
        ("knowledge.vector_store.rrf", None),
        ("ConversationService.vote", None),
        ("knowledge.vector_store.fuse", "has no fuse"),
        ("ConversationService.answer", "has no answer"),
        ("workers/client.py", None),
        ("workers/ports/client.py", "no file"),
    ],
)
def test_the_reference_check_catches_a_wrong_name(token: str, problem: str | None) -> None:
    found = reference_problems(token)
    assert (found == []) if problem is None else (problem in " ".join(found)), found


def test_the_link_check_catches_a_broken_link(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Top\n\n[ok](#top) [gone](missing.md) [bad anchor](#nowhere)\n")
    assert link_problems(doc) == ["link to missing.md: no such file", "link to #nowhere: no such heading"]
