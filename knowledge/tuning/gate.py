"""The gate: a candidate serves only if it finds more right passages than the current model on
questions neither trained on, loses nothing on the eval sets, and still knows when to abstain.

Both models are measured the same way and without building a collection: the dense side is
exact cosine between each question and every chunk (the candidate's own chunk vectors for `full`,
the index's vectors with mapped queries for `adapter`, the index's vectors for the current model),
the sparse side is the index's own BM25 ranking, asked once and shared, and the two are fused and
capped per document by the very functions `LoreVectorStore` uses (`rrf`/`dbsf`, `rank_documents`,
`cap_per_document`) with the configured `retrieval` settings. Query expansion is not applied.

Abstention: fine-tuning moves the cosine scale, so each model's thresholds are fitted
(`knowledge.calibrate.fit`) on the answerable and not-in-corpus questions available (the eval
sets', and calibration's own synthetic ones from the corpus), and the gate checks that the
candidate separates the two groups about as well as the current model. The candidate's
thresholds travel with it (`Gate.thresholds`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from config.settings import EvalSet, RetrievalSettings, TuningSettings
from knowledge.abstain import DEFAULT_NAMED, TermStats, Thresholds, one_token
from knowledge.abstain import decide as abstain_decide
from knowledge.backends import Hit, SearchRequest
from knowledge.calibrate import (
    FLOOR_QUANTILE,
    FLOOR_RANGE,
    MAX_QUESTIONS,
    fit,
    quantile,
)
from knowledge.calibrate import (
    synthesize as calibration_questions,
)
from knowledge.evaluate import NOT_IN_CORPUS, Question
from knowledge.generate import sentences
from knowledge.tuning.data import HeldOutQuestion, TrainingPair
from knowledge.tuning.synthetic import Corpus, Encode
from knowledge.tuning.train import Adapter, apply_adapter, offline
from knowledge.vector_store import CONFIDENCE_TOP, TIE_MARGIN, cap_per_document, dbsf, rank_documents, rrf

if TYPE_CHECKING:
    from knowledge.store import IndexStore

K = 5  # recall@5 and MRR@5, as `lore eval` reports them by default
HELD_OUT = "held-out"
SYNTHETIC = "synthetic"
BOOTSTRAP_SAMPLES = 2000


# -- how one model sees the corpus --------------------------------------------------------------


@dataclass
class Retriever:
    name: str
    encode_queries: Encode
    encode_texts: Encode  # documents and their sentences (abstention's confidence)
    vectors: np.ndarray  # chunk vectors, row i = corpus.chunks[i]
    _sentences: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def sentence_vectors(self, corpus: Corpus, rows: Sequence[int]) -> np.ndarray:
        todo = [r for r in rows if r not in self._sentences]
        groups = [sentences(corpus.chunks[r].text) for r in todo]
        flat = [s for g in groups for s in g]
        embedded = self.encode_texts(flat) if flat else np.zeros((0, self.vectors.shape[1]), np.float32)
        start = 0
        for r, g in zip(todo, groups, strict=True):
            self._sentences[r] = embedded[start : start + len(g)]
            start += len(g)
        parts = [self._sentences[r] for r in rows if len(self._sentences[r])]
        return np.concatenate(parts) if parts else np.zeros((0, self.vectors.shape[1]), np.float32)


def model_encoder(model_dir: Path) -> Encode:
    """A sentence-transformers model as an `Encode` (L2-normalised rows)."""
    from sentence_transformers import SentenceTransformer

    offline()
    model = SentenceTransformer(str(model_dir), device="cpu")
    return lambda texts: np.asarray(
        model.encode(list(texts), normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    )


def current(corpus: Corpus, encode: Encode) -> Retriever:
    """The serving model: its query encoder and the vectors already in the index."""
    return Retriever("current", encode, encode, corpus.vectors)


def full_candidate(corpus: Corpus, model_dir: Path) -> Retriever:
    """A fine-tuned model: the corpus re-embedded with it, in memory."""
    encode = model_encoder(model_dir)
    return Retriever("full", encode, encode, encode(corpus.texts()))


def adapter_candidate(corpus: Corpus, encode: Encode, adapter: Adapter) -> Retriever:
    """An adapter: the current model's queries mapped, the index's vectors unchanged."""
    return Retriever("adapter", lambda texts: apply_adapter(encode(texts), adapter), encode, corpus.vectors)


# -- ranking as LoreVectorStore does ------------------------------------------------------------


def lexical(store: IndexStore, questions: Iterable[str], candidates: int) -> dict[str, list[Hit]]:
    """The index's BM25 ranking of each question (the same for every model, so asked once)."""
    unique = list(dict.fromkeys(questions))
    out: dict[str, list[Hit]] = {q: [] for q in unique}
    asked = [(q, store.sparse.query(q)) for q in unique]
    asked = [(q, v) for q, v in asked if v]
    for start in range(0, len(asked), 64):
        block = asked[start : start + 64]
        requests = [SearchRequest("sparse", candidates, sparse=v, with_payload=False) for _q, v in block]
        for (q, _v), hits in zip(block, store.backend.search_batch(requests), strict=True):
            out[q] = hits
    return out


