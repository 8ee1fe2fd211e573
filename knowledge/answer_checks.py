"""Answer checks that need no judge model: are an answer's citations real, do the cited
sources say what the sentence says, and do its numbers, names and links come from the sources?

- **Citation validity**: every `[n]` names a source the model was given (1..the number of
  documents in the prompt, `knowledge.prompt.number_by_document`).
- **Citation support**: a sentence that cites `[n]` is supported by source n when its cosine
  (the process's MiniLM) with one of n's sentences, or two consecutive ones, reaches
  `SUPPORT_THRESHOLD`, and its numbers, names and links (below) are in source n: a changed
  figure reads almost the same to MiniLM. The threshold was chosen on hand-labelled handbook
  answers (bench/citations/, BENCHMARKS.md "Answer checks"). A sentence citing several sources
  is supported when one of them supports it.
- **Uncited claims**: the numbers, dates, times, versions, identifiers, inline code, e-mail
  addresses and URLs of the answer that no given source contains (after normalising "1,000" to
  "1000", "08:00" to "8:00", "March 3" to a month and day, ...).
- **Ideal-answer similarity**: token F1 (SQuAD's) and cosine between an answer and the
  reviewer's ideal one.

The same support check can filter an answer before it is sent (`answers.drop_unsupported`,
`CitingQueryEngine.answer`).
"""

from __future__ import annotations

import itertools
import re
import string
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding

from config.settings import AnswerSettings
from knowledge.answer import Answer, RetrievedChunk
from knowledge.extractive import units

# Chosen on bench/citations/labels.jsonl (bench/citations/support.py; BENCHMARKS.md).
SUPPORT_THRESHOLD: float = AnswerSettings.model_fields["support_threshold"].default

MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# A sentence ends at . ! or ? (with the markers that follow it) before the end of the line or
# what starts a sentence; not at "e.g." and the like.
_END = re.compile(
    r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bcf)(?<!\bNo)"
    r"[.!?]+[\"')\]]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s+[A-Z0-9\"'(`*_\[]|\s*$)"
)
_MARKERS = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")  # with the space before them
_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,2}[.)]|#{1,6})\s+")
_MARKUP = re.compile(r"\*\*|__|[*`\\]")
_VECTOR_CACHE = 4096  # source sentences whose vectors are kept between answers


# -- sentences and sources ---------------------------------------------------------


@dataclass
class Sentence:
    text: str  # as written, markers included
    plain: str  # without markers, bullets and markup: what is compared with the sources
    cites: list[int]
    line: int  # the answer line it is on


def answer_sentences(text: str) -> list[Sentence]:
    """The answer's sentences, line by line (a list item is a line), each with the source numbers
    it cites; a marker after the full stop ("… 3 years. [1]") belongs to the sentence before, and
    a sentence without one is covered by the next marker on its line."""
    out: list[Sentence] = []
    fenced = False
    for lineno, line in enumerate(text.splitlines()):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        body = line if fenced else _BULLET.sub("", line)
        here: list[Sentence] = []
        for piece in _split(body):
            cites = [int(n) for m in MARKER.finditer(piece) for n in m.group(1).split(",")]
            plain = _plain(_MARKERS.sub("", piece))
            if len(plain) >= 3:
                here.append(Sentence(piece.strip(), plain, list(dict.fromkeys(cites)), lineno))
            elif cites and here:  # a stray marker: the sentence before's
                here[-1].cites = list(dict.fromkeys(here[-1].cites + cites))
        # A marker covers the sentences of its line since the previous marker ("A. B. [1]").
        following: list[int] = []
        for s in reversed(here):
            if s.cites:
                following = s.cites
            else:
                s.cites = list(following)
        out += here
    return out


def _split(line: str) -> list[str]:
    pieces, start = [], 0
    for m in _END.finditer(line):
        pieces.append(line[start : m.end()])
        start = m.end()
    pieces.append(line[start:])
    return [p for p in pieces if p.strip()]


def _plain(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split())


