"""What the feedback log teaches the retriever: training pairs and held-out questions.

Two kinds of labels, strongest first:

- **judged** (`feedback.judgments`): a reviewer said a passage answers the item's question (a
  retrieved chunk marked relevant, or a passage attached from a search); chunks they marked not
  relevant are that question's negatives.
- **curated**: answers a reviewer approved or edited. The chunks the curated answer cites (its
  `[n]` markers: the original answer's when approved, the ideal answer's when edited) are weak
  positives. An abstention approved as is, or an edit that cites nothing, says nothing about
  which chunk answers, so it adds none. An approved expert answer (`feedback.experts`) cites
  nothing either: its positives are the retrieved chunks that hold one of its specifics.

Negatives, by question (normalised): chunks judged not relevant, and the chunks an answer cited
when someone's current 👎 says "irrelevant sources". Neither is ever a weak positive of that
question, however the item was reviewed; and a chunk a reviewer judged on an answer is never
also a weak positive of it (the judgment says more).

Everything that leaves here is redacted exactly as `lore dataset export` redacts
(`feedback.datasets.redact.Redactor`), and, as there, passages not everyone may
read (restricted) are left out unless `include_restricted`: a model trained on them carries them.
Passages of a file attached to a question (`knowledge/attachments.py`) are always left out: they
were never in the index, so a retriever has nothing to learn from them, only their text to keep.

**Groups.** A pair's group is a normalised question (`feedback.datasets.clean.normalize`: lower
case, accents folded, punctuation dropped, spaces collapsed): the first in sort order of its
cluster of near-identical questions (word-shingle Jaccard >= `datasets.group_similarity`, as the
exports' split), clustered over every question that yields a pair of either kind, so paraphrases
never straddle the train/held-out split. Groups come from redacted questions: they are text too.
Call `labels` once when both kinds are needed: `judged` and `curated` each compute it all.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from config.settings import DatasetSettings, FeedbackSettings, Settings
from feedback.datasets.clean import clusters, normalize
from feedback.datasets.prompt import numbered_chunks
from feedback.datasets.redact import Redactor
from feedback.experts import EXPERT_TAG
from feedback.judgments import Judgment, Passage, all_judgments
from feedback.models import Vote
from feedback.reviews import CuratedItem, curated_items
from feedback.store import SessionFactory
from knowledge.answer_checks import extract_claims, unsupported
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


def judged(
    sessions: SessionFactory, settings: Settings | None = None, *, include_restricted: bool = False
) -> tuple[list[TrainingPair], list[HeldOutQuestion]]:
    """Reviewers' relevance judgments as pairs, and every judged question as a `HeldOutQuestion`
    (pick the held-out ones with `held_out_questions`). Arguments: as `labels`."""
    found = labels(sessions, settings, include_restricted=include_restricted)
    return found.judged, found.questions


def curated(
    sessions: SessionFactory, settings: Settings | None = None, *, include_restricted: bool = False
) -> list[TrainingPair]:
    """Approved and edited answers' cited chunks as weak pairs. Arguments: as `labels`."""
    return labels(sessions, settings, include_restricted=include_restricted).curated


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
    sessions: SessionFactory, settings: Settings | None = None, *, include_restricted: bool = False
) -> Labels:
    """Both kinds of pairs, and the judged questions. From `settings` (the defaults without):
    `feedback.private_url_patterns` for redaction, `datasets.group_similarity` for groups."""
    datasets, feedback = (
        (settings.datasets, settings.feedback) if settings else (DatasetSettings(), FeedbackSettings())
    )
    out = Labels()
    raw, negatives = _collect(curated_items(sessions), all_judgments(sessions), _irrelevant_votes(sessions))
    if attached := sum(r.passage.from_attachment for r in raw):
        out.left_out["attachment passage"] = attached
    raw = [r for r in raw if not r.passage.from_attachment]
    negatives = {k: [p for p in ps if not p.from_attachment] for k, ps in negatives.items()}
    if not include_restricted:
        if restricted := sum(r.passage.restricted for r in raw):
            out.left_out["restricted passage"] = restricted
        raw = [r for r in raw if not r.passage.restricted]
        negatives = {k: [p for p in ps if not p.restricted] for k, ps in negatives.items()}
    texts = [r.question for r in raw] + [r.passage.text for r in raw]
    clean = _cleaner(
        Redactor(feedback.private_url_patterns),
        texts + [p.text for ps in negatives.values() for p in ps],
        out.redactions,
    )
    groups = _groups([clean(r.question) for r in raw], datasets.group_similarity)
    seen: set[tuple[str, str]] = set()
    for r in sorted(raw, key=lambda r: r.kind != "judged"):  # judged first: it wins a duplicate
        key, query, positive = normalize(r.question), clean(r.question), clean(r.passage.text)
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
    out.questions = _questions(out.judged)
    return out


