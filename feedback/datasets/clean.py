"""Cleaning: exact and near-duplicate questions, and a deterministic grouped train/validation split.

Questions are compared as sets of word shingles (the normalised words and adjacent word pairs)
by Jaccard similarity. All pairs above a threshold are found exactly with prefix filtering
(a pair with similarity >= t must share one of the rarest `|x| - ceil(t·|x|) + 1` shingles of
each set), so no pair is missed and common words don't make it quadratic.

- **Duplicates**: questions at or above `duplicate_similarity` (or identical once normalised) are
  one cluster, and only its best example is kept.
- **Split**: what is kept is grouped again at the looser `group_similarity`, and each group goes
  wholly to train or to validation by a seeded hash of its canonical question. The same data and
  seed always give the same split, and near-duplicates never straddle it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_MENTION = re.compile(r"<@[A-Z0-9]+>|@\w+")


def normalize(question: str) -> str:
    """Lower case, accents folded, mentions and punctuation dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKD", _MENTION.sub(" ", question))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(_WORD.findall(text))


def shingles(question: str) -> frozenset[str]:
    words = normalize(question).split()
    return frozenset(words) | frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def similar_pairs(questions: Sequence[str], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair (i < j) whose shingle Jaccard similarity is >= `threshold`, exactly."""
    sets = [shingles(q) for q in questions]
    freq: dict[str, int] = defaultdict(int)
    for s in sets:
        for token in s:
            freq[token] += 1
    index: dict[str, list[int]] = defaultdict(list)
    found: dict[tuple[int, int], float] = {}
    for j, s in enumerate(sets):
        ordered = sorted(s, key=lambda t: (freq[t], t))  # rarest first: short prefixes, few candidates
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered)) + 1] if ordered else []
        candidates: set[int] = set()
        for token in prefix:
            candidates.update(index[token])
        for i in candidates:
            if min(len(sets[i]), len(s)) < threshold * max(len(sets[i]), len(s)):
                continue  # sizes too different to reach the threshold
            score = jaccard(sets[i], s)
            if score >= threshold:
                found[(i, j)] = score
        for token in prefix:
            index[token].append(j)
        if not s:  # empty questions are all identical to each other
            index[""].append(j)
            for i in index[""][:-1]:
                found[(i, j)] = 1.0
    return found


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def clusters(questions: Sequence[str], threshold: float) -> list[list[int]]:
    """Connected groups of indices whose questions are similar (at `threshold`) or identical."""
    uf = _UnionFind(len(questions))
    for i, j in similar_pairs(questions, threshold):
        uf.union(i, j)
    exact: dict[str, int] = {}
    for i, q in enumerate(questions):
        first = exact.setdefault(normalize(q), i)
        uf.union(first, i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(questions)):
        groups[uf.find(i)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])


@dataclass(frozen=True)
class Deduped:
    kept: list[int]  # indices into the input, in input order
    exact: int  # dropped: the same question once normalised
    near: int  # dropped: a similar question


def dedupe(
    questions: Sequence[str],
    threshold: float,
    *,
    better: Callable[[int], tuple[object, ...]],
    partition: Callable[[int], Hashable] = lambda i: None,
) -> Deduped:
    """Keep one example per duplicate cluster: the one with the highest `better(i)`.

    `partition` keeps apart what must not be merged even with the same question (KTO keeps one
    desirable and one undesirable completion per question)."""
    kept: list[int] = []
    exact = near = 0
    parts: dict[Hashable, list[int]] = defaultdict(list)
    for i in range(len(questions)):
        parts[partition(i)].append(i)
    for members in parts.values():
        for group in clusters([questions[i] for i in members], threshold):
            indices = [members[g] for g in group]
            best = max(indices, key=better)
            kept.append(best)
            norm = normalize(questions[best])
            for i in indices:
                if i != best:
                    if normalize(questions[i]) == norm:
                        exact += 1
                    else:
                        near += 1
    return Deduped(sorted(kept), exact, near)


def split(
    questions: Sequence[str], *, seed: int, validation_fraction: float, group_similarity: float
) -> list[str]:
    """ "train" or "validation" for each question; near-duplicate groups stay together.

    Each group's side comes from a seeded hash of its canonical (smallest normalised) question, so
    the split depends only on the data and the seed. Validation gets at least one group once the
    fraction calls for half a group or more, and train always keeps at least one."""
    sides = ["train"] * len(questions)
    if not questions or validation_fraction <= 0:
        return sides
    groups = clusters(questions, group_similarity)
    scored = []
    for group in groups:
        canonical = min(normalize(questions[i]) for i in group)
        digest = hashlib.sha256(f"{seed}\x00{canonical}".encode()).digest()
        scored.append((int.from_bytes(digest[:8], "big") / 2**64, canonical, group))
    validation = {id(g) for score, _c, g in scored if score < validation_fraction}
    if not validation and len(scored) >= 2 and len(scored) * validation_fraction >= 0.5:
        validation = {id(min(scored, key=lambda s: (s[0], s[1]))[2])}
    if len(scored) >= 2 and len(validation) == len(scored):
        validation.discard(id(max(scored, key=lambda s: (s[0], s[1]))[2]))
    for _score, _c, group in scored:
        if id(group) in validation:
            for i in group:
                sides[i] = "validation"
    return sides