def prompt_sources(chunks: Sequence[RetrievedChunk]) -> dict[int, list[str]]:
    """Source number -> its chunks' texts, numbered as the prompt showed them (chunks of one
    document share a number, documents in order of their best chunk)."""
    numbers: dict[str, int] = {}
    out: dict[int, list[str]] = {}
    for c in chunks:
        n = numbers.setdefault(c.doc_id, len(numbers) + 1)
        out.setdefault(n, []).append(c.text)
    return out


def answer_sources(answer: Answer) -> tuple[str, dict[int, list[str]]]:
    """(the text to check, its source numbers -> texts): the generator's draft with the prompt's
    numbers when the answer kept it, else the final text with its renumbered citations."""
    if answer.draft:
        return answer.draft, prompt_sources(answer.chunks)
    out: dict[int, list[str]] = {}
    for c in answer.chunks:
        if c.n is not None:
            out.setdefault(c.n, []).append(c.text)
    return answer.text, out


def source_units(text: str) -> list[str]:
    """What a cited sentence is compared with: each sentence, list item, table row (with its
    header) and code line of a chunk, and each two consecutive ones of one block (a quote that
    joins a sentence to the one it leans on)."""
    found = [u for u in units(text) if u.kind not in ("heading", "header") and u.text.strip()]
    out = [_plain(u.quote()) for u in found]
    for a, b in itertools.pairwise(found):
        if a.block == b.block and a.kind == b.kind and a.kind in ("sentence", "item"):
            out.append(_plain(f"{a.text} {b.text}"))
    return list(dict.fromkeys(t for t in out if t))


# -- the checks ----------------------------------------------------------------------


def citation_validity(text: str, numbers: Iterable[int]) -> tuple[int, int]:
    """(valid markers, all markers): a marker is valid when it names one of `numbers`."""
    given = set(numbers)
    cited = [int(n) for m in MARKER.finditer(text) for n in m.group(1).split(",")]
    return sum(1 for n in cited if n in given), len(cited)


@dataclass
class CheckedSentence:
    text: str
    cites: list[int]
    scores: dict[int, float]  # cited source -> best cosine (absent: not a given source)
    missing: dict[int, list[str]]  # cited source -> the sentence's claims it doesn't contain
    supported: bool  # one of its cited sources supports it
    supporting: int = 0  # how many of its cited sources support it


