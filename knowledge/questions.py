"""Is a chat message a question Lore could answer? For auto-answer channels, where nobody asked Lore.

Two steps, cheapest first:

1. **Cues** (regular expressions, no model): a question mark, an interrogative opener ("how",
   "where", "can I", "is there"), a help request ("need help with", "can someone", "anyone know",
   "looking for"), a problem report ("can't", "keeps failing", "not working"). A message with no
   cue, or of one word, is not a question: "deploying now", "thanks!" and "lgtm" cost nothing.
2. **A logistic regression** on the message's all-MiniLM-L6-v2 embedding (Lore's own embedder)
   and the cue flags, for what cues alone get wrong: "anyone around?", "can someone review my
   PR?", "how was your weekend?" have a question mark but ask nothing the docs could answer.

The weights ship in `knowledge/data/question_model.json` (a few KB): `fit` trains them, seeded
and deterministic, on the labelled chat lines in `tests/data/questions.tsv`, and
`bench/questions.py --write` regenerates the file; tests check that retraining gives the same
decisions. Its threshold is chosen on out-of-fold predictions for precision >= 0.97, since a
false "question" makes Lore talk to someone who did not ask it (BENCHMARKS.md has the figures).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = Path(__file__).parent / "data" / "question_model.json"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
TARGET_PRECISION = 0.97
SEED = 20261206

Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]

_OPENERS = (
    r"how|what|what's|whats|where|where's|when|why|which|who|whom|whose|is|are|am|was|were|can|"
    r"could|should|would|will|do|does|did|has|have|may|shall|any|anyone|anybody|does anyone|"
    r"is there|are there|quick question|q:"
)
_OPENER = re.compile(
    rf"^\W*(?:hi|hey|hello|all|team|folks|everyone|quick question|[,:!\s])*\b({_OPENERS})\b", re.I
)
_HELP = re.compile(
    r"\b(need(?:s|ing)? (?:some )?help|help(?: me)? with|help!|pls help|please help|can (?:some|any)one|"
    r"could (?:some|any)one|does (?:any|some)one know|(?:any|some)one know|any ideas?|"
    r"looking for|trying to|not sure (?:how|what|which|where|whether)|confused about|"
    r"how (?:do|can|should) (?:i|we)|is there a way|where (?:can|do) i)\b",
    re.I,
)
_PROBLEM = re.compile(
    r"\b(can't|cannot|can not|unable to|won't|doesn't work|does not work|not working|keeps? "
    r"(?:failing|crashing|timing out|disconnecting|asking)|fails?|failing|error|broken|stuck)\b",
    re.I,
)
_NOISE = re.compile(r"<[^>]*>|https?://\S+|`[^`]*`|:[a-z0-9_+-]+:", re.I)  # mentions, links, code, emoji


@dataclass(frozen=True)
class Cues:
    question_mark: bool
    opener: bool
    help: bool
    problem: bool
    words: int

    @property
    def any(self) -> bool:
        return self.question_mark or self.opener or self.help or self.problem

    def features(self) -> list[float]:
        return [float(self.question_mark), float(self.opener), float(self.help), float(self.problem)]


def cues(text: str) -> Cues:
    plain = _NOISE.sub(" ", text).strip()
    return Cues(
        question_mark="?" in plain,
        opener=bool(_OPENER.match(plain)),
        help=bool(_HELP.search(plain)),
        problem=bool(_PROBLEM.search(plain)),
        words=len(re.findall(r"[^\W_]+", plain)),
    )


@dataclass(frozen=True)
class Verdict:
    is_question: bool
    score: float  # the classifier's probability; 0 when the cues already said no
    reason: str


@dataclass(frozen=True)
class QuestionModel:
    """A logistic regression over [normalised embedding, cue flags]."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    embedding_model: str = EMBEDDING_MODEL

    def probability(self, vector: Sequence[float], found: Cues) -> float:
        features = [*_normalised(vector), *found.features()]
        if len(features) != len(self.weights):
            raise ValueError(f"the question model expects {len(self.weights) - 4} embedding dimensions")
        z = self.bias + math.fsum(w * x for w, x in zip(self.weights, features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {
            "embedding_model": self.embedding_model,
            "threshold": self.threshold,
            "bias": self.bias,
            "weights": list(self.weights),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuestionModel:
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            embedding_model=str(data.get("embedding_model", EMBEDDING_MODEL)),
        )

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> QuestionModel:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


class QuestionDetector:
    """`detect(text)`: blocking (it may embed the text); run it off the event loop."""

    def __init__(self, embed: Embed, model: QuestionModel | None = None) -> None:
        self._embed = embed
        self.model = model or QuestionModel.load()

    def detect(self, text: str) -> Verdict:
        found = cues(text)
        if found.words < 2:
            return Verdict(False, 0.0, "too short")
        if not found.any:
            return Verdict(False, 0.0, "no question cue")
        p = self.model.probability(self._embed([text])[0], found)
        if p >= self.model.threshold:
            return Verdict(True, p, "classifier")
        return Verdict(False, p, "classifier says no")


def _normalised(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return [float(x) / norm for x in vector]


# ---- training (bench/questions.py, tests) -----------------------------------------------------


def load_labelled(path: Path) -> tuple[list[str], list[int]]:
    """`label<TAB>text` lines (q = question, n = not); `#` starts a comment line."""
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, text = line.split("\t", 1)
        if label not in ("q", "n"):
            raise ValueError(f"{path}: unknown label {label!r} in {line!r}")
        texts.append(text.strip())
        labels.append(1 if label == "q" else 0)
    return texts, labels


def feature_rows(texts: Sequence[str], embed: Embed) -> tuple[list[list[float]], list[Cues]]:
    found = [cues(t) for t in texts]
    vectors = embed(list(texts))
    return [[*_normalised(v), *c.features()] for v, c in zip(vectors, found, strict=True)], found


def gated(found: Cues) -> bool:
    return found.words >= 2 and found.any


def _fit(rows: Any, labels: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=4.0, class_weight="balanced", max_iter=5000, solver="lbfgs")
    clf.fit(rows, labels)
    return clf


def out_of_fold(rows: Any, labels: Any, *, folds: int = 5, seed: int = SEED) -> Any:
    """Each row's probability from a model that did not see it (stratified, seeded folds)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    rows, labels = np.asarray(rows), np.asarray(labels)
    probs = np.zeros(len(labels))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(rows, labels):
        probs[test] = _fit(rows[train], labels[train]).predict_proba(rows[test])[:, 1]
    return probs


def pick_threshold(probs: Any, labels: Any, gated: Any, target: float = TARGET_PRECISION) -> float:
    """The lowest threshold whose precision (cue-less rows count as "no") reaches `target`."""
    import numpy as np

    probs, labels, gated = np.asarray(probs), np.asarray(labels), np.asarray(gated)
    for t in np.round(np.arange(0.30, 0.99, 0.01), 2):
        predicted = gated & (probs >= t)
        if predicted.sum() and labels[predicted].mean() >= target:
            return float(t)
    return 0.99


def fit(texts: Sequence[str], labels: Sequence[int], embed: Embed, *, seed: int = SEED) -> QuestionModel:
    """Train on the labelled rows that have a cue (the only ones the model is ever asked about);
    the threshold comes from their out-of-fold predictions, cue-less rows counting as "no"."""
    import numpy as np

    rows, found = feature_rows(texts, embed)
    x, y = np.asarray(rows), np.asarray(labels)
    mask = np.asarray([gated(c) for c in found])
    probs = np.zeros(len(y))
    probs[mask] = out_of_fold(x[mask], y[mask], seed=seed)
    threshold = pick_threshold(probs, y, mask)
    clf = _fit(x[mask], y[mask])
    return QuestionModel(
        weights=tuple(round(float(w), 6) for w in clf.coef_[0]),
        bias=round(float(clf.intercept_[0]), 6),
        threshold=threshold,
    )
