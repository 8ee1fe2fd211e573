"""The answer model's gate: a candidate serves only if it answers better and stays grounded.

Both models answer the same questions at temperature 0 and are measured with the answer checks of
`lore eval --answers` (`knowledge/answer_checks.py`), on two kinds of sets:

- `held-out`: the curated items the run never trained on (the export's validation split, grouped
  by near-duplicate question). Each is answered from exactly the prompt it was reviewed with (its
  retrieved sources), and compared with the reviewer's answer (ideal-answer similarity); an
  approved abstention counts as a not-in-corpus question.
- every `[[evals]]` set, through the whole answer path (retrieval, abstention, generation).

`decide` promotes only if, on every set, citation validity stays at least
`tuning.min_citation_validity`, citation support and the unsupported-claims rate get no worse (by
more than `tuning.max_loss`), false abstention rises by at most `tuning.max_false_abstain_rise`; and
fact hits or ideal-answer similarity (token F1 or cosine), pooled over the sets, gain at least
`tuning.generator_margin` with a bootstrap 95% interval above 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.settings import TuningSettings
from knowledge.answer import ABSTAIN_TEXT, Answer
from knowledge.answer_checks import AnswerChecker, ideal_similarity, summarize_checks
from knowledge.evaluate import Question, run_eval
from knowledge.prompt import sources_in

HELD_OUT = "held-out"
K = 5

Chat = Callable[[list[dict[str, str]]], str]  # a prompt's messages -> the model's answer
Ask = Callable[[str, int], Answer]  # a question, top k -> the whole path's answer


@dataclass(frozen=True)
class HeldOutExample:
    """A curated item the run never trained on: its prompt, and the reviewer's answer."""

    prompt: list[dict[str, str]]
    ideal: str

    @property
    def abstains(self) -> bool:
        return ABSTAIN_TEXT.lower() in self.ideal.lower()


@dataclass
class SetResult:
    """One model on one set: the `lore eval --answers` figures, and the per-question values the
    bootstrap pairs (in question order, so before and after line up)."""

    figures: dict[str, Any]
    facts: list[float] = field(default_factory=list)  # share of facts hit, per answerable question
    token_f1: list[float] = field(default_factory=list)  # per question with an ideal answer
    cosine: list[float] = field(default_factory=list)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def measure_held_out(chat: Chat, examples: Sequence[HeldOutExample], checker: AnswerChecker) -> SetResult:
    """Answer each held-out prompt with `chat`; check it against the sources that prompt gave."""
    checks, answered_rows, outside_rows, pairs = [], [], [], []
    for ex in examples:
        text = chat(ex.prompt)
        abstained = ABSTAIN_TEXT.lower() in text.lower()
        checks.append(None if abstained else checker.check(text, sources_in(ex.prompt)))
        if ex.abstains:
            outside_rows.append(1.0 if abstained else 0.0)
        else:
            answered_rows.append(1.0 if abstained else 0.0)
            pairs.append((text, ex.ideal))
    similarity = ideal_similarity(pairs, checker.model)
    figures = {
        **summarize_checks(checks),
        "fact_hit_rate": None,  # curated items have an ideal answer, not a list of facts
        "abstain_not_in_corpus": _mean(outside_rows),
        "false_abstain": _mean(answered_rows),
        "ideal": {key: similarity[key] for key in ("pairs", "token_f1", "cosine")},
    }
    per = similarity["per_pair"]
    return SetResult(figures, [], [p["token_f1"] for p in per], [p["cosine"] for p in per])


def measure_eval(ask: Ask, questions: Sequence[Question], checker: AnswerChecker) -> SetResult:
    """An `[[evals]]` set through the whole answer path, as `lore eval --answers` measures it."""
    report = run_eval(list(questions), ask, k=K, checker=checker)
    rows = report["per_question"]
    facts = [r["facts_hit"] / r["facts"] for r in rows if r["answerable"] and r["facts"]]
    ideals = {q.id: q.ideal for q in questions if q.ideal}
    pairs = [(r["answer_text"], ideals[r["id"]]) for r in rows if r["id"] in ideals]
    per = ideal_similarity(pairs, checker.model)["per_pair"]
    return SetResult(
        report["answers"]["overall"], facts, [p["token_f1"] for p in per], [p["cosine"] for p in per]
    )


# -- the decision -----------------------------------------------------------------------------


@dataclass
class Verdict:
    passed: bool
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def _validity(f: dict[str, Any]) -> float | None:
    """Citation validity; an answer set that cites nothing at all has none (0)."""
    if not f.get("answered"):
        return None
    return f["citation_validity"] if f.get("citations") else 0.0


def _support(f: dict[str, Any]) -> float | None:
    if not f.get("answered"):
        return None
    return f["citation_support"] if f.get("cited_sentences") else 0.0


def _claims(f: dict[str, Any]) -> float:
    return float(f.get("unsupported_claims") or 0.0)


def decide(before: dict[str, SetResult], after: dict[str, SetResult], tuning: TuningSettings) -> Verdict:
    """The gate (see the module's docstring); every check's figures are in `reasons`."""
    from knowledge.tuning.gate import paired_difference

    reasons: list[str] = []
    passed = True

    def check(ok: bool, text: str) -> None:
        nonlocal passed
        passed = passed and ok
        reasons.append(text if ok else "refused: " + text)

    for name, b in before.items():
        a = after.get(name)
        if a is None:
            continue
        fb, fa = b.figures, a.figures
        validity = _validity(fa)
        if validity is not None:
            ok = validity >= tuning.min_citation_validity
            check(
                ok, f"{name} citation validity {validity:.3f} (at least {tuning.min_citation_validity:.2f})"
            )
        sb, sa = _support(fb), _support(fa)
        if sb is not None and sa is not None:
            check(sa >= sb - tuning.max_loss, f"{name} citation support {sb:.3f} -> {sa:.3f}")
        cb, ca = _claims(fb), _claims(fa)
        check(ca <= cb + tuning.max_loss, f"{name} unsupported claims {cb:.3f} -> {ca:.3f}")
        ab, aa = fb.get("false_abstain"), fa.get("false_abstain")
        if ab is not None and aa is not None:
            ok = aa - ab <= tuning.max_false_abstain_rise
            check(ok, f"{name} false abstention {ab:.3f} -> {aa:.3f}")

    gained = []
    for metric in ("facts", "token_f1", "cosine"):
        vb = [v for name, r in before.items() if name in after for v in getattr(r, metric)]
        va = [v for name, r in after.items() if name in before for v in getattr(r, metric)]
        if not vb or len(vb) != len(va):
            continue
        diff = paired_difference(vb, va, seed=tuning.seed)
        label = {"facts": "fact hits", "token_f1": "ideal token F1", "cosine": "ideal cosine"}[metric]
        reasons.append(
            f"{label}: {sum(vb) / len(vb):.3f} -> {sum(va) / len(va):.3f} "
            f"({diff.mean:+.3f}, 95% CI {diff.low:+.3f} to {diff.high:+.3f}, n={len(vb)})"
        )
        if diff.mean >= tuning.generator_margin and diff.low > 0:
            gained.append(label)
    if not gained:
        check(
            False,
            f"neither fact hits nor ideal-answer similarity gained {tuning.generator_margin:+.3f} "
            "with its interval above 0",
        )
    if passed:
        reasons.append(f"passed ({', '.join(gained)})")
    return Verdict(passed, reasons)