@dataclass
class Ranked:
    rows: list[int]  # the top chunks (corpus rows), capped per document as served
    best: list[int]  # the best CONFIDENCE_TOP before the cap: what abstention looks at


def rank(
    retriever: Retriever,
    corpus: Corpus,
    questions: Sequence[str],
    sparse: Mapping[str, Sequence[Hit]],
    retrieval: RetrievalSettings,
    top_k: int = K,
) -> list[Ranked]:
    if not questions:
        return []
    sims = retriever.encode_queries(list(questions)) @ retriever.vectors.T
    index = corpus.index_of()
    ids = [c.id for c in corpus.chunks]
    docs = [c.doc_id or c.path for c in corpus.chunks]
    wanted = max(top_k, retrieval.depth if retrieval.max_per_doc else 0) + TIE_MARGIN
    out = []
    for question, row in zip(questions, sims, strict=True):
        lexical_hits = [h for h in sparse.get(question, []) if h.id in index]
        mode = retrieval.mode
        if mode == "hybrid" and not lexical_hits:
            mode = "dense"
        if mode == "sparse":
            scored = [(index[h.id], h.score) for h in lexical_hits[:wanted]]
        else:
            depth = max(retrieval.candidates, wanted) if mode == "hybrid" else wanted
            top = np.argsort(-row, kind="stable")[:depth]
            dense_hits = [Hit(ids[i], float(row[i]), {}) for i in top]
            if mode == "dense":
                scored = [(int(i), float(row[i])) for i in top]
            else:
                lists = [dense_hits, list(lexical_hits)]
                weights = (retrieval.dense_weight, 1.0)
                fused = (
                    dbsf(lists, weights)
                    if retrieval.fusion == "dbsf"
                    else rrf(lists, retrieval.rrf_k, weights)
                )
                chosen = sorted(fused, key=lambda i: (-fused[i], i))[:wanted]
                scored = [(index[i], fused[i]) for i in chosen]
        # Best score first; ties to the closer chunk, then the lower id (LoreVectorStore.query).
        scored.sort(key=lambda rs: (-round(rs[1], 6), -float(row[rs[0]]), ids[rs[0]]))
        best = [r for r, _s in scored[:CONFIDENCE_TOP]]
        if retrieval.doc_boost and retrieval.max_per_doc:
            scored = rank_documents(scored, lambda rs: docs[rs[0]], lambda rs: rs[1], retrieval.doc_boost)
        capped = cap_per_document(scored, lambda rs: docs[rs[0]], top_k, retrieval.max_per_doc)
        out.append(Ranked([r for r, _s in capped], best))
    return out


# -- figures --------------------------------------------------------------------------------------


@dataclass
class SetScores:
    recall: list[float]  # per question, recall@5
    rr: list[float]  # per question, reciprocal rank of the first right chunk in the top 5

    @property
    def n(self) -> int:
        return len(self.recall)

    def figures(self) -> dict[str, float]:
        return {"recall@5": _mean(self.recall), "mrr": _mean(self.rr)}


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0