@dataclass
class AnswerCheck:
    """One answer's checks; `summarize_checks` adds them up."""

    citations: int = 0  # markers in the answer
    valid_citations: int = 0
    sentences: int = 0  # statements: an uncited lead-in ("From the docs:") is none
    cited_sentences: int = 0
    supported_sentences: int = 0  # cited sentences one of whose sources supports them
    supporting_citations: int = 0  # (sentence, source) pairs where the source supports it
    citation_pairs: int = 0
    claims: int = 0
    unsupported_claims: list[str] = field(default_factory=list)
    checked: list[CheckedSentence] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AnswerChecker:
    """The checks, with the process's embedding model (vectors of source sentences are kept
    between answers: the same chunks come up again and again)."""

    def __init__(self, model: BaseEmbedding, threshold: float = SUPPORT_THRESHOLD) -> None:
        self.model = model
        self.threshold = threshold
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # one engine answers from several threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts`, one batch for those not seen before."""
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            vectors = np.asarray(self.model.get_text_embedding_batch(todo), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
            for t, v in zip(todo, vectors, strict=True):
                self._cache[t] = v
        out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)
        for t in texts:
            self._cache.move_to_end(t)
        while len(self._cache) > _VECTOR_CACHE:
            self._cache.popitem(last=False)
        return out

    def cosines(
        self, sentences: Sequence[Sentence], sources: Mapping[int, Sequence[str]]
    ) -> list[dict[int, float]]:
        """For each sentence, each cited (given) source's best cosine with it."""
        wanted = sorted({n for s in sentences for n in s.cites if n in sources})
        pieces = {
            n: [u for text in sources[n] for u in source_units(text)] or list(sources[n]) for n in wanted
        }
        cited = [s for s in sentences if s.cites]
        flat = [u for n in wanted for u in pieces[n]]
        vectors = self.embed([s.plain for s in cited] + flat)
        own = dict(zip((id(s) for s in cited), vectors[: len(cited)], strict=True))
        rows, start = {}, len(cited)
        for n in wanted:
            rows[n] = vectors[start : start + len(pieces[n])]
            start += len(pieces[n])
        return [
            {n: float(np.max(rows[n] @ own[id(s)])) for n in s.cites if n in sources} if s.cites else {}
            for s in sentences
        ]

    def support(
        self, sentences: Sequence[Sentence], sources: Mapping[int, Sequence[str]]
    ) -> list[CheckedSentence]:
        """Each sentence's support by each source it cites: the cosine reaches the threshold and
        the sentence's numbers, names and links are in that source (a changed figure reads
        almost the same to MiniLM)."""
        out = []
        for s, scores in zip(sentences, self.cosines(sentences, sources), strict=True):
            missing = {n: [c.text for c in unsupported(extract_claims(s.plain), sources[n])] for n in scores}
            supports = {n: v >= self.threshold and not missing[n] for n, v in scores.items()}
            out.append(
                CheckedSentence(
                    s.plain,
                    s.cites,
                    {n: round(v, 4) for n, v in scores.items()},
                    {n: m for n, m in missing.items() if m},
                    any(supports.values()),
                    sum(supports.values()),
                )
            )
        return out

    def check(self, text: str, sources: Mapping[int, Sequence[str]]) -> AnswerCheck:
        """The checks of answer `text` against the sources it was given (number -> chunk texts)."""
        sentences = answer_sentences(text)
        valid, total = citation_validity(text, sources)
        statements = [x for x in sentences if x.cites or not x.plain.endswith(":")]
        result = AnswerCheck(citations=total, valid_citations=valid, sentences=len(statements))
        for checked in self.support(sentences, sources):
            if checked.cites:
                result.cited_sentences += 1
                result.supported_sentences += checked.supported
                result.citation_pairs += len(checked.cites)
                result.supporting_citations += checked.supporting
            result.checked.append(checked)
        claims = extract_claims(text)
        result.claims = len(claims)
        result.unsupported_claims = [
            c.text for c in unsupported(claims, [t for ts in sources.values() for t in ts])
        ]
        return result

    def check_answer(self, answer: Answer) -> AnswerCheck | None:
        """`check` of an answer as the engine made it; None when it abstained."""
        if answer.abstained:
            return None
        text, sources = answer_sources(answer)
        return self.check(text, sources)

    def drop_unsupported(self, text: str, sources: Mapping[int, Sequence[str]]) -> tuple[str, int]:
        """(the text without its cited sentences that no cited source supports, how many cited
        sentences are left). Uncited sentences (a lead-in, a heading) stay; a list item left
        empty goes."""
        sentences = answer_sentences(text)
        passes = [c.supported for c in self.support(sentences, sources)]
        failing = {(s.line, s.text) for s, ok in zip(sentences, passes, strict=True) if s.cites and not ok}
        kept = sum(1 for s, ok in zip(sentences, passes, strict=True) if s.cites and ok)
        if not failing:
            return text, kept
        lines = []
        for lineno, line in enumerate(text.splitlines()):
            bullet = _BULLET.match(line)
            lead = bullet.group(0) if bullet else ""
            kept_pieces: list[str] = []
            dropped = False
            for piece in _split(line[len(lead) :]):
                stray = len(_plain(MARKER.sub(" ", piece))) < 3
                if (lineno, piece.strip()) in failing or (stray and dropped):
                    dropped = True
                    own = MARKER.findall(piece)
                    if own and kept_pieces and not MARKER.search(kept_pieces[-1]):
                        # The sentence before relied on this marker (and passed): it keeps it.
                        kept_pieces[-1] = kept_pieces[-1].rstrip() + " " + "".join(f"[{m}]" for m in own)
                    continue
                dropped = False
                kept_pieces.append(piece)
            body = "".join(kept_pieces).strip()
            if body:
                lines.append(f"{lead}{body}")
            elif not line.strip():
                lines.append("")
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip(), kept


