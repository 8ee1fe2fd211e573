"""Content gaps: the questions Lore could not answer well, clustered for the people who write the docs.

Two kinds of report, clustered the same way:

- `gaps`: questions Lore abstained on, got a 👎 on, or someone asked an expert about
  (`GAP_SIGNALS`);
- `top`: every question, to see what people ask most and how well Lore does.

A run (`run_reports`, the Celery task `lore.cluster_gaps`, `lore gaps --refresh`) embeds the
questions with Lore's own embedder (MiniLM, the index's model), clusters them with scikit-learn's
agglomerative clustering (average linkage on cosine distance, cut at `gaps.distance`: no number of
clusters to guess), and stores the clusters with their member questions in `gap_reports`. Readers
(the console, `lore gaps`) filter a stored run by source, channel group and date with
`view_report`, which recounts each cluster from its members: no clustering on a page view.

Each cluster's label is its most central question (the one nearest the normalised mean of its
members' vectors), so it reads as something a person asked, not a bag of keywords.

Where a question was asked (`asked_where`: "channel", "dm" or "private") is kept with each member.
The console shows reviewers every question, as the review queue does. The digest is read by a
whole channel, so it shows only questions asked in channels everyone may read (`digest_gaps`): a
cluster of private questions is posted as a count, never as their text.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, delete, exists, or_, select

from feedback.models import GAP_REPORT_KINDS, Escalation, ExpertAnswer, GapReport, Interaction, Vote
from feedback.store import SessionFactory

if TYPE_CHECKING:
    from config.settings import GapsSettings, Settings
    from knowledge.embeddings import Embedder

Embed = Callable[[Sequence[str]], np.ndarray]

# Why a question counts as a gap: one SQL condition on `Interaction` each.
GAP_SIGNALS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "abstained": lambda: Interaction.abstained.is_(True),
    "down": lambda: exists().where(Vote.answer_id == Interaction.answer_id, Vote.value == "down"),
    "escalated": lambda: exists().where(Escalation.answer_id == Interaction.answer_id),
}
KEEP_REPORTS = 20  # per kind; older runs are deleted when a new one is stored
EXAMPLES = 5
TREND_WEEKS = 8


# ---- selecting questions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    answer_id: str
    question: str
    created_at: datetime
    platform: str
    channel: str | None
    sources: tuple[str, ...]  # sources among the answer's retrieved chunks
    abstained: bool
    vote: str | None  # the answers' current votes: "down" if any is, else "up" if any is
    escalated: bool = False  # someone asked an expert about it
    expert: bool = False  # an expert answered it (a reply by the experts, or one accepted with ✅)
    where: str = "private"  # `asked_where`: "channel", "dm" or "private"

    def as_member(self, distance: float) -> dict[str, Any]:
        return {
            "answer_id": self.answer_id,
            "question": self.question,
            "at": self.created_at.isoformat(timespec="seconds"),
            "platform": self.platform,
            "channel": self.channel,
            "where": self.where,
            "sources": list(self.sources),
            "abstained": self.abstained,
            "vote": self.vote,
            "escalated": self.escalated,
            "expert": self.expert,
            "distance": round(float(distance), 4),
        }


def asked_where(platform: str, channel: str | None, workspace: str | None, thread: str | None) -> str:
    """Where a recorded question was asked, from what the log keeps: "dm" (a direct message),
    "channel" (posted in a channel, answered in a thread there), or "private" (anything else:
    the web console, the CLI, an ephemeral `/ask`, a Slack private channel or group DM with a G…
    id, a Discord answer without a thread). In doubt, "private": the digest never shows those."""
    if not channel:
        return "private"
    if platform == "slack":
        if channel.startswith("D"):
            return "dm"
        # Lore answers a channel question in a thread; a private answer (an ephemeral /ask,
        # "Answer privately") is recorded without one (bot.core.conversation._record_answer).
        return "channel" if channel.startswith("C") and thread else "private"
    if platform == "discord":
        if not workspace:
            return "dm"
        # In reply mode a channel answer has no thread either: it cannot be told from a private one.
        return "channel" if thread else "private"
    return "private"


def select_questions(sessions: SessionFactory, kind: str, *, since: datetime, limit: int) -> list[Question]:
    """The most recent `limit` questions of `kind` ("gaps" or "top") asked since `since`."""
    if kind not in GAP_REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    stmt = select(Interaction).where(Interaction.created_at >= since)
    if kind == "gaps":
        stmt = stmt.where(or_(*(signal() for signal in GAP_SIGNALS.values())))
    stmt = stmt.order_by(Interaction.created_at.desc(), Interaction.id.desc()).limit(limit)
    with sessions() as session:
        rows = list(session.scalars(stmt))
        votes: dict[str, set[str]] = {}
        escalated: set[str] = set()
        expert: set[str] = set()
        ids = [r.answer_id for r in rows]
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            for answer_id, value in session.execute(
                select(Vote.answer_id, Vote.value).where(Vote.answer_id.in_(batch))
            ):
                votes.setdefault(answer_id, set()).add(value)
            escalated.update(
                session.scalars(select(Escalation.answer_id).where(Escalation.answer_id.in_(batch)))
            )
            expert.update(
                session.scalars(select(ExpertAnswer.answer_id).where(ExpertAnswer.answer_id.in_(batch)))
            )
    out = []
    for r in rows:
        values = votes.get(r.answer_id, set())
        out.append(
            Question(
                answer_id=r.answer_id,
                question=r.question.strip(),
                created_at=r.created_at,
                platform=r.platform,
                channel=r.channel,
                sources=tuple(dict.fromkeys(str(c.get("source")) for c in r.chunks if c.get("source"))),
                abstained=bool(r.abstained),
                vote="down" if "down" in values else ("up" if "up" in values else None),
                escalated=r.answer_id in escalated,
                expert=r.answer_id in expert,
                where=asked_where(r.platform, r.channel, r.workspace, r.thread),
            )
        )
    return out


# ---- clustering -------------------------------------------------------------------------------------


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def cluster_vectors(vectors: np.ndarray, *, distance: float) -> np.ndarray:
    """A cluster number per row: agglomerative, average linkage, cosine distance cut at `distance`."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average"
    )
    return np.asarray(model.fit_predict(_normalise(vectors)), dtype=int)


