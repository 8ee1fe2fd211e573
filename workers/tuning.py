"""One retriever-tuning run (`lore tune retriever`, the `lore.tune_retriever` task): gather the
labels, train a candidate, measure it against the serving model, and promote it only if it wins.

The steps are the `knowledge/tuning` modules' (data, synthetic, train, gate, registry, promotion)
and the feedback log's labels (`feedback/tuning.py`); this module only puts them in order and
keeps the record. The whole run holds the tuning lock, so a second run waits for the first, and a
crash anywhere leaves the serving model as it was: the pointer moves only at the end of promotion.

Nothing trains on an eval question: pairs whose question is one of the `[[evals]]` questions are
dropped, and judged and imported questions are split into train and held-out by group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from config.settings import Settings
from feedback.datasets.clean import normalize
from knowledge.tuning import data, registry
from knowledge.tuning.data import HeldOutQuestion, TrainingPair
from workers.ports import PROMOTING, TuneRequest

if TYPE_CHECKING:
    from feedback.store import SessionFactory
    from knowledge.evaluate import Question
    from knowledge.service import Knowledge
    from knowledge.tuning.synthetic import Corpus

log = logging.getLogger(__name__)

Step = Callable[[str], None]  # a line saying what the run does now (the CLI shows it)


@dataclass
class _Sets:
    train: list[TrainingPair] = field(default_factory=list)
    questions: dict[str, list[HeldOutQuestion]] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    evals: dict[str, list[Question]] = field(default_factory=dict)


def tune_retriever(
    settings: Settings,
    knowledge: Knowledge,
    sessions: SessionFactory | None,
    request: TuneRequest,
    *,
    step: Step | None = None,
    on_train_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run it; returns the `lore tune --json` body. `sessions`: the feedback database (None: no
    judged or curated labels, e.g. a corpus-only run)."""
    from knowledge.tuning.lock import run_lock

    say = step or (lambda text: log.info("tune: %s", text))
    started = time.monotonic()
    from knowledge.tuning.promotion import drop_expired

    with run_lock(settings):
        _close_interrupted(settings)
        drop_expired(settings)  # and half-built collections a killed promotion left
        knowledge.follow(force=True)
        serving = registry.serving(settings)
        weights = _weights_model(settings, serving)
        record = registry.create_run(settings, request.method, parent=weights.id)
        try:
            body = _run(settings, knowledge, sessions, request, record, say, on_train_step)
        except BaseException as exc:
            registry.refuse(settings, record.id, [f"the run failed: {exc!r}"])
            raise
    body["seconds"] = round(time.monotonic() - started, 1)
    return body


def _close_interrupted(settings: Settings) -> None:
    """Candidates a killed run left without a verdict: kept for inspection, marked, never served
    (the lock is ours, so no run is writing them now)."""
    for record in registry.runs(settings):
        if record.status == "candidate" and not record.gate.reasons:
            registry.refuse(settings, record.id, ["interrupted: the run stopped before the gate"])


def _weights_model(settings: Settings, serving: registry.ModelRecord) -> registry.ModelRecord:
    """The model whose weights a run starts from: adapters don't stack, so an adapter run starts
    from the serving model's own weights (its parent, when an adapter serves)."""
    record = serving
    while record.method == "adapter":
        record = registry.load(settings, record.parent or registry.BASE)
    return record