# -- uncited claims ------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        1,
    )
    for m in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]`\"']+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CODE = re.compile(r"`([^`\n]+)`")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_MONTH_DAY = re.compile(
    rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?", re.IGNORECASE
)
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s+(\d{{4}})\b)?", re.IGNORECASE
)
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_VERSION = re.compile(r"(?<![\w.])v?\d+(?:\.\d+){2,}(?:[-+][0-9A-Za-z.]+)?\b|\bv\d+(?:\.\d+)?\b")
_IDENTIFIER = re.compile(
    r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b"  # snake_case, SCREAMING_SNAKE
    r"|\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b"  # CamelCase
    r"|\b[a-z]+[0-9]*(?:[A-Z][a-z0-9]*)+\b"  # lowerCamel
    r"|\b(?=[A-Z0-9-]*\d)[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*\b"  # ALLCAPS with digits: SEV1, HR-42
    r"|(?<![\w-])--[a-z][\w-]*|(?<![\w-])-[a-zA-Z]\b(?!-)"  # command-line options
)
_NUMBER = re.compile(r"(?<![\w.])[$€£]?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:st|nd|rd|th)?%?(?![\w])")
_ANY_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Claim:
    kind: str  # number, date, time, version, identifier, code, email, url
    text: str  # as written
    key: str  # normalised, what is looked for in the sources


def extract_claims(text: str) -> list[Claim]:
    """The checkable specifics of an answer (markers and list numbering left out), each span
    claimed once, most specific kind first (a URL's digits are not numbers of their own)."""
    body = "\n".join(_BULLET.sub("", line) for line in MARKER.sub(" ", text).splitlines())
    body = body.replace("**", "  ")
    claims: list[tuple[int, Claim]] = []
    taken = [False] * len(body)

    def take(pattern: re.Pattern[str], kind: str, key: Any) -> None:
        for m in pattern.finditer(body):
            if any(taken[m.start() : m.end()]):
                continue
            k = key(m)
            if not k:
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            claims.append((m.start(), Claim(kind, m.group(0).strip(), k)))

    take(_URL, "url", lambda m: _url_key(m.group(0)))
    take(_EMAIL, "email", lambda m: m.group(0).casefold())
    take(_CODE, "code", lambda m: _text_key(m.group(1)))
    take(_ISO_DATE, "date", lambda m: _date_key(m.group(2), m.group(3), m.group(1)))
    take(_MONTH_DAY, "date", lambda m: _date_key(_MONTHS[m.group(1).lower()], m.group(2), m.group(3)))
    take(_DAY_MONTH, "date", lambda m: _date_key(_MONTHS[m.group(2).lower()], m.group(1), m.group(3)))
    take(_TIME, "time", lambda m: f"{int(m.group(1))}:{m.group(2)}")
    take(_VERSION, "version", lambda m: m.group(0).lower().lstrip("v"))
    take(_IDENTIFIER, "identifier", lambda m: _text_key(m.group(0)))
    take(_NUMBER, "number", lambda m: _number_key(m.group(1), m.group(2)))
    return [c for _start, c in sorted(claims, key=lambda sc: sc[0])]


def _url_key(url: str) -> str:
    url = url.rstrip(".,;:!?'\"")
    return re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.IGNORECASE).rstrip("/").casefold()


def _text_key(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split()).casefold()


def _number_key(whole: str, fraction: str | None) -> str:
    fraction = (fraction or "").rstrip("0")
    return whole.replace(",", "") + (f".{fraction}" if fraction else "")


def _date_key(month: Any, day: Any, year: Any) -> str:
    month, day = int(month), int(day)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return ""
    return f"{month}-{day}" + (f"-{year}" if year else "")


@dataclass
class _Haystack:
    text: str  # casefolded, markup and extra whitespace removed
    numbers: set[str]
    dates: set[str]
    times: set[str]


