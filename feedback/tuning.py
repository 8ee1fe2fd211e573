"""What the feedback log teaches the retriever: training pairs and held-out questions.

Two kinds of labels, strongest first:

- **judged** (`feedback.judgments`): a reviewer said a passage answers the item's question (a
  retrieved chunk marked relevant, or a passage attached from a search); chunks they marked not
  relevant are that question's negatives.
- **curated**: answers a reviewer approved or edited. The chunks the curated answer cites (its
  `[n]` markers: the original answer's when approved, the ideal answer's when edited) are weak
  positives. An abstention approved as is, or an edit that cites nothing, says nothing about
  which chunk answers, so it adds none.

Negatives, by question (normalised): chunks judged not relevant, and the chunks an answer cited
when someone's current 👎 says "irrelevant sources". Those cited chunks are never positives of
that question, however the item was reviewed; and a chunk a reviewer judged on an answer is
never also a weak positive of it (the judgment says more).

Everything that leaves here is redacted exactly as `lore dataset export` redacts
(`feedback.datasets.redact.Redactor`), and, as there, passages not everyone may
read (restricted) are left out unless `include_restricted`: a model trained on them carries them.

**Groups.** A pair's group is a normalised question (`feedback.datasets.clean.normalize`: lower
case, accents folded, punctuation dropped, spaces collapsed): the first in sort order of its
cluster of near-identical questions (word-shingle Jaccard >= `similarity`, as the exports'
split), clustered over every question that yields a pair of either kind, so paraphrases never
straddle the train/held-out split. Groups are computed from redacted questions: they are text too.
Call `labels` once when both kinds are needed: `judged` and `curated` each compute it all.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from feedback.datasets.clean import clusters, normalize
from feedback.datasets.prompt import numbered_chunks
from feedback.datasets.redact import Redactor
from feedback.judgments import Passage, all_judgments
from feedback.models import Vote
from feedback.reviews import CuratedItem, curated_items
from feedback.store import SessionFactory
from knowledge.tuning.data import HeldOutQuestion, PairKind, TrainingPair

IRRELEVANT = "irrelevant_sources"  # the 👎 reason (feedback.schema.VOTE_REASONS)
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class Labels:
    judged: list[TrainingPair] = field(default_factory=list)
    curated: list[TrainingPair] = field(default_factory=list)
    questions: list[HeldOutQuestion] = field(default_factory=list)  # one per judged question
    left_out: Counter[str] = field(default_factory=Counter)  # why, e.g. "restricted passage"
    redactions: Counter[str] = field(default_factory=Counter)  # by kind, as an export's card


def judged(sessions: SessionFactory, **options: Any) -> tuple[list[TrainingPair], list[HeldOutQuestion]]:
    """Reviewers' relevance judgments as pairs, and every judged question as a `HeldOutQuestion`
    (pick the held-out ones with `held_out_questions`). `options`: as `labels`."""
    found = labels(sessions, **options)
    return found.judged, found.questions


def curated(sessions: SessionFactory, **options: Any) -> list[TrainingPair]:
    """Approved and edited answers' cited chunks as weak pairs. `options`: as `labels`."""
    return labels(sessions, **options).curated


def held_out_questions(questions: Iterable[HeldOutQuestion], groups: Iterable[str]) -> list[HeldOutQuestion]:
    """The questions in `groups` (e.g. the groups `knowledge.tuning.data.split` held out)."""
    wanted = set(groups)
    return [q for q in questions if q.group in wanted]


@dataclass(frozen=True)
class _Raw:
    question: str
    passage: Passage
    kind: PairKind


