"""The redaction benchmark (bench/redaction: 498 labelled chat questions, 👎 corrections and
reviewer edits, both its sets) meets its targets, a little below the figures in BENCHMARKS.md:
a regression in any recognizer, or a new false positive or two, fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from feedback.datasets.redact import Redactor

BENCH = Path(__file__).resolve().parents[2] / "bench" / "redaction" / "run.py"


def _bench():
    spec = importlib.util.spec_from_file_location("redaction_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result():
    bench = _bench()
    cases = bench.load_cases()
    return bench, cases, bench.score(Redactor(bench.PRIVATE).redact, cases)


def test_the_benchmark_is_big_and_mixed_enough(result):
    bench, cases, report = result
    assert len(cases) >= 300
    assert report.negatives >= 150  # look-alikes that must survive
    assert sum(c["set"] == "holdout" for c in cases) >= 80
    assert {c["source"] for c in cases} == {"question", "correction", "edit"}
    for kinds in bench.GROUPS.values():
        for kind in kinds:
            assert report.total[kind] >= 4, kind


def test_recall_on_secrets_and_on_card_iban_ssn(result):
    bench, _cases, report = result
    # Achieved: 1.0 on every one of these kinds.
    for group in ("secrets", "card / IBAN / SSN"):
        assert report.recall(bench.GROUPS[group]) >= 0.99, (group, report.misses)
        for kind in bench.GROUPS[group]:
            assert report.recall(kind) >= 0.99, (kind, report.misses)


def test_recall_on_names_and_addresses(result):
    bench, _cases, report = result
    # Achieved: 0.94 (person 0.909, street_address 1.0); the target is 0.9.
    assert report.recall(bench.GROUPS["names and addresses"]) >= 0.92, report.misses
    assert report.recall("person") >= 0.88 and report.recall("street_address") >= 0.95


def test_contact_details_are_caught(result):
    bench, _cases, report = result
    assert report.recall(bench.GROUPS["contact"]) >= 0.98, report.misses  # achieved: 1.0


def test_what_is_caught_is_labelled_with_its_kind(result):
    _bench, _cases, report = result
    assert report.mislabels == []  # an SSN is [SSN] and an Amex number [CREDIT_CARD], never [PHONE]


def test_false_positives(result):
    bench, _cases, report = result
    # Achieved: 2 of 195 (1.0%): "Martin Luther King Jr. Day" and "Customer Success" as names.
    assert report.false_positive_rate <= bench.MAX_FALSE_POSITIVE_RATE, report.false_positives