def _haystack(texts: Sequence[str]) -> _Haystack:
    joined = "\n".join(texts)
    numbers = {_number_key(*m.group(0).partition(".")[::2]) for m in _ANY_NUMBER.finditer(joined)}
    dates = set()
    for m in _ISO_DATE.finditer(joined):
        dates |= {_date_key(m.group(2), m.group(3), m.group(1)), _date_key(m.group(2), m.group(3), None)}
    for m in _MONTH_DAY.finditer(joined):
        month = _MONTHS[m.group(1).lower()]
        dates |= {_date_key(month, m.group(2), m.group(3)), _date_key(month, m.group(2), None)}
    for m in _DAY_MONTH.finditer(joined):
        month = _MONTHS[m.group(2).lower()]
        dates |= {_date_key(month, m.group(1), m.group(3)), _date_key(month, m.group(1), None)}
    times = {f"{int(m.group(1))}:{m.group(2)}" for m in _TIME.finditer(joined)}
    return _Haystack(_text_key(_MARKUP.sub("", joined)), numbers, dates, times)


def unsupported(claims: Sequence[Claim], texts: Sequence[str]) -> list[Claim]:
    """The claims none of `texts` (the sources given) contains."""
    if not claims:
        return []
    hay = _haystack(texts)

    def found(c: Claim) -> bool:
        if c.kind == "number":
            return c.key in hay.numbers
        if c.kind == "date":
            return c.key in hay.dates
        if c.kind == "time":
            return c.key in hay.times
        if c.kind == "identifier":  # a whole word: `SEV1` is not in "SEV10"
            return re.search(rf"(?<![\w-]){re.escape(c.key)}(?![\w])", hay.text) is not None
        return c.key in hay.text

    return [c for c in claims if not found(c)]


# -- similarity to an ideal answer ---------------------------------------------------

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _tokens(text: str) -> list[str]:
    text = MARKER.sub(" ", text).lower().translate(_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def token_f1(answer: str, ideal: str) -> float:
    """SQuAD's token F1: lower-cased, punctuation, articles and citation markers left out."""
    a, b = _tokens(answer), _tokens(ideal)
    if not a or not b:
        return float(a == b)
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def ideal_similarity(pairs: Sequence[tuple[str, str]], model: BaseEmbedding) -> dict[str, Any]:
    """Mean token F1 and cosine of (answer, the reviewer's ideal answer) pairs, and each pair's."""
    if not pairs:
        return {"pairs": 0, "token_f1": None, "cosine": None, "per_pair": []}
    texts = [_plain(MARKER.sub(" ", t)) or "-" for pair in pairs for t in pair]
    vectors = np.asarray(model.get_text_embedding_batch(texts), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    per = [
        {"token_f1": round(token_f1(a, b), 4), "cosine": round(float(vectors[2 * i] @ vectors[2 * i + 1]), 4)}
        for i, (a, b) in enumerate(pairs)
    ]
    return {
        "pairs": len(per),
        "token_f1": round(sum(p["token_f1"] for p in per) / len(per), 4),
        "cosine": round(sum(p["cosine"] for p in per) / len(per), 4),
        "per_pair": per,
    }


# -- adding up -----------------------------------------------------------------------


def summarize_checks(checks: Iterable[AnswerCheck | None]) -> dict[str, Any]:
    """Pooled rates over the answers that did not abstain (None: abstained)."""
    done = [c for c in checks if c is not None]

    def rate(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    citations = sum(c.citations for c in done)
    cited = sum(c.cited_sentences for c in done)
    statements = sum(c.sentences for c in done)
    pairs = sum(c.citation_pairs for c in done)
    claims = sum(c.claims for c in done)
    bad_claims = sum(len(c.unsupported_claims) for c in done)
    return {
        "answered": len(done),
        "citations": citations,
        "citation_validity": rate(sum(c.valid_citations for c in done), citations),
        "cited_sentences": cited,
        # The share of cited sentences their citations support, and of citations that support
        # their sentence (ALCE's citation precision), as the support check judges them.
        "citation_support": rate(sum(c.supported_sentences for c in done), cited),
        "citation_precision": rate(sum(c.supporting_citations for c in done), pairs),
        # ALCE's citation recall counts every statement: an uncited one is unsupported.
        "citation_recall": rate(sum(c.supported_sentences for c in done), statements),
        "uncited_sentences": rate(statements - cited, statements),
        "claims": claims,
        "unsupported_claims": rate(bad_claims, claims),
        "answers_with_unsupported_claims": rate(sum(1 for c in done if c.unsupported_claims), len(done)),
    }