def cluster_report(
    questions: Sequence[Question], embed: Embed, *, distance: float, min_size: int
) -> list[dict[str, Any]]:
    """Clusters of `questions`, largest first, each `{"label", "size", "members"}`; a member is
    `Question.as_member` (its cosine distance to the cluster's centre included), nearest first.

    Identical questions (case and spacing aside) are embedded once."""
    keys = [" ".join(q.question.lower().split()) for q in questions]
    unique = list(dict.fromkeys(keys))
    if not unique:
        return []
    index = {k: i for i, k in enumerate(unique)}
    first_text: dict[str, str] = {}
    for q, k in zip(questions, keys, strict=True):
        first_text.setdefault(k, q.question)
    vectors = _normalise(embed([first_text[k] for k in unique]))
    labels = cluster_vectors(vectors, distance=distance)
    weight = Counter(keys)
    by_label: dict[int, list[int]] = {}  # cluster -> positions in `questions`
    for pos, k in enumerate(keys):
        by_label.setdefault(int(labels[index[k]]), []).append(pos)
    clusters: list[dict[str, Any]] = []
    for label, positions in by_label.items():
        if len(positions) < min_size:
            continue
        rows = np.flatnonzero(labels == label)
        w = np.array([weight[unique[i]] for i in rows], dtype=np.float32)
        centre = _normalise((vectors[rows] * w[:, None]).sum(axis=0, keepdims=True))[0]
        dist = dict(zip(rows.tolist(), (1.0 - vectors[rows] @ centre).tolist(), strict=True))
        ranked = sorted(positions, key=lambda p: (dist[index[keys[p]]], questions[p].answer_id))
        clusters.append(
            {
                "label": questions[ranked[0]].question,
                "size": len(positions),
                "members": [questions[p].as_member(dist[index[keys[p]]]) for p in ranked],
            }
        )
    clusters.sort(key=lambda c: (-c["size"], c["label"]))
    return clusters


# ---- runs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    id: int
    kind: str
    questions: int
    clusters: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "questions": self.questions,
            "clusters": self.clusters,
            "seconds": round(self.seconds, 2),
        }


def run_reports(
    sessions: SessionFactory,
    embed: Embed,
    settings: GapsSettings,
    *,
    kinds: Iterable[str] = GAP_REPORT_KINDS,
    requested_by: str | None = None,
    model: str = "",
    now: datetime | None = None,
) -> list[RunSummary]:
    """Cluster each kind's questions of the last `settings.window` and store each run."""
    from config.settings import parse_duration

    done = []
    for kind in kinds:
        started = now or datetime.now(UTC)
        clock = time.monotonic()
        since = started - parse_duration(settings.window)
        questions = select_questions(sessions, kind, since=since, limit=settings.max_questions)
        clusters = cluster_report(questions, embed, distance=settings.distance, min_size=settings.min_size)
        params = {
            "window": settings.window,
            "since": since.isoformat(timespec="seconds"),
            "distance": settings.distance,
            "min_size": settings.min_size,
            "model": model,
            "signals": list(GAP_SIGNALS) if kind == "gaps" else [],
        }
        report_id = store_report(
            sessions,
            kind,
            clusters,
            params=params,
            questions=len(questions),
            started_at=started,
            requested_by=requested_by,
        )
        done.append(RunSummary(report_id, kind, len(questions), len(clusters), time.monotonic() - clock))
    return done