def score(question: HeldOutQuestion, ranked: Ranked, corpus: Corpus) -> tuple[float, float]:
    """(recall@5, reciprocal rank): by chunk ids when the question has them (any one is right),
    else by documents as `lore eval` scores (the share of expected paths found)."""
    chunks = [corpus.chunks[r] for r in ranked.rows[:K]]
    if question.chunk_ids:
        right = [c.id in question.chunk_ids for c in chunks]
        recall = 1.0 if any(right) else 0.0
    else:
        right = [c.path in question.paths for c in chunks]
        found = {c.path for c in chunks} & question.paths
        recall = len(found) / len(question.paths) if question.paths else 0.0
    first = next((i for i, ok in enumerate(right, 1) if ok), None)
    return recall, 1.0 / first if first else 0.0


@dataclass
class Abstention:
    thresholds: Thresholds
    detected: float  # share of not-in-corpus questions it abstains on
    false_abstain: float  # share of answerable ones it abstains on
    answerable: int
    unanswerable: int

    @property
    def separation(self) -> float:
        """Youden's J: what calibration maximises."""
        return self.detected - self.false_abstain

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.thresholds.as_dict(),
            "detected": round(self.detected, 4),
            "false_abstain": round(self.false_abstain, 4),
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
        }


@dataclass
class AbstentionQuestions:
    answerable: list[str]
    unanswerable: list[str]


def abstention_questions(
    store: IndexStore, corpus: Corpus, evals: Mapping[str, Sequence[Question]], tokenizer: Any = None
) -> AbstentionQuestions:
    """The eval sets' questions (answerable and not-in-corpus) and calibration's synthetic pairs
    (`knowledge.calibrate.synthesize`: a corpus sentence, and the same with a foreign name)."""
    answerable = [q.question for qs in evals.values() for q in qs if q.kind != NOT_IN_CORPUS]
    unanswerable = [q.question for qs in evals.values() for q in qs if q.kind == NOT_IN_CORPUS]
    stats = TermStats(store.backend, store.sparse, one_token(tokenizer))
    for pair in calibration_questions([c.text for c in corpus.chunks], stats, None, MAX_QUESTIONS):
        answerable.append(pair.answerable)
        unanswerable.append(pair.unanswerable)
    return AbstentionQuestions(list(dict.fromkeys(answerable)), list(dict.fromkeys(unanswerable)))


def confidence(retriever: Retriever, corpus: Corpus, query_vector: np.ndarray, ranked: Ranked) -> float:
    """As `CitingQueryEngine.confidence`: the best cosine to a top chunk or one of its sentences."""
    if not ranked.best:
        return 0.0
    best = float(max(retriever.vectors[r] @ query_vector for r in ranked.best))
    vectors = retriever.sentence_vectors(corpus, ranked.best)
    if len(vectors):
        best = max(best, float(np.max(vectors @ query_vector)))
    return best


def calibrate_abstention(
    retriever: Retriever,
    corpus: Corpus,
    questions: AbstentionQuestions,
    sparse: Mapping[str, Sequence[Hit]],
    retrieval: RetrievalSettings,
    stats: TermStats | None = None,
) -> Abstention | None:
    """Thresholds fitted for `retriever` on `questions` (None without answerable ones), and how
    well they separate the answerable from the not-in-corpus questions."""
    if not questions.answerable:
        return None
    asked = questions.answerable + questions.unanswerable
    ranked = rank(retriever, corpus, asked, sparse, retrieval)
    vectors = retriever.encode_queries(asked)
    conf = [confidence(retriever, corpus, v, r) for v, r in zip(vectors, ranked, strict=True)]
    yes, no = conf[: len(questions.answerable)], conf[len(questions.answerable) :]
    if no:
        floor, named = fit(yes, no)
    else:  # nothing to separate from: the floor alone, as calibration sets it
        floor = min(max(quantile(yes, FLOOR_QUANTILE), FLOOR_RANGE[0]), FLOOR_RANGE[1])
        named = max(DEFAULT_NAMED, floor)
    thresholds = Thresholds(floor, named, "calibrated")
    abstained = []
    for question, c, r in zip(asked, conf, ranked, strict=True):
        signal = (
            stats.signal(question, [corpus.chunks[i].text for i in r.best], chunks=len(corpus.chunks))
            if stats
            else None
        )
        abstained.append(abstain_decide(c, signal, thresholds).abstain)
    n_yes = len(yes)
    return Abstention(
        thresholds=thresholds,
        detected=float(np.mean(abstained[n_yes:])) if no else 0.0,  # see `unanswerable`
        false_abstain=float(np.mean(abstained[:n_yes])),
        answerable=n_yes,
        unanswerable=len(no),
    )


