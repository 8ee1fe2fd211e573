"""Answer checks (knowledge/answer_checks.py): citations that name a given source, sentences their
cited source supports, claims the sources contain, and `answers.drop_unsupported` on the answer
path of a real index."""

from __future__ import annotations

import asyncio
import re

import pytest

from knowledge.answer import ABSTAIN_TEXT
from knowledge.answer_checks import (
    SUPPORT_THRESHOLD,
    AnswerChecker,
    answer_sentences,
    citation_validity,
    extract_claims,
    ideal_similarity,
    summarize_checks,
    token_f1,
    unsupported,
)
from tests.conftest import write
from tests.emulators.openai_chat import FixedLLM

LEAVE = (
    "# Leave\n\nEveryone gets 25 days of paid leave a year. At most five unused leave days carry "
    "over into the next year, and they must be used by March 31.\n"
)
PYTHON = (
    "# Python\n\nServices run on Python 3.11.4. Set `PYTHONHASHSEED=0` in the service's env, and "
    "read the guide at https://wiki.example/python/setup before you start. The max_pool_size "
    "default is 1,000 connections. Deploys stop at 17:00 on 24 December.\n"
)
SOURCES = {1: [LEAVE], 2: [PYTHON]}


@pytest.fixture(scope="module")
def checker(embedder):
    return AnswerChecker(embedder.query_model)


def test_threshold_is_the_settings_default():
    from config.settings import AnswerSettings

    assert AnswerSettings().support_threshold == SUPPORT_THRESHOLD == 0.66


def test_sentences_carry_the_markers_that_cover_them():
    text = (
        "From the docs:\n\n- Everyone gets 25 days. Unused days carry over [1].\n"
        "- Services run on Python 3.11.4. [2]\n\nAsk HR if unsure."
    )
    found = [(s.plain, s.cites) for s in answer_sentences(text)]
    assert found == [
        ("From the docs:", []),
        ("Everyone gets 25 days.", [1]),  # covered by the marker that ends its line
        ("Unused days carry over.", [1]),
        ("Services run on Python 3.11.4.", [2]),  # a marker after the full stop is its sentence's
        ("Ask HR if unsure.", []),
    ]
    # Not after "e.g.", nor before a lower-case word: one sentence each.
    assert [
        s.plain for s in answer_sentences("Use a manager, e.g. 1Password [1]. It costs $5. or less.")
    ] == [
        "Use a manager, e.g. 1Password.",
        "It costs $5. or less.",
    ]


def test_validity_counts_markers_outside_the_given_sources():
    assert citation_validity("A [1]. B [2, 3]. C [1][4].", SOURCES) == (3, 5)
    assert citation_validity("No markers at all.", SOURCES) == (0, 0)


def test_a_sentence_citing_the_wrong_source_is_not_supported(checker):
    right = checker.check("Everyone gets 25 days of paid leave every year [1].", SOURCES)
    wrong = checker.check("Everyone gets 25 days of paid leave every year [2].", SOURCES)
    assert right.supported_sentences == right.cited_sentences == 1
    assert wrong.cited_sentences == 1 and wrong.supported_sentences == 0
    assert right.checked[0].scores[1] >= SUPPORT_THRESHOLD > wrong.checked[0].scores[2]
    both = checker.check("Everyone gets 25 days of paid leave every year [1][2].", SOURCES)
    assert both.supported_sentences == 1 and both.citation_pairs == 2 and both.supporting_citations == 1


def test_a_changed_figure_fails_support_though_it_reads_the_same(checker):
    check = checker.check("Everyone gets 30 days of paid leave a year [1].", SOURCES)
    assert check.checked[0].scores[1] >= SUPPORT_THRESHOLD  # MiniLM barely sees the difference
    assert check.checked[0].missing == {1: ["30"]} and check.supported_sentences == 0
    assert check.unsupported_claims == ["30"]


def test_claims_are_extracted_by_kind():
    text = (
        "Install 3.12.1 from https://example.com/get?x=1 [1], set `FOO_BAR=2` and max_pool_size, "
        "read ReleaseNotes and SEV1 docs, run with --force, by March 3 2026 at 08:00, "
        "mail it@example.com: 1,000 users pay $80.50 (10%)."
    )
    kinds = [(c.kind, c.key) for c in extract_claims(text)]
    assert kinds == [
        ("version", "3.12.1"),
        ("url", "example.com/get?x=1"),
        ("code", "foo_bar=2"),
        ("identifier", "max_pool_size"),
        ("identifier", "releasenotes"),
        ("identifier", "sev1"),
        ("identifier", "--force"),
        ("date", "3-3-2026"),
        ("time", "8:00"),
        ("email", "it@example.com"),
        ("number", "1000"),
        ("number", "80.5"),
        ("number", "10"),
    ]
    # The citation marker and list numbering are not claims.
    assert extract_claims("1. Open the portal [2].") == []