_EMBED_CACHE = 20_000  # question vectors kept per process (~30 MB): a re-run embeds only new ones
_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_vectors_lock = threading.Lock()


def cached_embed(embedder: Embedder) -> Embed:
    """Lore's own embedder (the index's model, loaded from its package) behind a small per-process
    cache: the scheduled runs see mostly the same questions each time."""
    identity = embedder.identity.describe()

    def embed(texts: Sequence[str]) -> np.ndarray:
        with _vectors_lock:
            missing = [t for t in dict.fromkeys(texts) if (identity, t) not in _vectors]
        fresh: dict[str, np.ndarray] = {}
        if missing:
            found = np.asarray(embedder.query_model.get_text_embedding_batch(missing), dtype=np.float32)
            fresh = dict(zip(missing, found, strict=True))
        with _vectors_lock:
            out = []
            for t in texts:
                key = (identity, t)
                vector = fresh[t] if t in fresh else _vectors.pop(key, None)
                if vector is None:  # evicted by another run meanwhile
                    vector = np.asarray(embedder.query_model.get_text_embedding(t), dtype=np.float32)
                _vectors[key] = vector  # (re)inserted last: the most recently used
                out.append(vector)
            while len(_vectors) > _EMBED_CACHE:
                _vectors.popitem(last=False)
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)

    return embed


def cluster_questions(
    sessions: SessionFactory, settings: Settings, embedder: Embedder, *, requested_by: str | None = None
) -> list[RunSummary]:
    """`run_reports` with Lore's own embedder."""
    return run_reports(
        sessions,
        cached_embed(embedder),
        settings.gaps,
        requested_by=requested_by,
        model=embedder.identity.describe(),
    )


def store_report(
    sessions: SessionFactory,
    kind: str,
    clusters: list[dict[str, Any]],
    *,
    params: dict[str, Any],
    questions: int,
    started_at: datetime,
    requested_by: str | None = None,
) -> int:
    """Store one run, and drop the same kind's runs older than the last `KEEP_REPORTS`."""
    row = GapReport(
        kind=kind,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        requested_by=requested_by,
        questions=questions,
        params=params,
        clusters=clusters,
    )
    with sessions() as session, session.begin():
        session.add(row)
        session.flush()
        keep = select(GapReport.id).where(GapReport.kind == kind).order_by(GapReport.id.desc())
        kept = list(session.scalars(keep.limit(KEEP_REPORTS)))
        session.execute(delete(GapReport).where(GapReport.kind == kind, GapReport.id.not_in(kept)))
        return int(row.id)


def latest_report(sessions: SessionFactory, kind: str) -> GapReport | None:
    with sessions() as session:
        return session.scalars(
            select(GapReport).where(GapReport.kind == kind).order_by(GapReport.id.desc()).limit(1)
        ).one_or_none()


def last_run(sessions: SessionFactory) -> datetime | None:
    """When any clustering run last finished (None: never)."""
    from sqlalchemy import func

    with sessions() as session:
        return session.scalar(select(func.max(GapReport.finished_at)))


# ---- reading a run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GapFilters:
    source: str | None = None  # a source among the answer's retrieved chunks
    channel: str | None = None  # a channel group: "slack", or "slack:C0123" for one channel
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> GapFilters:
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat((params.get(name) or "").strip())
            except ValueError:
                return None

        def text(name: str) -> str | None:
            return (params.get(name) or "").strip()[:200] or None

        return cls(text("source"), text("channel"), day("from"), day("to"))

    def params(self) -> dict[str, str]:
        out = {
            "source": self.source,
            "channel": self.channel,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
        }
        return {k: v for k, v in out.items() if v}

    def keeps(self, member: Mapping[str, Any]) -> bool:
        if self.source and self.source not in member.get("sources", []):
            return False
        if self.channel and self.channel not in (member["platform"], channel_group(member)):
            return False
        day = datetime.fromisoformat(member["at"]).date()
        if self.date_from and day < self.date_from:
            return False
        return not (self.date_to and day > self.date_to)


def channel_group(member: Mapping[str, Any]) -> str:
    channel = member.get("channel")
    return f"{member['platform']}:{channel}" if channel else str(member["platform"])