@dataclass
class Report:
    """One model measured: recall@5 and MRR per set, and its abstention."""

    sets: dict[str, SetScores]
    abstention: Abstention | None = None

    def figures(self) -> dict[str, dict[str, float]]:
        """`{SET: {"recall@5", "mrr"}}`, the `before`/`after` of `lore tune --json`."""
        return {name: s.figures() for name, s in self.sets.items()}


def measure(
    retriever: Retriever,
    corpus: Corpus,
    sets: Mapping[str, Sequence[HeldOutQuestion]],
    sparse: Mapping[str, Sequence[Hit]],
    retrieval: RetrievalSettings,
    *,
    abstention: AbstentionQuestions | None = None,
    stats: TermStats | None = None,
) -> Report:
    """`retriever` on each named set of questions (`held-out`, each eval set, or `synthetic`).
    `sparse` must hold every question's BM25 list (`lexical`)."""
    report = Report({})
    for name, questions in sets.items():
        ranked = rank(retriever, corpus, [q.question for q in questions], sparse, retrieval)
        figures = [score(q, r, corpus) for q, r in zip(questions, ranked, strict=True)]
        report.sets[name] = SetScores([f[0] for f in figures], [f[1] for f in figures])
    if abstention is not None:
        report.abstention = calibrate_abstention(retriever, corpus, abstention, sparse, retrieval, stats)
    return report


def compare(
    store: IndexStore,
    corpus: Corpus,
    before: Retriever,
    after: Retriever,
    sets: Mapping[str, Sequence[HeldOutQuestion]],
    retrieval: RetrievalSettings,
    *,
    abstention: AbstentionQuestions | None = None,
    tokenizer: Any = None,
) -> tuple[Report, Report]:
    """Both models on the same questions, the same BM25 lists and the same term statistics."""
    asked = [q.question for qs in sets.values() for q in qs]
    if abstention is not None:
        asked += abstention.answerable + abstention.unanswerable
    sparse = lexical(store, asked, max(retrieval.candidates, retrieval.depth + TIE_MARGIN))
    stats = TermStats(store.backend, store.sparse, one_token(tokenizer))
    return (
        measure(before, corpus, sets, sparse, retrieval, abstention=abstention, stats=stats),
        measure(after, corpus, sets, sparse, retrieval, abstention=abstention, stats=stats),
    )


def load_evals(evals: Sequence[EvalSet]) -> dict[str, list[Question]]:
    """The `[[evals]]` sets of `lore.toml`, by name."""
    from knowledge.evaluate import load_questions

    return {e.name: load_questions(e.path) for e in evals}


def eval_questions(questions: Sequence[Question]) -> list[HeldOutQuestion]:
    """An eval set's answerable questions, scored by paths like `lore eval`."""
    return [
        HeldOutQuestion(question=q.question, group=f"eval:{q.id}", paths=frozenset(q.sources))
        for q in questions
        if q.kind != NOT_IN_CORPUS and q.sources
    ]


def leak_free(pairs: Sequence[TrainingPair], *sets: Sequence[HeldOutQuestion]) -> list[TrainingPair]:
    """`pairs` without any whose query is (up to case and spacing) a question it will be measured
    on: eval questions are never trained on, whatever file they came in."""
    asked = {" ".join(q.question.lower().split()) for qs in sets for q in qs}
    return [p for p in pairs if " ".join(p.query.lower().split()) not in asked]


def synthetic_questions(pairs: Sequence[TrainingPair]) -> list[HeldOutQuestion]:
    """Held-out synthetic pairs as questions: right when their own chunk is found."""
    return [
        HeldOutQuestion(
            question=p.query,
            group=p.group,
            chunk_ids=frozenset({p.positive_id}) if p.positive_id else frozenset(),
            paths=frozenset({p.path}) if p.path and not p.positive_id else frozenset(),
        )
        for p in pairs
    ]


# -- the decision ---------------------------------------------------------------------------------


@dataclass
class Difference:
    mean: float
    low: float  # bootstrap 95% interval of the paired difference
    high: float