def test_claims_match_the_sources_after_normalising():
    answer = (
        "Python 3.11.4 runs the services; the max_pool_size default is 1000 connections, set "
        "`PYTHONHASHSEED=0` (see https://wiki.example/python/setup/). Deploys stop at "
        "17:00 on December 24th; leave expires on 31 March."
    )
    assert [c.text for c in unsupported(extract_claims(answer), [LEAVE, PYTHON])] == []


def test_made_up_versions_urls_and_names_are_unsupported():
    answer = (
        "Upgrade to Python 3.12.1 [2], follow https://docs.example.org/upgrade [2], set "
        "max_pool_size to 2,000 and run `make upgrade` before 18:00, or ask in SEV2-oncall."
    )
    found = [c.text for c in unsupported(extract_claims(answer), [LEAVE, PYTHON])]
    assert found == [
        "3.12.1",
        "https://docs.example.org/upgrade",
        "2,000",
        "`make upgrade`",
        "18:00",
        "SEV2",  # ALLCAPS with digits; the lower-case tail is a word of its own
    ]


def test_summaries_pool_the_answers(checker):
    good = checker.check("Everyone gets 25 days of paid leave a year [1].", SOURCES)
    bad = checker.check("Run Python 3.12.1 in production [2]. See [7].", SOURCES)
    summary = summarize_checks([good, bad, None])
    assert summary["answered"] == 2
    assert summary["citation_validity"] == round(2 / 3, 4)
    # "See [7]." cites a source the model was not given: no source supports it.
    assert summary["citation_support"] == round(1 / 3, 4)
    assert summary["claims"] == 2 and summary["unsupported_claims"] == 0.5
    assert summary["answers_with_unsupported_claims"] == 0.5


def test_similarity_to_an_ideal_answer(embedder):
    assert token_f1("You get 25 days [1].", "You get 25 days") == 1.0
    assert token_f1("twenty-five", "25 days") == 0.0
    result = ideal_similarity(
        [
            ("Everyone gets 25 days of paid leave a year [1].", "You have 25 paid leave days per year."),
            ("Deploys need approval on Fridays.", "You have 25 paid leave days per year."),
        ],
        embedder.query_model,
    )
    close, far = result["per_pair"]
    assert result["pairs"] == 2 and close["cosine"] > far["cosine"] and close["token_f1"] > far["token_f1"]


def test_dropping_unsupported_sentences_keeps_the_rest_and_their_markers(checker):
    text = (
        "From the docs:\n\n"
        "- Everyone gets 25 days of paid leave a year [1].\n"
        "- Production deploys need a change ticket [1].\n"
        "- Services run on Python 3.11.4. Production deploys need a change ticket. [2]"
    )
    kept, left = checker.drop_unsupported(text, SOURCES)
    assert left == 2
    assert kept == (
        "From the docs:\n\n- Everyone gets 25 days of paid leave a year [1].\n"
        "- Services run on Python 3.11.4. [2]"  # the marker stays with the sentence it covered
    )
    _, none_left = checker.drop_unsupported("Kubernetes pods restart nightly [1].", SOURCES)
    assert none_left == 0


# -- the answer path -----------------------------------------------------------------


@pytest.fixture
def docs(tmp_path):
    root = tmp_path / "docs"
    write(root, "leave.md", LEAVE)
    write(root, "python.md", PYTHON)
    return root


async def _answer(make_knowledge, docs, reply: str, question: str, **answers: bool):
    async with FixedLLM(reply) as llm:
        kn = make_knowledge(
            [{"name": "hb", "type": "directory", "path": str(docs)}],
            llm=llm.settings(),
            **({"answers": answers} if answers else {}),
        )
        await asyncio.to_thread(kn.sync, "hb")
        return await asyncio.to_thread(kn.answer, question)


REPLY = (
    "Everyone gets 25 days of paid leave a year [1]. Unused days must be used by March 31 [1]. "
    "Production deploys are frozen all of Q4 [1]. Services run on Python 3.11.4 [2]."
)


async def test_drop_unsupported_removes_sentences_and_renumbers(make_knowledge, docs):
    answer = await _answer(
        make_knowledge, docs, REPLY, "how many leave days do we get?", drop_unsupported=True
    )
    assert not answer.abstained
    assert "25 days" in answer.text and "March 31" in answer.text and "Python 3.11.4" in answer.text
    assert "frozen" not in answer.text
    assert answer.draft == REPLY  # what the model wrote, with the prompt's numbers
    used = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert used == {c.n for c in answer.citations} == {1, 2}
    by_n = {c.n: c.path for c in answer.citations}
    assert by_n[1] == "leave.md" and by_n[2] == "python.md"


async def test_drop_unsupported_abstains_when_nothing_is_left(make_knowledge, docs):
    reply = "Production deploys are frozen all of Q4 [1]. Kubernetes restarts pods nightly [2]."
    answer = await _answer(
        make_knowledge, docs, reply, "how many leave days do we get?", drop_unsupported=True
    )
    assert answer.abstained and answer.text == f"{ABSTAIN_TEXT}." and not answer.citations


async def test_answers_go_as_written_by_default(make_knowledge, docs):
    answer = await _answer(make_knowledge, docs, REPLY, "how many leave days do we get?")
    assert "frozen" in answer.text