def _run(
    settings: Settings,
    knowledge: Knowledge,
    sessions: SessionFactory | None,
    request: TuneRequest,
    record: registry.ModelRecord,
    say: Step,
    on_train_step: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    from knowledge.tuning import gate, promotion, synthetic, train

    tuning = settings.tuning
    train.offline()  # models from disk only, and no per-load progress bars under ours
    say("reading the index")
    store = knowledge.store
    corpus = synthetic.read_corpus(store)
    if not corpus.chunks:
        raise ValueError("the index is empty: run `lore index` first")
    query_model = knowledge.embedder.query_model

    def encode(texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(query_model.get_text_embedding_batch(list(texts)), dtype=np.float32)
        return _normalised(vectors)

    def encode_queries(texts: Sequence[str], model: Any = query_model) -> np.ndarray:
        vectors = np.asarray([model.get_query_embedding(t) for t in texts], dtype=np.float32)
        return _normalised(vectors)

    # A new adapter maps the weights' own query vectors, not those of an adapter serving now.
    plain = query_model.inner if isinstance(query_model, registry.AdapterEmbedding) else query_model

    base_dir = _weights_dir(settings, record.parent or registry.BASE)
    sets = _gather(settings, corpus, encode_queries, base_dir, sessions, request, say)
    say(f"training ({request.method}) on {len(sets.train)} pairs")
    out_dir = registry.model_dir(settings, record.id)
    result = train.train(
        sets.train,
        base_model_dir=base_dir,
        out_dir=out_dir,
        method=request.method,
        max_minutes=request.max_minutes,
        seed=tuning.seed,
        epochs=tuning.epochs,
        batch_size=tuning.batch_size,
        learning_rate=tuning.learning_rate,
        on_step=on_train_step,
        progress=on_train_step is None,
    )

    say("measuring the candidate against the serving model")
    abstention = gate.abstention_questions(store, corpus, sets.evals, knowledge.embedder.tokenizer)
    now = gate.Retriever("current", encode_queries, encode, corpus.vectors)
    if request.method == "full":
        candidate = gate.full_candidate(corpus, out_dir / "st")
    else:
        adapter = train.load_adapter(out_dir / "adapter.npz")
        candidate = gate.adapter_candidate(corpus, lambda texts: encode_queries(texts, plain), adapter)
    before, after = gate.compare(
        store,
        corpus,
        now,
        candidate,
        sets.questions,
        settings.retrieval,
        abstention=abstention,
        tokenizer=knowledge.embedder.tokenizer,
    )
    verdict = gate.decide(before, after, tuning)

    record = registry.load(settings, record.id)
    record.pairs = sets.pairs
    record.before, record.after = before.figures(), after.figures()
    record.gate = registry.Gate(passed=verdict.passed, reasons=verdict.reasons)
    record.abstain_below = verdict.thresholds.floor if verdict.thresholds else None
    record.extra = {"training": result.as_dict(), "requested_by": request.requested_by}
    registry.save(settings, record)

    promoted = False
    if not verdict.passed:
        registry.refuse(settings, record.id)
        say("refused by the gate: the serving model stays")
    elif request.promote == "auto":
        say(f"{PROMOTING}: building its collection while the current model answers")
        promotion.promote(settings, record.id, embedder=knowledge.configured_embedder)
        knowledge.follow(force=True)
        promoted = True
    return {
        "run_id": record.id,
        "method": request.method,
        "pairs": sets.pairs,
        "before": record.before,
        "after": record.after,
        "gate": {"passed": verdict.passed, "reasons": verdict.reasons},
        "promoted": promoted,
        "model": record.id,
    }


def _normalised(vectors: np.ndarray) -> np.ndarray:
    out: np.ndarray = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return out


def _weights_dir(settings: Settings, model_id: str) -> Path:
    """The sentence-transformers directory of `model_id`'s weights (the configured model's for `base`)."""
    from knowledge.embeddings import local_model_path

    return local_model_path(registry.view_of(settings, registry.load(settings, model_id)).embedding)


def _gather(
    settings: Settings,
    corpus: Corpus,
    encode: Callable[[Sequence[str]], np.ndarray],
    weights: Path,
    sessions: SessionFactory | None,
    request: TuneRequest,
    say: Step,
) -> _Sets:
    """Training pairs and the held-out sets, with every kind counted."""
    from knowledge.tuning import gate, synthetic

    tuning = settings.tuning
    out = _Sets()
    out.evals = gate.load_evals(settings.evals)
    forbidden = {normalize(q.question) for qs in out.evals.values() for q in qs}

    judged: list[TrainingPair] = []
    curated: list[TrainingPair] = []
    judged_questions: list[HeldOutQuestion] = []
    if sessions is not None:
        from feedback.tuning import labels

        say("reading reviewers' judgments and curated answers")
        found = labels(sessions, settings)
        judged, curated, judged_questions = found.judged, found.curated, found.questions
    imported: list[TrainingPair] = []
    imported_questions: list[HeldOutQuestion] = []
    if request.pairs_file is not None:
        imported, imported_questions = synthetic.load_imported(request.pairs_file, corpus, encode)

    say(f"writing up to {request.synthetic} synthetic questions from the corpus")
    chat = synthetic.llm_chat(settings.llm)
    made = synthetic.synthesize(corpus, n=request.synthetic, seed=tuning.seed, chat=chat)
    made = synthetic.consistent(made, corpus, encode)

    def allowed(pairs: list[TrainingPair]) -> list[TrainingPair]:
        return [p for p in pairs if normalize(p.query) not in forbidden]

    labelled_train, labelled_held = data.split(
        allowed(judged + imported), seed=tuning.seed, share=tuning.held_out
    )
    held_groups = {p.group for p in labelled_held}
    curated = [p for p in allowed(curated) if p.group not in held_groups]
    synthetic_train, synthetic_held = data.split(allowed(made), seed=tuning.seed, share=tuning.held_out)

    held = [
        q
        for q in judged_questions + imported_questions
        if data.held_out(q.group, seed=tuning.seed, share=tuning.held_out)
        and normalize(q.question) not in forbidden
    ]
    out.questions = {gate.HELD_OUT: held}
    for name, questions in out.evals.items():
        out.questions[name] = gate.eval_questions(questions)
    out.questions[gate.SYNTHETIC] = gate.synthetic_questions(synthetic_held)

    train_pairs = labelled_train + curated + synthetic_train
    if not train_pairs:
        raise ValueError("nothing to train on: no judgments, no --pairs, and no synthetic pairs kept")
    say("mining hard negatives")
    from sentence_transformers import SentenceTransformer

    miner = SentenceTransformer(str(weights), device="cpu")
    out.train = synthetic.with_hard_negatives(train_pairs, corpus, miner)
    out.pairs = data.counts(out.train)
    return out