def paired_difference(before: Sequence[float], after: Sequence[float], *, seed: int) -> Difference:
    """The mean of after - before per question, with a seeded bootstrap 95% interval."""
    d = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if not len(d):
        return Difference(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(BOOTSTRAP_SAMPLES, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Difference(float(d.mean()), float(low), float(high))


@dataclass
class Gate:
    passed: bool
    reasons: list[str]
    thresholds: Thresholds | None = None  # the candidate's abstention thresholds, to travel with it
    primary: str = HELD_OUT  # the set the gain was measured on: `held-out` or `synthetic`

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def decide(before: Report, after: Report, tuning: TuningSettings) -> Gate:
    """Promote only if recall@5 or MRR on the held-out questions (else the synthetic slice) gains
    at least `tuning.margin` with a bootstrap 95% interval above 0, no other set loses more than
    `tuning.max_loss` on either, and abstention separates answerable from not-in-corpus
    questions at least as well as before, less `max_loss` or one question's worth, the larger."""
    reasons: list[str] = []
    passed = True
    primary = HELD_OUT if before.sets.get(HELD_OUT) and before.sets[HELD_OUT].n else SYNTHETIC
    if primary == SYNTHETIC:
        reasons.append(
            "no judged or imported questions held out: the gain is measured on a held-out slice of "
            "the synthetic pairs, which says less about real questions"
        )
    b, a = before.sets.get(primary), after.sets.get(primary)
    if b is None or a is None or not b.n:
        return Gate(False, [*reasons, f"no {primary} questions to measure on"], None, primary)
    gains = {}
    for metric, vb, va in (("recall@5", b.recall, a.recall), ("mrr", b.rr, a.rr)):
        diff = paired_difference(vb, va, seed=tuning.seed)
        gains[metric] = diff.mean >= tuning.margin and diff.low > 0
        reasons.append(
            f"{primary} {metric}: {np.mean(vb):.3f} -> {np.mean(va):.3f} "
            f"({diff.mean:+.3f}, 95% CI {diff.low:+.3f} to {diff.high:+.3f}, n={b.n})"
        )
    if not any(gains.values()):
        passed = False
        reasons.append(
            f"refused: neither recall@5 nor MRR on {primary} gained {tuning.margin:+.3f} "
            "with its interval above 0"
        )
    for name, bs in before.sets.items():
        if name in (primary, HELD_OUT, SYNTHETIC) or name not in after.sets or not bs.n:
            continue
        fb, fa = bs.figures(), after.sets[name].figures()
        for metric in ("recall@5", "mrr"):
            loss = fb[metric] - fa[metric]
            if loss > tuning.max_loss:
                passed = False
                reasons.append(
                    f"refused: eval set {name} {metric} {fb[metric]:.3f} -> {fa[metric]:.3f} "
                    f"(loses {loss:.3f})"
                )
            else:
                reasons.append(f"eval set {name} {metric}: {fb[metric]:.3f} -> {fa[metric]:.3f}")
    thresholds = after.abstention.thresholds if after.abstention else None
    if before.abstention and after.abstention:
        ab, aa = before.abstention, after.abstention
        if ab.unanswerable and aa.unanswerable:
            text = (
                f"abstention (recalibrated, floor {aa.thresholds.floor:.3f}, "
                f"named {aa.thresholds.named:.3f}): "
                f"not-in-corpus caught {ab.detected:.2f} -> {aa.detected:.2f}, "
                f"false abstention {ab.false_abstain:.2f} -> {aa.false_abstain:.2f}"
            )
            # One question's worth is noise on the small sets a team has, not a regression.
            tolerance = max(tuning.max_loss, 1 / aa.unanswerable, 1 / max(aa.answerable, 1))
            if aa.separation < ab.separation - tolerance:
                passed = False
                reasons.append("refused: " + text)
            else:
                reasons.append(text)
        else:
            reasons.append(
                f"abstention: no not-in-corpus questions; floor recalibrated on answerable ones only "
                f"({aa.thresholds.floor:.3f})"
            )
    else:
        reasons.append("abstention: no questions to recalibrate on; the current thresholds stay")
    if passed:
        reasons.append("passed")
    return Gate(passed, reasons, thresholds, primary)
