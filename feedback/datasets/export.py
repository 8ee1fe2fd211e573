"""`export_dataset`: one versioned, validated, redacted dataset directory per call.

    DIR/<format>-<UTC timestamp>/
        train.jsonl, validation.jsonl              (sft, kto)
        train.trl.jsonl, validation.trl.jsonl,     (dpo: TRL's shape ...
        train.openai.jsonl, validation.openai.jsonl ... and OpenAI's)
        dataset_card.md                            counts, dates, sources, redactions, split, settings
        manifest.json                              every item's id, split and content hash

The steps: reviewed answers -> examples (`build`) -> those with restricted context left out
(unless `include_restricted`), and those with attachment passages (unless `include_attachments`)
-> every string redacted (`redact`) -> exact and near duplicates
dropped, then a seeded grouped split (`clean`) -> files written into a hidden `.partial`
directory -> every line of every file validated against its schema (`schemas`) -> card and
manifest -> the directory renamed into place. Until that rename nothing is "done": a failed
validation leaves no export behind. The manifest of the previous export of the same format tells
the card what is new, changed or gone.

Restricted context (a chunk whose access list is not exactly ["public"], `build.is_restricted`):
a fine-tuned model would repeat it to anyone, so such examples stay out by default, and the card
says how many were left out, or, with `include_restricted`, how many went in.

Attachment passages (a file that came with a question, `build.has_attachments`): text someone
pasted for one answer, never indexed, so no access rule or review covers it. Left out by default
the same way (`include_attachments` keeps them), and counted on the card either way. Redaction
applies to them like to everything else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from config.settings import DatasetSettings, Settings
from feedback.datasets import clean
from feedback.datasets.build import FORMATS, Example, Format, build_examples
from feedback.datasets.redact import KINDS, Redactor, detector
from feedback.datasets.schemas import InvalidExample, shapes_of, validate, validate_jsonl
from feedback.reviews import curated_items
from feedback.store import SessionFactory

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CARD = "dataset_card.md"
SPLITS = ("train", "validation")


class ExportError(RuntimeError):
    """The export could not be completed; nothing was left in the output directory."""


@dataclass
class ExportResult:
    format: Format
    directory: Path
    created_at: datetime
    counts: dict[str, Any]
    splits: dict[str, int]
    redactions: dict[str, int]
    files: list[Path]
    changes: dict[str, Any] | None  # against the previous export of this format, if any
    date_range: tuple[str, str] | None
    sources: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "directory": str(self.directory),
            "created_at": self.created_at.isoformat(),
            "counts": self.counts,
            "splits": self.splits,
            "redactions": self.redactions,
            "files": [p.name for p in self.files],
            "changes": self.changes,
            "date_range": list(self.date_range) if self.date_range else None,
            "sources": self.sources,
        }


def parse_since(text: str | None) -> datetime | None:
    """'2026-11-01' or an ISO timestamp -> an aware UTC datetime (a date means its midnight UTC)."""
    if not text:
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-11-01 (or an ISO timestamp)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def export_dataset(
    sessions: SessionFactory,
    fmt: str,
    settings: Settings,
    *,
    out_dir: Path | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    include_restricted: bool = False,
    include_attachments: bool = False,
) -> ExportResult:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    fmt_: Format = fmt  # type: ignore[assignment]
    ds = settings.datasets
    root = (out_dir or ds.directory(settings.data_dir)).resolve()
    created = (now or datetime.now(UTC)).astimezone(UTC)
    items = curated_items(sessions, since=since)
    examples, skipped = build_examples(fmt_, items)
    restricted_left_out = 0
    if not include_restricted:
        restricted_left_out = sum(ex.restricted for ex in examples)
        examples = [ex for ex in examples if not ex.restricted]
    attachments_left_out = 0
    if not include_attachments:
        attachments_left_out = sum(ex.attachments for ex in examples)
        examples = [ex for ex in examples if not ex.attachments]

    redactor = Redactor(settings.feedback.private_url_patterns)
    redactor.prepare([ex.question for ex in examples] + [ex.records for ex in examples])  # batched
    for ex in examples:  # before anything else looks at the text: dedupe sees redacted questions
        ex.question = redactor.redact_value(ex.question, Counter())
        ex.records = {shape: redactor.redact_value(rec, ex.redactions) for shape, rec in ex.records.items()}

    kept_idx = clean.dedupe(
        [e.question for e in examples],
        ds.duplicate_similarity,
        better=lambda i: examples[i].rank,
        partition=lambda i: examples[i].partition,
    )
    kept = [examples[i] for i in kept_idx.kept]
    sides = clean.split(
        [e.question for e in kept],
        seed=ds.seed,
        validation_fraction=ds.validation_fraction,
        group_similarity=ds.group_similarity,
    )

    for ex in kept:  # fail before writing anything
        for shape, record in ex.records.items():
            try:
                validate(shape, record)
            except InvalidExample as exc:
                raise ExportError(f"example {ex.answer_id} is not valid {exc}") from exc

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root)
    name = _unique_name(root, f"{fmt_}-{created.strftime('%Y%m%dT%H%M%SZ')}")
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        files = _write_files(partial, fmt_, kept, sides)
        for shape in shapes_of(fmt_):
            for side in SPLITS:
                validate_jsonl(shape, partial / _file_name(fmt_, shape, side))
        redactions = Counter[str]()
        for ex in kept:
            redactions.update(ex.redactions)
        manifest_items = [
            {"answer_id": ex.answer_id, "split": side, "sha256": _digest(ex.records)}
            for ex, side in zip(kept, sides, strict=True)
        ]
        previous = _previous_manifest(root, fmt_)
        changes = _changes(previous, manifest_items) if previous else None
        splits = {s: sides.count(s) for s in SPLITS}
        sources: Counter[str] = Counter()
        for ex in kept:
            sources.update(ex.sources)
        dates = sorted(ex.created_at for ex in kept)
        date_range = (dates[0].date().isoformat(), dates[-1].date().isoformat()) if dates else None
        counts = {
            "answers_considered": len(items),
            "eligible": len(examples),
            "skipped": dict(sorted(skipped.items())),
            "duplicates_dropped": {"exact": kept_idx.exact, "near": kept_idx.near},
            "examples": len(kept),
            "restricted": {
                "left_out": restricted_left_out,
                "included": sum(ex.restricted for ex in kept),
            },
            "attachments": {
                "left_out": attachments_left_out,
                "included": sum(ex.attachments for ex in kept),
            },
        }
        used = _settings_used(ds, settings, since, include_restricted, include_attachments)
        redacted = {k: redactions[k] for k in KINDS if redactions[k]}
        manifest = {
            "format": fmt_,
            "name": name,
            "created_at": created.isoformat(),
            "since": since.isoformat() if since else None,
            "counts": counts,
            "splits": splits,
            "redactions": redacted,
            "files": [p.name for p in files],
            "settings": used,
            "previous": previous["name"] if previous else None,
            "changes": changes,
            "items": manifest_items,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        result = ExportResult(
            fmt_,
            root / name,
            created,
            counts,
            splits,
            redacted,
            [root / name / p.name for p in files],
            changes,
            date_range,
            dict(sorted(sources.items())),
        )
        (partial / CARD).write_text(_card(result, used), encoding="utf-8")
        _fsync_dir(partial)
        os.replace(partial, root / name)  # the export exists, complete, or not at all
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info(
        "exported %s: %d examples (%d train, %d validation) to %s; redacted %s",
        fmt_,
        len(kept),
        splits["train"],
        splits["validation"],
        result.directory,
        dict(redactions) or "nothing",
    )
    return result


def export_all(
    sessions: SessionFactory,
    settings: Settings,
    formats: Sequence[str] | None = None,
    *,
    since: datetime | None = None,
) -> list[ExportResult]:
    """Every format in `formats` (default: `datasets.formats`), for the scheduled task (which never
    includes restricted context or attachment passages: only `lore dataset export
    --include-restricted` / `--include-attachments` do)."""
    return [export_dataset(sessions, f, settings, since=since) for f in formats or settings.datasets.formats]


def list_exports(root: Path) -> list[dict[str, Any]]:
    """Finished exports under `root`, newest first (from their manifests)."""
    found: list[dict[str, Any]] = []
    if not root.is_dir():
        return found
    for path in root.iterdir():
        manifest = path / MANIFEST
        if path.is_dir() and not path.name.startswith(".") and manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            data.pop("items", None)
            data["path"] = str(path)
            found.append(data)
    return sorted(found, key=lambda d: (str(d.get("created_at")), str(d.get("name"))), reverse=True)


# ---- files ----------------------------------------------------------------------------------------


def _file_name(fmt: Format, shape: str, side: str) -> str:
    if fmt == "dpo":
        return f"{side}.{shape.split('-', 1)[1]}.jsonl"
    return f"{side}.jsonl"


def _write_files(directory: Path, fmt: Format, kept: list[Example], sides: list[str]) -> list[Path]:
    files = []
    for shape in shapes_of(fmt):
        for side in SPLITS:
            path = directory / _file_name(fmt, shape, side)
            with path.open("w", encoding="utf-8") as fh:
                for ex, ex_side in zip(kept, sides, strict=True):
                    if ex_side == side:
                        fh.write(json.dumps(ex.records[shape], ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            files.append(path)
    return files


def _remove_stale_partials(root: Path, older_than: float = 3600) -> None:
    """What an export killed mid-way left behind (a live one renames its own within seconds)."""
    import time

    for path in root.glob(".*.partial"):
        try:
            if time.time() - path.stat().st_mtime > older_than:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unique_name(root: Path, name: str) -> str:
    candidate, n = name, 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _digest(records: dict[str, dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ---- manifest and card ------------------------------------------------------------------------------


def _previous_manifest(root: Path, fmt: Format) -> dict[str, Any] | None:
    newest: dict[str, Any] | None = None
    for path in root.glob(f"{fmt}-*"):
        manifest = path / MANIFEST
        if not manifest.is_file():
            continue
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring unreadable manifest %s", manifest)
            continue
        key = (str(data.get("created_at")), str(data.get("name")))
        if newest is None or key > (str(newest.get("created_at")), str(newest.get("name"))):
            newest = data
    return newest


def _changes(previous: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    before = {i["answer_id"]: i["sha256"] for i in previous.get("items", [])}
    now = {i["answer_id"]: i["sha256"] for i in items}
    new = sorted(a for a in now if a not in before)
    changed = sorted(a for a in now if a in before and before[a] != now[a])
    removed = sorted(a for a in before if a not in now)
    return {
        "previous": previous.get("name"),
        "new": len(new),
        "changed": len(changed),
        "removed": len(removed),
        "unchanged": len(now) - len(new) - len(changed),
        "new_ids": new,
        "changed_ids": changed,
        "removed_ids": removed,
    }


def _settings_used(
    ds: DatasetSettings,
    settings: Settings,
    since: datetime | None,
    include_restricted: bool,
    include_attachments: bool,
) -> dict[str, Any]:
    return {
        "since": since.isoformat() if since else None,
        "include_restricted": include_restricted,
        "include_attachments": include_attachments,
        "seed": ds.seed,
        "validation_fraction": ds.validation_fraction,
        "duplicate_similarity": ds.duplicate_similarity,
        "group_similarity": ds.group_similarity,
        # The patterns themselves name internal hosts: only how many there were.
        "private_url_patterns": len(settings.feedback.private_url_patterns),
    }


def _card(result: ExportResult, used: dict[str, Any]) -> str:
    fmt = result.format
    what = {
        "sft": "Supervised fine-tuning: chat messages (system, user with the retrieved context, assistant) "
        "from answers reviewers approved as given or rewrote.",
        "dpo": "Preference pairs from answers a reviewer rewrote: the reviewer's answer is preferred, the "
        "original (usually down-voted) answer is not. Two shapes: TRL (`*.trl.jsonl`: prompt/chosen/"
        "rejected) and OpenAI (`*.openai.jsonl`: input/preferred_output/non_preferred_output).",
        "kto": "Unpaired preferences straight from the votes: each answer labelled desirable (more 👍) or "
        "undesirable (more 👎), leaving out answers reviewers rejected.",
    }[fmt]
    c = result.counts
    since = f" since {str(used['since'])[:10]}" if used["since"] else ""
    lines = [
        f"# Lore dataset: {fmt} ({result.directory.name})",
        "",
        what,
        "",
        f"Created {result.created_at.isoformat(timespec='seconds')} by `lore dataset export --format {fmt}`.",
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| answers in the log{since} | {c['answers_considered']} |",
        f"| eligible for {fmt} | {c['eligible']} |",
        f"| exact duplicates dropped | {c['duplicates_dropped']['exact']} |",
        f"| near duplicates dropped | {c['duplicates_dropped']['near']} |",
        f"| **examples written** | **{c['examples']}** |",
    ]
    for reason, n in c["skipped"].items():
        lines.append(f"| left out: {reason} | {n} |")
    restricted = c["restricted"]
    if used["include_restricted"]:
        lines.append(f"| restricted context: included (`--include-restricted`) | {restricted['included']} |")
    else:
        lines.append(f"| restricted context: left out (not public) | {restricted['left_out']} |")
    attached = c["attachments"]
    if used["include_attachments"]:
        lines.append(f"| attachment passages: included (`--include-attachments`) | {attached['included']} |")
    else:
        lines.append(f"| attachment passages: left out (never indexed) | {attached['left_out']} |")
    lines += [
        "",
        "## Split",
        "",
        f"- train: {result.splits['train']}",
        f"- validation: {result.splits['validation']}",
        "",
        "Seeded and grouped: questions above the group similarity are always on the same side.",
        "",
        "## Date range",
        "",
        f"{result.date_range[0]} to {result.date_range[1]}" if result.date_range else "No examples.",
        "",
        "## Sources",
        "",
    ]
    lines += [f"- {name}: {n} examples" for name, n in result.sources.items()] or ["None."]
    lines += [
        "",
        "## Redactions",
        "",
        f"Personal data and secrets replaced before writing (by {detector()}), by kind; the text",
        "shows a label such as `[EMAIL]` in their place:",
        "",
    ]
    lines += [f"- {kind}: {n}" for kind, n in result.redactions.items()] or ["- nothing found"]
    # private_url is looked for only when feedback.private_url_patterns names some.
    looked_for = [k for k in KINDS if k != "private_url" or used["private_url_patterns"]]
    none_found = [k for k in looked_for if k not in result.redactions]
    if none_found:
        lines += ["", f"Also looked for, none found: {', '.join(none_found)}."]
    lines += ["", "## Since the previous export", ""]
    if result.changes:
        ch = result.changes
        lines.append(
            f"Compared with `{ch['previous']}`: {ch['new']} new, {ch['changed']} changed, "
            f"{ch['removed']} removed, {ch['unchanged']} unchanged."
        )
    else:
        lines.append("This is the first export of this format here.")
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v if v is not None else '-'} |" for k, v in used.items()]
    lines += ["", "## Files", ""]
    lines += [f"- `{p.name}`" for p in result.files]
    lines += [f"- `{MANIFEST}`: each example's answer id, split and content hash", ""]
    return "\n".join(lines)
