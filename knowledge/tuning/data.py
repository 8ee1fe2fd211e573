"""What every source of labels becomes before training: pairs to learn from, questions to measure on.

A *group* keeps related questions together: the split into train and held-out is by a seeded hash of
the group, so paraphrases of one question never land on both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

PairKind = Literal["judged", "imported", "curated", "synthetic"]
KINDS: tuple[PairKind, ...] = ("judged", "imported", "curated", "synthetic")


@dataclass(frozen=True)
class TrainingPair:
    query: str
    positive: str  # the passage's text, as indexed
    kind: PairKind
    group: str
    positive_id: str = ""  # the chunk's node id, when the positive is a chunk of the index
    path: str = ""  # the positive's document path
    negatives: tuple[str, ...] = ()  # passages known not to answer the query (judged, or 👎 "irrelevant")


@dataclass(frozen=True)
class HeldOutQuestion:
    """A question the candidate never trained on, and what a right retrieval finds: any of
    `chunk_ids` (judged) or the documents in `paths` (imported and eval questions, as `lore eval`)."""

    question: str
    group: str
    paths: frozenset[str] = field(default_factory=frozenset)
    chunk_ids: frozenset[str] = field(default_factory=frozenset)


def held_out(group: str, *, seed: int, share: float) -> bool:
    """Whether `group` is on the held-out side: a seeded hash, stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split(
    pairs: Iterable[TrainingPair], *, seed: int, share: float
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(train, held-out), by group."""
    train: list[TrainingPair] = []
    kept: list[TrainingPair] = []
    for pair in pairs:
        (kept if held_out(pair.group, seed=seed, share=share) else train).append(pair)
    return train, kept


def counts(pairs: Sequence[TrainingPair]) -> dict[str, int]:
    """Pairs per kind, every kind named (the `pairs` object of `lore tune --json`)."""
    return {kind: sum(1 for p in pairs if p.kind == kind) for kind in KINDS}
