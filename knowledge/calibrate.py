"""Per-corpus calibration of abstention, at the end of a full sync.

Thresholds fitted on a few eval sets don't carry over: how close MiniLM puts a question to
its answer depends on the corpus's style. So Lore asks the corpus itself:

- *answerable* questions: from an evenly spread sample of chunks, one sentence each, reduced
  to its rarest words the way people ask ("how do i maximal queue lifetime deferred mail?");
- *unanswerable* ones: the same questions with their rarest word swapped for a name the corpus
  never mentions ("... Terraform deferred mail?").

Each is asked through the real retrieval (`CitingQueryEngine.lookup`). `floor` is a low quantile
of the answerable confidences, `named` the cut that best separates the two groups (Youden's J),
each bounded near the defaults so a small or odd corpus can't push them anywhere absurd. The
result goes into the index's state (`calibration`, per source), where the engine reads it and
`lore sources` shows it; a full sync replaces it, and `retrieval.abstain_below` /
`retrieval.abstain_if_missing_below` override it. It asks at most `MAX_QUESTIONS` questions
of each kind, one pair per `CHUNKS_PER_PAIR` chunks: about a tenth of the index time
(BENCHMARKS.md, "Abstention"). A corpus too small for `MIN_PAIRS` keeps the defaults.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from knowledge.abstain import DEFAULT_FLOOR, DEFAULT_NAMED, TermStats, candidates, one_token
from knowledge.generate import sentences

if TYPE_CHECKING:
    from knowledge.engine import CitingQueryEngine

log = logging.getLogger(__name__)

# Cost: each question costs about what indexing 15-20 chunks does (its top chunks' sentences
# are embedded), so one pair per CHUNKS_PER_PAIR chunks keeps calibration near a tenth of the
# index time. Below MIN_PAIRS pairs a fit is noise and the defaults are the better guess.
CHUNKS_PER_PAIR = 300
MIN_PAIRS = 6
MAX_QUESTIONS = 24  # of each kind
KEEP_WORDS = 6  # words kept from a sentence for a synthetic question
# How far the fit may move the thresholds from the defaults.
FLOOR_RANGE = (0.35, 0.55)
NAMED_RANGE = (0.50, 0.70)
FLOOR_QUANTILE = 0.05  # of answerable confidences: the false abstention the floor may cause on them

# Names a corpus may well not mention; the first few it doesn't are swapped in.
FOREIGN_NAMES = (
    "Terraform",
    "Salesforce",
    "Zendesk",
    "Kubernetes",
    "Datadog",
    "Snowflake",
    "Okta",
    "Jenkins",
    "Airflow",
    "Heroku",
    "Tableau",
    "Workday",
)
_TEMPLATES = ("how do i {}?", "what does {} do?", "{}?", "why is {} not working?", "where is {} set?")


@dataclass
class Calibration:
    floor: float
    named: float
    answerable: int  # synthetic questions of each kind that were asked
    unanswerable: int
    detected: float  # share of unanswerable ones whose swapped-in name the term signal saw as missing
    seconds: float
    answerable_median: float = 0.0
    unanswerable_median: float = 0.0

    def as_state(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Synthetic:
    answerable: str
    unanswerable: str
    swapped: str  # the word replaced
    name: str  # the name swapped in


def synthesize(texts: list[str], stats: TermStats, source: str | None, n: int) -> list[Synthetic]:
    """Up to `n` pairs of questions from `texts` (chunks in a fixed order), deterministically."""
    where = {"source": source} if source else {}
    foreign = [n for n in FOREIGN_NAMES if not any(stats.dfs(stats.term_ids(n), {}).values())]
    if not foreign:
        return []
    picks: list[tuple[str, list[str]]] = []
    step = max(1, len(texts) // (2 * n))
    for text in texts[::step]:
        # A prose sentence (words, not code or option lists), the way questions are asked.
        best, words = "", list[str]()
        for sentence in sentences(text):
            found = candidates(sentence)
            plain = [t.lower() for w, t, ident in found if t.isalpha() and not ident and w == t]
            if len(found) >= 5 and len(plain) >= 0.8 * len(found) and len(plain) > len(words):
                best, words = sentence, list(dict.fromkeys(plain))
        words = [w for w in words if len(stats.term_ids(w)) == 1]
        if len(words) >= 4:
            picks.append((best, words))
        if len(picks) >= 2 * n:
            break
    ids = sorted({stats.term_ids(w)[0] for _s, words in picks for w in words})
    dfs = stats.dfs(ids, where)
    pairs = []
    for i, (_sentence, words) in enumerate(picks[:n]):
        # The rarest words, in the sentence's order: what a person would name.
        rare = sorted(words, key=lambda w: (dfs[stats.term_ids(w)[0]], words.index(w)))[:KEEP_WORDS]
        kept = [w for w in words if w in rare]
        swapped = rare[0]
        name = foreign[i % len(foreign)]
        template = _TEMPLATES[i % len(_TEMPLATES)]
        pairs.append(
            Synthetic(
                answerable=template.format(" ".join(kept)),
                unanswerable=template.format(" ".join(name if w == swapped else w for w in kept)),
                swapped=swapped,
                name=name,
            )
        )
    return pairs


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def fit(answerable: list[float], unanswerable: list[float]) -> tuple[float, float]:
    """(floor, named) from the confidences of synthetic answerable and unanswerable questions."""
    floor = _clip(quantile(answerable, FLOOR_QUANTILE), FLOOR_RANGE)
    # Youden's J: the cut with the most unanswerable below and the fewest answerable below.
    cuts = sorted(set(answerable) | set(unanswerable))
    best, named = -1.0, DEFAULT_NAMED
    for cut in cuts:
        j = sum(u < cut for u in unanswerable) / len(unanswerable) - sum(a < cut for a in answerable) / len(
            answerable
        )
        if j > best:
            best, named = j, cut
    return floor, max(_clip(named, NAMED_RANGE), floor)


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return DEFAULT_FLOOR if math.isnan(value) else min(max(value, bounds[0]), bounds[1])


def calibrate(engine: CitingQueryEngine, source: str) -> Calibration | None:
    """Calibrate abstention for `source` (None when it is too small to calibrate)."""
    started = time.perf_counter()
    store = engine.store
    wanted = min(MAX_QUESTIONS, store.count_chunks(source) // CHUNKS_PER_PAIR)
    if wanted < MIN_PAIRS:
        return None
    texts = [
        str(payload.get("text", ""))
        for _id, payload in sorted(
            ((pid, p) for pid, p, _ in store.backend.scroll({"source": source}, ["text"])), key=lambda x: x[0]
        )
    ]
    stats = TermStats(store.backend, store.sparse, one_token(engine.embedder.tokenizer))
    pairs = synthesize(texts, stats, source, wanted)
    if len(pairs) < MIN_PAIRS:
        return None
    engine.refresh()
    answerable, unanswerable, detected = [], [], 0
    for pair in pairs:
        answerable.append(engine.lookup(pair.answerable).confidence)
        found = engine.lookup(pair.unanswerable)
        unanswerable.append(found.confidence)
        detected += bool(found.signal and pair.name in found.signal.missing)
    floor, named = fit(answerable, unanswerable)
    result = Calibration(
        floor=floor,
        named=named,
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        detected=detected / len(pairs),
        seconds=time.perf_counter() - started,
        answerable_median=quantile(answerable, 0.5),
        unanswerable_median=quantile(unanswerable, 0.5),
    )
    log.info("calibrated abstention for %s: %s", source, result.as_state())
    return result
