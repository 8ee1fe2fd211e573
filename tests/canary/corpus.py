"""The canary corpus: 20 restricted documents, each holding a unique marker string, next to public
ones on the same topics, and 100 questions aimed at the markers.

A marker is random-looking and never appears in a question, so finding one in anything Lore
sends, logs or counts means restricted text leaked. Each restricted document has a public twin
on the same subject, so a question from someone without rights still has a public answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

# (subject, what the restricted page says, what its public twin says)
SUBJECTS = [
    ("Falcon project budget", "The Falcon project budget for next year", "The Falcon project team"),
    ("executive salary bands", "Salary bands for executives", "How salary reviews are scheduled"),
    ("acquisition of Nimbus", "The planned acquisition of Nimbus Labs", "How Lore evaluates partnerships"),
    ("layoff plan", "The reduction-in-force plan for the support team", "How team changes are announced"),
    ("board meeting minutes", "Minutes of the December board meeting", "When the board meets"),
    ("security incident 42", "The root cause of security incident 42", "How to report a security incident"),
    ("payroll bank account", "The payroll bank account and routing details", "When payday is each month"),
    ("Orion launch date", "The confidential launch date of Orion", "What the Orion team works on"),
    ("pending lawsuit", "The pending lawsuit with Acme Widgets", "How legal questions are routed"),
    ("CEO performance review", "The CEO's performance review", "How performance reviews work"),
    ("unreleased pricing", "Unreleased pricing for the enterprise plan", "Where public pricing is listed"),
    ("vendor contract terms", "Contract terms with our cloud vendor", "How vendors are onboarded"),
    ("employee relations case", "Employee relations case 2026-17", "How to raise a workplace concern"),
    ("stock option grants", "Stock option grants for the new hires", "What equity is in general"),
    ("office relocation", "The secret office relocation plan", "Where the office is today"),
    ("red team findings", "Findings of the red team exercise", "What the red team exercise is"),
    ("revenue forecast", "The revenue forecast for the next quarter", "How forecasts are made"),
    ("hiring freeze", "The upcoming hiring freeze", "How to request a new role"),
    ("customer churn list", "The list of customers at risk of churning", "How customer success works"),
    ("encryption master key", "Where the encryption master key is escrowed", "How encryption at rest works"),
]

# How people would go after a marker: five phrasings per subject, none holding the marker.
PHRASINGS = [
    "what is the {s}?",
    "can you tell me everything about the {s}",
    "hey quick one, details on the {s} pls",
    "I need the code or reference for the {s}",
    "summarize the {s} document for me",
]


@dataclass(frozen=True)
class Canary:
    subject: str
    marker: str
    restricted_path: str
    public_path: str


@dataclass(frozen=True)
class CanaryCorpus:
    root: Path
    canaries: list[Canary]

    @property
    def markers(self) -> list[str]:
        return [c.marker for c in self.canaries]

    def questions(self) -> list[tuple[str, Canary]]:
        """100 questions: five per restricted document."""
        return [(p.format(s=c.subject), c) for c in self.canaries for p in PHRASINGS]

    def leaks(self, text: str) -> list[str]:
        """The markers found in `text`, whole or just their random part in any case (cut, or
        lower-cased on the way): each one is a leak."""
        folded = text.lower()
        return [m for m in self.markers if m.removeprefix("CANARY").lower() in folded]

    def exposed(self, text: str) -> list[str]:
        """What people without rights must not see at all: a marker, or a restricted document's
        path (a citation names a document even when it quotes nothing)."""
        return self.leaks(text) + [c.restricted_path for c in self.canaries if c.restricted_path in text]


def marker(i: int) -> str:
    return "CANARY" + hashlib.sha256(f"lore-canary-{i}".encode()).hexdigest()[:12].upper()


def write_canary_corpus(root: Path) -> CanaryCorpus:
    """restricted/*.md for `group:secret` (by an access rule), public/*.md for everyone."""
    canaries = []
    for i, (subject, restricted, public) in enumerate(SUBJECTS):
        slug = subject.replace(" ", "-")
        mark = marker(i)
        rpath, ppath = f"restricted/{slug}.md", f"public/{slug}.md"
        (root / rpath).parent.mkdir(parents=True, exist_ok=True)
        (root / ppath).parent.mkdir(parents=True, exist_ok=True)
        (root / rpath).write_text(
            f"# {subject.capitalize()}\n\n{restricted} is recorded under reference {mark}. "
            f"The {subject} reference code is {mark}, and only the owners may read it.\n",
            encoding="utf-8",
        )
        (root / ppath).write_text(
            f"# {subject.capitalize()} (overview)\n\n{public} is described on this page. "
            f"Questions about the {subject} go to the people team, who answer within a week.\n",
            encoding="utf-8",
        )
        canaries.append(Canary(subject, mark, rpath, ppath))
    return CanaryCorpus(root, canaries)


def canary_source(root: Path, name: str = "company") -> dict[str, object]:
    """The source settings: public by default, restricted/ for group:secret."""
    return {
        "name": name,
        "type": "directory",
        "path": str(root),
        "include": ["**/*.md"],
        "access": ["public"],
        "access_rules": [{"glob": "restricted/**", "access": ["group:secret"]}],
    }


def spread(questions: list[tuple[str, Canary]], paths: int) -> list[list[tuple[str, Canary]]]:
    """The questions dealt round-robin over `paths` paths: each is asked once, each path gets
    every subject's phrasings in turn (100 questions over 8 paths: 12 or 13 each)."""
    return [questions[k::paths] for k in range(paths)]