@dataclass
class ClusterView:
    rank: int
    label: str
    count: int
    examples: list[str]
    trend: list[tuple[str, int]]  # (week starting Monday, questions), oldest first
    abstained: int
    down: int
    up: int
    platforms: dict[str, int]
    answer_ids: list[str]
    escalated: int = 0
    expert_answered: int = 0
    documents: list[dict[str, Any]] = field(default_factory=list)  # nearest documents, filled by readers
    private: bool = False  # only questions asked privately: the label and examples are withheld

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "label": self.label,
            "count": self.count,
            "examples": self.examples,
            "trend": [{"week": w, "questions": n} for w, n in self.trend],
            "abstained": self.abstained,
            "down": self.down,
            "up": self.up,
            "platforms": self.platforms,
            "escalated": self.escalated,
            "expert_answered": self.expert_answered,
            "expert_share": round(self.expert_answered / self.count, 3) if self.count else 0.0,
            "documents": self.documents,
            "private": self.private,
        }


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def view_report(
    clusters: Sequence[Mapping[str, Any]],
    filters: GapFilters = GapFilters(),
    *,
    min_size: int = 1,
    limit: int | None = None,
    until: date | None = None,
    weeks: int = TREND_WEEKS,
) -> list[ClusterView]:
    """The stored clusters seen through `filters`: each recounted from its matching members
    (largest first), with `weeks` weekly counts up to the week of `until` (default: today)."""
    end = _week(until or filters.date_to or datetime.now(UTC).date())
    starts = [end - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    views = []
    for cluster in clusters:
        members = [m for m in cluster["members"] if filters.keeps(m)]
        if len(members) < max(1, min_size):
            continue
        per_week = Counter(_week(datetime.fromisoformat(m["at"]).date()) for m in members)
        examples = list(dict.fromkeys(m["question"] for m in members))[:EXAMPLES]
        label = cluster["label"] if any(m["question"] == cluster["label"] for m in members) else examples[0]
        views.append(
            ClusterView(
                rank=0,
                label=label,
                count=len(members),
                examples=examples,
                trend=[(s.isoformat(), per_week.get(s, 0)) for s in starts],
                abstained=sum(1 for m in members if m["abstained"]),
                down=sum(1 for m in members if m["vote"] == "down"),
                up=sum(1 for m in members if m["vote"] == "up"),
                platforms=dict(Counter(m["platform"] for m in members).most_common()),
                answer_ids=[m["answer_id"] for m in members],
                escalated=sum(1 for m in members if m.get("escalated")),  # runs before 0005 lack it
                expert_answered=sum(1 for m in members if m.get("expert")),
            )
        )
    views.sort(key=lambda v: (-v.count, v.label))
    for i, v in enumerate(views, 1):
        v.rank = i
    return views[:limit] if limit else views


def filter_options(clusters: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The sources and channel groups a stored run's questions came from (for the filter menus)."""
    sources: set[str] = set()
    groups: set[str] = set()
    for cluster in clusters:
        for m in cluster["members"]:
            sources.update(m.get("sources", []))
            groups.update({str(m["platform"]), channel_group(m)})
    return {"sources": sorted(sources), "channels": sorted(groups)}


def nearest_documents(chunks: Iterable[Any], limit: int = 3) -> list[dict[str, Any]]:
    """Retrieved chunks (`knowledge.answer.RetrievedChunk`) to one row per document, best first,
    scored by cosine similarity to the question (the ranking score when that is missing)."""
    best: dict[str, dict[str, Any]] = {}
    for c in chunks:
        score = c.dense_score if c.dense_score is not None else c.score
        key = c.doc_id
        if key not in best or score > best[key]["score"]:
            best[key] = {
                "title": c.title,
                "url": c.url,
                "source": c.source,
                "path": c.path,
                "score": round(float(score), 3),
            }
    return sorted(best.values(), key=lambda d: -d["score"])[:limit]


# ---- the digest -----------------------------------------------------------------------------------------


def new_gaps(clusters: Sequence[Mapping[str, Any]], *, since: datetime, top: int) -> list[ClusterView]:
    """The gaps asked about most since `since` (the digest's "new" questions)."""
    return view_report(clusters, GapFilters(date_from=since.astimezone(UTC).date()), limit=top)


PRIVATE_LABEL = "Questions asked privately"


def digest_gaps(
    clusters: Sequence[Mapping[str, Any]],
    *,
    since: datetime,
    top: int,
    shown: Callable[[Mapping[str, Any]], bool],
) -> list[ClusterView]:
    """`new_gaps` for a channel to read: each cluster labelled by its most central question that
    `shown` allows (a member asked where everyone may read it), with only such questions as
    examples; a cluster with none keeps its count and loses its text (`private`). Counts, trends
    and votes stay whole: they say how much, not what or who."""
    views = new_gaps(clusters, since=since, top=top)
    members = {m["answer_id"]: m for c in clusters for m in c["members"]}
    for v in views:
        public = list(dict.fromkeys(m["question"] for a in v.answer_ids if shown(m := members[a])))
        v.label = public[0] if public else PRIVATE_LABEL
        v.examples = public[:EXAMPLES]
        v.private = not public
        v.documents = []  # the digest names no documents: their audience is not the channel's
    return views