def _collect(
    items: Sequence[CuratedItem], judgments: Sequence[tuple[str, Judgment]], irrelevant: set[str]
) -> tuple[list[_Raw], dict[str, list[Passage]]]:
    """The positives of both kinds, and each (normalised) question's negatives, before redaction."""
    negatives: dict[str, list[Passage]] = defaultdict(list)
    never: set[tuple[str, str]] = set()  # (normalised question, chunk id): never a weak positive
    judged_here = {(j.answer_id, j.passage.chunk_id) for _q, j in judgments}
    raw: list[_Raw] = []
    for question, j in judgments:
        if j.relevant:
            raw.append(_Raw(question, j.passage, "judged"))
        else:
            negatives[normalize(question)].append(j.passage)
            never.add((normalize(question), j.passage.chunk_id))
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
            if (key, chunk_id) not in never and (item.answer_id, chunk_id) not in judged_here:
                raw.append(_Raw(item.question, Passage.of(chunk), "curated"))
    # What a reviewer judged relevant for a question is never also one of its negatives.
    positives = {(normalize(r.question), r.passage.chunk_id) for r in raw if r.kind == "judged"}
    kept = {k: [p for p in ps if (k, p.chunk_id) not in positives] for k, ps in negatives.items()}
    return raw, kept


def _questions(pairs: Sequence[TrainingPair]) -> list[HeldOutQuestion]:
    """One held-out question per judged question: any of its relevant chunks (or their documents)
    is a right retrieval."""
    found: dict[str, tuple[TrainingPair, dict[str, None], dict[str, None]]] = {}
    for pair in pairs:
        _first, ids, paths = found.setdefault(normalize(pair.query), (pair, {}, {}))
        ids[pair.positive_id] = None
        if pair.path:
            paths[pair.path] = None
    return [
        HeldOutQuestion(first.query, first.group, paths=frozenset(paths), chunk_ids=frozenset(ids))
        for first, ids, paths in found.values()
    ]


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
    if not cited and EXPERT_TAG in item.tags:
        return _backing(item.chunks, text)
    return _cited(item.chunks, cited)


def _backing(chunks: Sequence[Mapping[str, Any]], expert_answer: str) -> list[Mapping[str, Any]]:
    """An approved expert answer cites nothing: the retrieved chunks that hold one of its
    specifics (a number, date, version, identifier, command or link) are the ones it rests on.
    None means the docs Lore found don't back it: a content gap, not a retrieval example."""
    claims = extract_claims(expert_answer)
    return [
        c
        for c in chunks
        if c.get("chunk_id")
        and c.get("text")
        and len(unsupported(claims, [f"{c['text']}\n{c.get('url') or ''}"])) < len(claims)
    ]


def _cited(chunks: Sequence[Mapping[str, Any]], numbers: set[int]) -> list[Mapping[str, Any]]:
    """Every retrieved chunk of the documents numbered `numbers` (one number per document)."""
    if not numbers:
        return []
    return [c for c in numbered_chunks(chunks) if c["n"] in numbers and c.get("chunk_id") and c.get("text")]
