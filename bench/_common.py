"""Helpers shared by the benchmark scripts: settings for a throwaway data dir, corpora, percentiles."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from config.settings import Settings  # noqa: E402

HANDBOOK = REPO / "examples" / "handbook"


def settings_for(data_dir: Path, sources: list[dict[str, Any]], **overrides: Any) -> Settings:
    overrides.setdefault("llm", {"provider": "extractive"})
    return Settings(data_dir=data_dir, sources=sources, **overrides)


def scratch(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"lore-bench-{name}-"))
    return path


def copy_handbook(dest: Path, copies: int) -> Path:
    """The handbook copied `copies` times under different folders: same text, distinct documents."""
    for i in range(copies):
        shutil.copytree(HANDBOOK, dest / f"copy{i}", ignore=shutil.ignore_patterns("questions.jsonl"))
    return dest


def synthetic_docs(dest: Path, count: int, seed: int = 7) -> Path:
    """`count` small Markdown documents stitched from handbook sentences (deterministic)."""
    sentences = []
    for path in HANDBOOK.rglob("*.md"):
        for line in path.read_text().splitlines():
            if len(line) > 60 and not line.startswith(("#", "|", "-", ">")):
                sentences.append(line.strip())
    rng = random.Random(seed)
    for i in range(count):
        body = "\n\n".join(rng.sample(sentences, 4))
        (dest / f"team{i % 40:02d}").mkdir(parents=True, exist_ok=True)
        (dest / f"team{i % 40:02d}" / f"note-{i:05d}.md").write_text(f"# Note {i}\n\n{body}\n")
    return dest


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values)
