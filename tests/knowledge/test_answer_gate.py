"""The answer model's gate (`knowledge/tuning/answer_gate.py`): the decision on figures, and the
held-out measurement on real prompts with the real MiniLM support check."""

from __future__ import annotations

from typing import Any

from config.settings import TuningSettings
from knowledge.answer import RetrievedChunk
from knowledge.answer_checks import AnswerChecker
from knowledge.prompt import chat_messages, number_by_document, sources_in
from knowledge.tuning.answer_gate import HELD_OUT, HeldOutExample, SetResult, decide, measure_held_out


def figures(**over: Any) -> dict[str, Any]:
    base = {
        "answered": 10,
        "citations": 10,
        "citation_validity": 1.0,
        "cited_sentences": 10,
        "citation_support": 0.8,
        "unsupported_claims": 0.1,
        "false_abstain": 0.0,
        "fact_hit_rate": 0.5,
        "ideal": {"pairs": 10, "token_f1": 0.4, "cosine": 0.7},
    }
    return base | over


def result(f1: float, n: int = 12, **over: Any) -> SetResult:
    # a little spread, so the bootstrap interval is an interval
    values = [f1 + (0.02 if i % 2 else -0.02) for i in range(n)]
    return SetResult(figures(**over), [], values, [0.7] * n)


TUNING = TuningSettings()


def test_a_candidate_that_answers_closer_to_the_reviewers_and_stays_grounded_passes() -> None:
    verdict = decide({HELD_OUT: result(0.40)}, {HELD_OUT: result(0.55)}, TUNING)
    assert verdict.passed, verdict.reasons
    assert verdict.reasons[-1].startswith("passed (ideal token F1")


def test_a_gain_below_the_margin_is_refused() -> None:
    verdict = decide({HELD_OUT: result(0.40)}, {HELD_OUT: result(0.42)}, TUNING)
    assert not verdict.passed
    assert any("neither fact hits nor ideal-answer similarity gained +0.030" in r for r in verdict.reasons)


def test_dropping_citations_is_refused_however_close_the_words_are() -> None:
    worse = result(0.70, citations=0, citation_validity=None, cited_sentences=0, citation_support=None)
    verdict = decide({HELD_OUT: result(0.40)}, {HELD_OUT: worse}, TUNING)
    assert not verdict.passed
    refused = [r for r in verdict.reasons if r.startswith("refused:")]
    assert any("citation validity 0.000" in r for r in refused)
    assert any("citation support 0.800 -> 0.000" in r for r in refused)


def test_each_grounding_check_refuses_on_its_own() -> None:
    cases = {
        "citation validity 0.980": result(0.6, citation_validity=0.98),
        "citation support 0.800 -> 0.780": result(0.6, citation_support=0.78),
        "unsupported claims 0.100 -> 0.120": result(0.6, unsupported_claims=0.12),
        "false abstention 0.000 -> 0.030": result(0.6, false_abstain=0.03),
    }
    for text, after in cases.items():
        verdict = decide({"handbook": result(0.4)}, {"handbook": after}, TUNING)
        refused = [r for r in verdict.reasons if r.startswith("refused:")]
        assert len(refused) == 1 and f"handbook {text}" in refused[0], verdict.reasons
    # within the tolerances: a 0.02 rise in false abstention, 0.01 less support
    ok = result(0.6, false_abstain=0.02, citation_support=0.79)
    assert decide({"handbook": result(0.4)}, {"handbook": ok}, TUNING).passed


def test_fact_hits_on_an_eval_set_count_as_the_gain() -> None:
    before = SetResult(figures(), [0.0, 0.5, 0.0, 0.5] * 3, [], [])
    after = SetResult(figures(), [1.0, 0.5, 1.0, 1.0] * 3, [], [])
    verdict = decide({"handbook": before}, {"handbook": after}, TUNING)
    assert verdict.passed and "fact hits" in verdict.reasons[-1]


LEAVE = "Everyone gets 25 days of paid leave a year. Unused days carry over until March 31."


def test_held_out_answers_are_checked_against_the_sources_of_their_own_prompt(embedder) -> None:
    chunks = [
        RetrievedChunk(chunk_id="c1", doc_id="hb:leave.md", source="hb", path="leave.md", title="Leave",
                       url="", text=LEAVE, score=0.9, doc_hash="h"),
        RetrievedChunk(chunk_id="c2", doc_id="hb:it.md", source="hb", path="it.md", title="Laptops",
                       url="", text="Laptops arrive in 5 working days.", score=0.5, doc_hash="h"),
    ]  # fmt: skip
    number_by_document(chunks)
    prompt = chat_messages("How much leave do I get?", chunks, [])
    assert sources_in(prompt) == {1: [LEAVE], 2: ["Laptops arrive in 5 working days."]}

    ideal = "Everyone gets 25 days of paid leave a year [1]."
    examples = [HeldOutExample(prompt, ideal)] * 3
    checker = AnswerChecker(embedder.query_model)
    good = measure_held_out(lambda _m: ideal, examples, checker)
    bad = measure_held_out(lambda _m: "You get 40 days of leave [3].", examples, checker)
    assert good.figures["citation_validity"] == 1.0 and good.figures["citation_support"] == 1.0
    assert good.figures["unsupported_claims"] == 0.0 and good.token_f1 == [1.0] * 3
    assert bad.figures["citation_validity"] == 0.0 and bad.figures["unsupported_claims"] == 1.0
    assert set(good.figures) == set(bad.figures) >= {"citation_validity", "false_abstain", "ideal"}
    verdict = decide({HELD_OUT: bad}, {HELD_OUT: good}, TUNING)
    assert verdict.passed, verdict.reasons
    assert not decide({HELD_OUT: good}, {HELD_OUT: bad}, TUNING).passed