def labels(
    sessions: SessionFactory,
    *,
    private_url_patterns: Sequence[str] = (),
    include_restricted: bool = False,
    similarity: float = 0.5,
) -> Labels:
    """Both kinds of pairs, and the judged questions. `private_url_patterns`: the settings'
    `feedback.private_url_patterns`; `similarity`: `datasets.group_similarity`."""
    out = Labels()
    items = curated_items(sessions)
    judgments = all_judgments(sessions)
    irrelevant = _irrelevant_votes(sessions)
    judged_chunks = {(j.answer_id, j.passage.chunk_id) for _q, j in judgments}

    negatives: dict[str, list[Passage]] = defaultdict(list)  # normalised question -> passages
    never: set[tuple[str, str]] = set()  # (normalised question, chunk id): never a weak positive
    raw: list[_Raw] = []
    for question, j in judgments:
        if j.relevant:
            raw.append(_Raw(question, j.passage, "judged"))
        else:
            negatives[normalize(question)].append(j.passage)
    for item in items:
        if item.answer_id in irrelevant:
            key = normalize(item.question)
            for chunk in _cited(item.chunks, {int(c["n"]) for c in item.citations if c.get("n")}):
                negatives[key].append(Passage.of(chunk))
                never.add((key, str(chunk["chunk_id"])))
    for item in items:
        key = normalize(item.question)
        for chunk in _curated_chunks(item):
            chunk_id = str(chunk["chunk_id"])
            if (key, chunk_id) not in never and (item.answer_id, chunk_id) not in judged_chunks:
                raw.append(_Raw(item.question, Passage.of(chunk), "curated"))

    if not include_restricted:
        if restricted := sum(r.passage.restricted for r in raw):
            out.left_out["restricted passage"] = restricted
        raw = [r for r in raw if not r.passage.restricted]
        negatives = {k: [p for p in ps if not p.restricted] for k, ps in negatives.items()}

    positives = {(normalize(r.question), r.passage.chunk_id) for r in raw if r.kind == "judged"}
    negatives = {k: [p for p in ps if (k, p.chunk_id) not in positives] for k, ps in negatives.items()}
    clean = _cleaner(
        Redactor(private_url_patterns),
        [r.question for r in raw]
        + [r.passage.text for r in raw]
        + [p.text for ps in negatives.values() for p in ps],
        out.redactions,
    )

    groups = _groups([clean(r.question) for r in raw], similarity)
    seen: set[tuple[str, str]] = set()
    questions: dict[str, dict[str, Any]] = {}
    for r in sorted(raw, key=lambda r: r.kind != "judged"):  # judged first: it wins a duplicate
        key, query = normalize(r.question), clean(r.question)
        positive = clean(r.passage.text)
        if (key, " ".join(positive.split())) in seen:
            continue
        seen.add((key, " ".join(positive.split())))
        negs = dict.fromkeys(
            clean(p.text) for p in negatives.get(key, []) if p.chunk_id != r.passage.chunk_id
        )
        negs.pop(positive, None)
        pair = TrainingPair(
            query=query,
            positive=positive,
            kind=r.kind,
            group=groups[query],
            positive_id=r.passage.chunk_id,
            path=r.passage.path,
            negatives=tuple(negs),
        )
        (out.judged if r.kind == "judged" else out.curated).append(pair)
        if r.kind == "judged":
            q = questions.setdefault(key, {"question": query, "group": pair.group, "ids": {}, "paths": {}})
            q["ids"][pair.positive_id] = None
            q["paths"][pair.path] = None
    out.questions = [
        HeldOutQuestion(
            question=q["question"],
            group=q["group"],
            chunk_ids=frozenset(q["ids"]),
            paths=frozenset(p for p in q["paths"] if p),
        )
        for q in questions.values()
    ]
    return out


def _cleaner(redactor: Redactor, texts: list[str], counts: Counter[str]) -> Callable[[str], str]:
    """`texts` redacted in one batch; each distinct string counted once in `counts`."""
    redactor.prepare(texts)
    done: dict[str, str] = {}

    def clean(text: str) -> str:
        if text not in done:
            done[text] = str(redactor.redact_value(text, counts))
        return done[text]

    return clean


def _groups(questions: Sequence[str], similarity: float) -> dict[str, str]:
    """Each (redacted) question -> its group: the smallest normalised question of its cluster
    (as the exports' split), so a cluster keeps its name while questions join it."""
    distinct = list(dict.fromkeys(questions))
    out: dict[str, str] = {}
    for members in clusters(distinct, similarity):
        label = min(normalize(distinct[i]) for i in members)
        for i in members:
            out[distinct[i]] = label
    return out


def _irrelevant_votes(sessions: SessionFactory) -> set[str]:
    """Answers someone's current vote calls 👎 "irrelevant sources"."""
    with sessions() as session:
        rows = session.scalars(
            select(Vote.answer_id).where(Vote.value == "down", Vote.reason == IRRELEVANT).distinct()
        )
        return set(rows)


def _curated_chunks(item: CuratedItem) -> list[Mapping[str, Any]]:
    """The chunks the curated answer cites, in the console's numbering (what reviewers edit in)."""
    if item.status == "approved":
        text = "" if item.abstained else item.answer_text
    elif item.status == "edited":
        text = item.ideal_answer or ""
    else:
        return []
    cited = {int(n) for m in _MARKER.finditer(text) for n in m.group(1).split(",")}
    return _cited(item.chunks, cited)


def _cited(chunks: Sequence[Mapping[str, Any]], numbers: set[int]) -> list[Mapping[str, Any]]:
    """Every retrieved chunk of the documents numbered `numbers` (one number per document)."""
    if not numbers:
        return []
    return [c for c in numbered_chunks(chunks) if c["n"] in numbers and c.get("chunk_id") and c.get("text")]
