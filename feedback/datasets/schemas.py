"""JSON Schemas (draft 2020-12) of every file an export writes, one per shape.

- `sft`: chat JSONL, `{"messages": [system, user, assistant]}` (OpenAI fine-tuning and TRL's
  SFTTrainer both read it).
- `dpo-trl`: TRL's conversational preference format, `{"prompt", "chosen", "rejected"}`.
- `dpo-openai`: OpenAI's preference fine-tuning format,
  `{"input": {"messages", "tools", "parallel_tool_calls"}, "preferred_output", "non_preferred_output"}`.
- `kto`: TRL's conversational unpaired preference format, `{"prompt", "completion", "label"}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}


def _message(*roles: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"enum": list(roles)}, "content": _TEXT},
        "additionalProperties": False,
    }


_PROMPT = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "prefixItems": [_message("system"), _message("user")],
    "items": False,
}
_REPLY = {"type": "array", "minItems": 1, "maxItems": 1, "items": _message("assistant")}

SCHEMAS: dict[str, dict[str, Any]] = {
    "sft": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Lore SFT example (chat messages)",
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {
                "type": "array",
                "minItems": 3,
                "maxItems": 3,
                "prefixItems": [_message("system"), _message("user"), _message("assistant")],
                "items": False,
            }
        },
        "additionalProperties": False,
    },
    "dpo-trl": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Lore DPO pair (TRL conversational preference)",
        "type": "object",
        "required": ["prompt", "chosen", "rejected"],
        "properties": {"prompt": _PROMPT, "chosen": _REPLY, "rejected": _REPLY},
        "additionalProperties": False,
    },
    "dpo-openai": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Lore DPO pair (OpenAI preference fine-tuning)",
        "type": "object",
        "required": ["input", "preferred_output", "non_preferred_output"],
        "properties": {
            "input": {
                "type": "object",
                "required": ["messages"],
                "properties": {
                    "messages": _PROMPT,
                    "tools": {"type": "array", "maxItems": 0},
                    "parallel_tool_calls": {"type": "boolean"},
                },
                "additionalProperties": False,
            },
            "preferred_output": _REPLY,
            "non_preferred_output": _REPLY,
        },
        "additionalProperties": False,
    },
    "kto": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Lore KTO example (TRL conversational unpaired preference)",
        "type": "object",
        "required": ["prompt", "completion", "label"],
        "properties": {"prompt": _PROMPT, "completion": _REPLY, "label": {"type": "boolean"}},
        "additionalProperties": False,
    },
}

for _schema in SCHEMAS.values():
    Draft202012Validator.check_schema(_schema)
_VALIDATORS = {name: Draft202012Validator(schema) for name, schema in SCHEMAS.items()}


class InvalidExample(ValueError):
    """A line does not match its format's schema; the export is not declared done."""


def errors(shape: str, record: Any) -> list[str]:
    """What is wrong with `record` for `shape` (empty when it is valid)."""
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in _VALIDATORS[shape].iter_errors(record)
    ]
    if not found and shape.startswith("dpo"):
        chosen, rejected = (
            (record["chosen"], record["rejected"])
            if shape == "dpo-trl"
            else (record["preferred_output"], record["non_preferred_output"])
        )
        if chosen == rejected:
            found.append("(root): the preferred and the rejected answer are the same")
    return found


def validate(shape: str, record: Any) -> None:
    problems = errors(shape, record)
    if problems:
        raise InvalidExample(f"{shape}: " + "; ".join(problems[:5]))


def validate_jsonl(shape: str, path: Path) -> int:
    """Check every line of a written file; returns the number of lines."""
    import json

    n = 0
    for n, line in enumerate(_lines(path), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidExample(f"{path.name} line {n}: not JSON ({exc})") from None
        problems = errors(shape, record)
        if problems:
            raise InvalidExample(f"{path.name} line {n}: " + "; ".join(problems[:5]))
    return n


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        yield from (line for line in fh if line.strip())


def shapes_of(fmt: str) -> Iterable[str]:
    return ("dpo-trl", "dpo-openai") if fmt == "dpo" else (fmt,)
