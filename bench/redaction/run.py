"""Redaction benchmark: recall per kind, false positives, and the time an export spends redacting.

`cases.jsonl` holds labelled strings of the three kinds an export carries from people: chat
questions, 👎 corrections and reviewers' edits. Each names the secrets and personal data it
contains (`secrets`: kind and value); strings with none are look-alikes that must come through
unchanged (versions, dates, order and ticket numbers, code, hostnames and URLs without
credentials, config values, error codes, hashes, UUIDs, product and place names). The redactor's
rules were tuned on the "tuning" set; the "holdout" set was written after they were settled.

- A labelled value is caught when no fragment of it survives: none of its words (for names and
  addresses: every word but "Street", "Apt", …; for numbers: every digit group), and for long
  tokens no 12-character window. Partial redaction ("[PERSON] Connor") is a miss.
- Its label is right when the output counts a replacement of that kind.
- A false positive is a look-alike string that was changed at all.

    .venv/bin/python bench/redaction/run.py                 # the current redactor
    .venv/bin/python bench/redaction/run.py --before        # also the regex redactor it replaced
    .venv/bin/python bench/redaction/run.py --timing 1000   # + redaction time of 1000 examples

`--before` and the timing's "before" column load feedback/datasets/redact.py as of BEFORE_COMMIT
(the hand-written rules) from git. tests/feedback/test_redact_benchmark.py asserts the targets.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

CASES = HERE / "cases.jsonl"
# The benchmark's private URL patterns (`feedback.private_url_patterns`).
PRIVATE = [r"wiki\.corp\.example", r"https?://intranet\.northwind\.local\S*", r"jira\.internal"]
# The commit that wrote the hand-written regex redactor (its last change before Presidio).
BEFORE_COMMIT = "bf6d5df5b14e0068f100be5da699eccf09668ff7"

GROUPS = {
    "secrets": (
        "private_key", "slack_token", "github_token", "openai_key", "aws_access_key", "aws_secret_key",
        "jwt", "discord_token", "private_url", "url_credentials", "password",
    ),
    "card / IBAN / SSN": ("credit_card", "iban", "ssn"),
    "contact": ("email", "phone", "ip_address"),
    "names and addresses": ("person", "street_address"),
}  # fmt: skip
TARGETS = {"secrets": 0.99, "card / IBAN / SSN": 0.99, "names and addresses": 0.9}
MAX_FALSE_POSITIVE_RATE = 0.02

# Words of a name or address that say nothing about the person (compared in lower case).
_GENERIC = {
    "street", "st", "avenue", "ave", "road", "rd", "lane", "ln", "drive", "dr", "way", "parkway",
    "terrace", "apt", "suite", "flat", "unit", "floor", "box", "p.o.", "mr", "mrs", "ms", "prof",
    "de", "van", "von", "der", "la", "le", "du", "da", "west", "east", "north", "south",
}  # fmt: skip
_PEM_WORDS = {"-----BEGIN", "-----END", "RSA", "EC", "OPENSSH", "PRIVATE", "KEY-----"}

Redact = Callable[[str], tuple[str, Counter[str]]]


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def fragments(kind: str, value: str) -> list[str]:
    """The pieces of `value` that must not survive redaction."""
    splitter = r"[\s,;()\[\]\"'@]+" if kind != "url_credentials" else r"[\s,;()\[\]\"'@:]+"
    parts = [p.strip(".-#") for p in re.split(splitter, value)]
    out = [p for p in parts if len(p) >= 2 and p.lower() not in _GENERIC and p not in _PEM_WORDS]
    for p in list(out):
        if len(p) > 16:
            out += [p[i : i + 12] for i in range(0, len(p) - 11, 6)]
    return out


def leaked(kind: str, value: str, output: str) -> list[str]:
    """The fragments of `value` still in `output` (short ones as whole words, long ones anywhere)."""

    def present(frag: str) -> bool:
        if len(frag) > 16:
            return frag in output
        return re.search(rf"(?<![A-Za-z0-9]){re.escape(frag)}(?![A-Za-z0-9])", output) is not None

    return [frag for frag in fragments(kind, value) if present(frag)]


@dataclass
class Report:
    total: Counter[str] = field(default_factory=Counter)
    caught: Counter[str] = field(default_factory=Counter)
    labelled: Counter[str] = field(default_factory=Counter)
    negatives: int = 0
    false_positives: list[dict[str, str]] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    mislabels: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def recall(self, kinds: tuple[str, ...] | str) -> float:
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        total = sum(self.total[k] for k in kinds)
        return sum(self.caught[k] for k in kinds) / total if total else float("nan")

    def label_accuracy(self, kinds: tuple[str, ...]) -> float:
        caught = sum(self.caught[k] for k in kinds)
        return sum(self.labelled[k] for k in kinds) / caught if caught else float("nan")

    @property
    def false_positive_rate(self) -> float:
        return len(self.false_positives) / self.negatives if self.negatives else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "recall": {k: self.recall(k) for k in sorted(self.total)},
            "groups": {g: self.recall(ks) for g, ks in GROUPS.items()},
            "label_accuracy": {g: self.label_accuracy(ks) for g, ks in GROUPS.items()},
            "negatives": self.negatives,
            "false_positive_rate": self.false_positive_rate,
            "false_positives": self.false_positives,
            "misses": self.misses,
            "mislabels": self.mislabels,
            "seconds": self.seconds,
        }


def score(redact: Redact, cases: list[dict[str, Any]]) -> Report:
    report = Report()
    start = time.perf_counter()
    for case in cases:
        output, counts = redact(case["text"])
        secrets = case["secrets"]
        if not secrets:
            report.negatives += 1
            if output != case["text"]:
                report.false_positives.append({"id": case["id"], "text": case["text"], "output": output})
            continue
        wanted = Counter(s["kind"] for s in secrets)
        for s in secrets:
            kind = s["kind"]
            report.total[kind] += 1
            leaks = leaked(kind, s["value"], output)
            if leaks:
                report.misses.append({"id": case["id"], "kind": kind, "leaked": leaks, "output": output})
                continue
            report.caught[kind] += 1
            if counts[kind] >= wanted[kind]:
                report.labelled[kind] += 1
            else:
                report.mislabels.append({"id": case["id"], "kind": kind, "counts": dict(counts)})
    report.seconds = time.perf_counter() - start
    return report


def one_line(name: str, report: Report) -> str:
    groups = ", ".join(f"{g} {report.recall(ks):.3f}" for g, ks in GROUPS.items())
    fp = f"{len(report.false_positives)}/{report.negatives} ({report.false_positive_rate:.1%})"
    return f"{name}: recall {groups}; false positives {fp}"


def table(report: Report) -> str:
    lines = ["| kind | labelled | caught | recall | label right |", "|---|---|---|---|---|"]
    for group, kinds in GROUPS.items():
        for k in kinds:
            if report.total[k]:
                lines.append(
                    f"| {k} | {report.total[k]} | {report.caught[k]} | {report.recall(k):.3f} | "
                    f"{report.labelled[k]}/{report.caught[k]} |"
                )
        total = sum(report.total[k] for k in kinds)
        caught = sum(report.caught[k] for k in kinds)
        target = f" (target ≥ {TARGETS[group]})" if group in TARGETS else ""
        lines.append(f"| **{group}**{target} | {total} | {caught} | **{report.recall(kinds):.3f}** | |")
    fp = len(report.false_positives)
    lines.append(
        f"\nFalse positives: {fp}/{report.negatives} look-alike strings changed "
        f"({report.false_positive_rate:.1%}; target ≤ {MAX_FALSE_POSITIVE_RATE:.0%})."
    )
    return "\n".join(lines)


# ---- the redactor before (the hand-written rules), from git ----------------------------------


def before_module() -> Any:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE_COMMIT}:feedback/datasets/redact.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="lore-redact-before-")) / "redact_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("redact_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["redact_before"] = module  # dataclasses look the module up while building
    spec.loader.exec_module(module)
    return module


# ---- timing: the redaction step of an export ---------------------------------------------------


def export_like_examples(n: int, cases: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """`n` (question, SFT record) pairs shaped as an export builds them: the system prompt, a user
    message with four handbook chunks and the question, and the answer."""
    from feedback.datasets.prompt import prompt_messages

    paragraphs = []
    for path in sorted((REPO / "examples" / "handbook").rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        paragraphs += [(path.stem, p.strip()) for p in text.split("\n\n") if len(p.strip()) > 80]
    out = []
    for i in range(n):
        case = cases[i % len(cases)]
        question = f"{case['text']} (#{i})"  # distinct strings: nothing is served from the cache
        chunks = [
            {"doc_id": name, "title": name, "text": text, "n": j + 1}
            for j, (name, text) in enumerate(paragraphs[(i * 4 + k) % len(paragraphs)] for k in range(4))
        ]
        answer = f"According to the handbook [1], {chunks[0]['text'][:200]}"
        out.append(
            (
                question,
                {"messages": [*prompt_messages(question, chunks), {"role": "assistant", "content": answer}]},
            )
        )
    return out


def time_export(redactor: Any, examples: list[tuple[str, dict[str, Any]]]) -> tuple[float, int]:
    """Seconds to redact every string of `examples` as export_dataset does, and how many."""
    strings = 0
    start = time.perf_counter()
    if hasattr(redactor, "prepare"):  # as export_dataset does: one batched pass first
        redactor.prepare([q for q, _r in examples] + [r for _q, r in examples])
    for question, record in examples:
        counts: Counter[str] = Counter()
        redactor.redact_value(question, Counter())
        redactor.redact_value(record, counts)
        strings += 1 + len(record["messages"])
    return time.perf_counter() - start, strings


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--before", action="store_true", help="also score the regex redactor it replaced")
    parser.add_argument("--timing", type=int, default=0, metavar="N", help="time redacting N examples")
    parser.add_argument("--json", type=Path, help="write the full report (misses, false positives) here")
    parser.add_argument("--show", action="store_true", help="print misses, mislabels and false positives")
    args = parser.parse_args()

    from feedback.datasets import redact as current

    cases = load_cases()
    positives = sum(1 for c in cases if c["secrets"])
    negatives = len(cases) - positives
    print(f"{len(cases)} strings: {positives} with secrets or personal data, {negatives} look-alikes")
    start = time.perf_counter()
    current.engine()
    load = time.perf_counter() - start
    print(f"analyzer loaded in {load:.1f} s (spaCy model {current.engine().model})\n")

    redactor = current.Redactor(PRIVATE)
    report = score(redactor.redact, cases)
    print(table(report))
    print(f"\n{len(cases)} strings in {report.seconds:.2f} s, one by one\n")
    for name in ("tuning", "holdout"):
        part = [c for c in cases if c["set"] == name]
        print(one_line(f"{name} set ({len(part)} strings)", score(redactor.redact, part)))
    result: dict[str, Any] = {"after": report.summary(), "load_seconds": load}
    if args.show:
        for item in report.misses + report.mislabels + report.false_positives:
            print(json.dumps(item, ensure_ascii=False))

    if args.before:
        old = before_module()
        before = score(old.Redactor(PRIVATE).redact, cases)
        print("\nBefore (hand-written rules):\n")
        print(table(before))
        result["before"] = before.summary()

    if args.timing:
        examples = export_like_examples(args.timing, cases)
        old = before_module()
        t_old, strings = time_export(old.Redactor(PRIVATE), examples)
        t_new, _ = time_export(current.Redactor(PRIVATE), examples)
        chars = sum(len(q) + sum(len(m["content"]) for m in r["messages"]) for q, r in examples)
        print(
            f"\nRedacting {args.timing} export examples ({strings} strings, {chars / 1e6:.1f} M characters):"
        )
        print("| redactor | seconds | ms per string |\n|---|---|---|")
        print(f"| before (regex) | {t_old:.2f} | {1000 * t_old / strings:.2f} |")
        print(f"| after (Presidio + spaCy) | {t_new:.2f} | {1000 * t_new / strings:.2f} |")
        print(f"(plus {load:.1f} s to load the analyzer, once per process)")
        result["timing"] = {"examples": args.timing, "strings": strings, "before": t_old, "after": t_new}

    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
