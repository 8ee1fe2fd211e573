"""Abstention that sees missing terms: whether the things a question names are in the docs.

A cosine between MiniLM vectors can't tell "how do we deploy postfix with Terraform?" from an
answerable question about postfix deployment: the vectors are close either way. What gives
the first one away is a word the corpus never uses. So besides the cosine confidence
(`CitingQueryEngine.confidence`), Lore looks at the question's *salient* terms, the words that
are rare in the corpus or absent from it (product and tool names, identifiers), using the
corpus's own statistics: the BM25 sparse index knows in how many chunks each term occurs.

- A term is salient when it isn't a stop word (the BM25 tokenizer's list), a chat word ("we",
  "our setup", "anyone", "hrs", "prod"), a number or a number with a unit ("15mb", "5d"), or
  two letters alone ("SF", "yr").
- A salient term the corpus never mentions is *missing* when it is a name: written like an
  identifier (capitals, digits, joined pieces: "GitHub", "mx-eu1", "Lisbon" mid-sentence) or,
  in lower case, neither an English word (pyspellchecker's word list) nor one the embedding
  model's vocabulary holds whole: "rspamd", "certbot", not "phishing", "deploy". An everyday
  word a manual happens not to use is no sign that the question is about something else.
- Nor is a misspelt word: one typo away from a word the corpus uses ("postifx" -> postfix).
  Typos keep their first letter (so "rqlite" is not taken for "sqlite"), and words of four
  letters or fewer, and identifiers, get no such tolerance.
- Nor is an acronym that a retrieved chunk spells out in capitalised words: "NYC" when a chunk
  says "New York City", "CVE" for "Common Vulnerabilities and Exposures".
- `coverage` is the share of the question's salient weight (IDF) found in the top chunks.

`decide()` combines them with the cosine confidence in two thresholds: below `floor` Lore
abstains whatever the terms say; below `named` it abstains when the question names something
the corpus never mentions. Both come from `retrieval.abstain_below` when that is set, else from
the corpus's own calibration (`knowledge/calibrate.py`), else from the defaults here, chosen by
leaving one eval corpus out (BENCHMARKS.md, "Abstention").
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from knowledge.backends import Backend, SearchRequest
from knowledge.sparse import SparseEncoder, SparseVector

# Built-in thresholds: chosen on the postfix, git, sqlite and handbook sets (BENCHMARKS.md,
# "Abstention on corpora it was not tuned on"); calibrated ones replace them only if asked.
DEFAULT_FLOOR = 0.43
DEFAULT_NAMED = 0.66

# Words of chat that say nothing about the topic. Stop words are the BM25 tokenizer's own.
_CHAT = """
    we our ours us i me my mine you your anyone anybody someone somebody everyone folks guys
    team teams company setup set use used using uses need needs want wants get gets got getting
    make makes made thing things stuff way ways work works working worked know knows help like
    just actually really also still always ever every new old something anything everything
    nothing pls please thanks thank thx ok okay hey hi hello yo lol right now today yesterday
    tomorrow week weekend last next recommended recommend best good better option options
    possible instead supposed able whats what's hows how's can't cant dont don't doesnt doesn't
    isnt isn't wont won't im i'm ive i've we're were weve we've theyre they're there's theres
    let's lets should would could might must maybe probably think thought mean means try trying
    tried wondering wonder question questions quick q currently current go going gone see seem
    seems one two way already ago didnt wasnt arent havent hasnt couldnt shouldnt wouldnt cannot
    gonna wanna thats whos heres
    hr hrs min mins sec secs yr yrs wk wks mo mos btw fyi asap afaik imo tbh iirc eta plz ty np
    info prod dev repo repos config configs doc docs perf ack app apps msg msgs dbs ppl
"""
CHAT_WORDS = frozenset(_CHAT.split())
_WORD = re.compile(r"[^\s\"`()\[\]{}<>,;!?]+")
_ALNUM = re.compile(r"[^\W_]+")
_NUMBER_WITH_UNIT = re.compile(r"^\d+(?:[.,]\d+)*[a-z]{0,3}$", re.I)
_HEX_ID = re.compile(r"^(?=.*\d)[0-9a-f]{7,64}$")  # a commit id or a hash: a value, not a name
_TYPO_MIN_LEN = 5  # a typo of a stop word may be shorter ("teh", "hav")
DF_CAP = 1000  # document frequencies are counted up to this many chunks


@dataclass(frozen=True)
class Term:
    word: str  # as the question wrote it, for the reply ("Terraform", "mx-eu1")
    token: str  # the alphanumeric piece that was looked up
    df: int  # chunks of the corpus that contain it (at most DF_CAP)
    in_top: bool  # whether one of the retrieved chunks contains it
    near_miss: bool = False  # absent, but one typo from a word the corpus uses
    common: bool = False  # absent, but an everyday word, not a name ("deploy", "office")
    spelt_out: bool = False  # an absent acronym that a retrieved chunk spells out ("NYC")


@dataclass(frozen=True)
class TermSignal:
    terms: tuple[Term, ...] = ()
    chunks: int = 0  # how many chunks the corpus has, for IDF

    @property
    def missing(self) -> tuple[str, ...]:
        """The named things the corpus never mentions, in question order (display form)."""
        return tuple(
            dict.fromkeys(
                t.word for t in self.terms if t.df == 0 and not (t.near_miss or t.common or t.spelt_out)
            )
        )

    @property
    def coverage(self) -> float:
        """IDF-weighted share of the salient terms that some retrieved chunk contains (1 if none)."""
        weights = [(self._idf(t.df), t.in_top or t.spelt_out) for t in self.terms if not t.near_miss]
        total = sum(w for w, _ in weights)
        return sum(w for w, hit in weights if hit) / total if total else 1.0

    def _idf(self, df: int) -> float:
        n = max(self.chunks, 1)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing": list(self.missing),
            "coverage": round(self.coverage, 4),
            "terms": [t.__dict__ for t in self.terms],
        }


@dataclass(frozen=True)
class Thresholds:
    floor: float  # abstain below this confidence whatever the terms say
    named: float  # abstain below this when the question names something the corpus never mentions
    origin: str = "default"  # "configured", "calibrated" or "default"

    def as_dict(self) -> dict[str, Any]:
        return {"floor": round(self.floor, 4), "named": round(self.named, 4), "origin": self.origin}


DEFAULT_THRESHOLDS = Thresholds(DEFAULT_FLOOR, DEFAULT_NAMED)


def thresholds_for(
    abstain_below: float | None,
    abstain_if_missing_below: float | None,
    calibrated: Mapping[str, Any] | None,
    use_calibrated: bool = True,
) -> Thresholds:
    """Configured thresholds (`retrieval.*`) win, then the source's calibration (if it is to be
    used), then the defaults."""
    auto = (
        Thresholds(float(calibrated["floor"]), float(calibrated["named"]), "calibrated")
        if use_calibrated and calibrated and "floor" in calibrated and "named" in calibrated
        else DEFAULT_THRESHOLDS
    )
    if abstain_below is None and abstain_if_missing_below is None:
        return auto
    return Thresholds(
        auto.floor if abstain_below is None else abstain_below,
        auto.named if abstain_if_missing_below is None else abstain_if_missing_below,
        "configured",
    )


@dataclass(frozen=True)
class Decision:
    abstain: bool
    missing: tuple[str, ...] = ()  # set when the missing terms are why Lore abstained
    thresholds: Thresholds = field(default_factory=lambda: DEFAULT_THRESHOLDS)


def decide(confidence: float, signal: TermSignal | None, thresholds: Thresholds) -> Decision:
    if confidence < thresholds.floor:
        missing = signal.missing if signal is not None else ()
        return Decision(True, missing, thresholds)
    if signal is not None and signal.missing and confidence < thresholds.named:
        return Decision(True, signal.missing, thresholds)
    return Decision(False, (), thresholds)


def _is_chat_or_number(token: str) -> bool:
    """Chat words, numbers ("15mb") and letters on their own ("SF", "yr"): too short to name a thing."""
    return (
        token.lower() in CHAT_WORDS
        or bool(_NUMBER_WITH_UNIT.match(token))
        or bool(_HEX_ID.match(token))
        or len(token) < 2
        or (len(token) == 2 and token.isalpha())
    )


def _is_identifier(word: str, token: str, first: bool) -> bool:
    """Capitals inside ("GitHub", "SES" mid-sentence), digits or joined pieces: a name, not a typo."""
    if any(c.isdigit() for c in token) or word != token:
        return True
    return any(c.isupper() for c in token[1:]) or (token[:1].isupper() and not first)


def candidates(question: str) -> list[tuple[str, str, bool]]:
    """(word as written, alphanumeric token, looks like an identifier) for each candidate term:
    no chat words or numbers. Stop words go when the tokens are looked up (`TermStats`)."""
    out = []
    for i, match in enumerate(_WORD.finditer(question)):
        word = re.sub(r"['\u2019]s$", "", match.group(0).strip(string.punctuation))
        if word.lower() in CHAT_WORDS:
            continue
        for token in _ALNUM.findall(word):
            if not _is_chat_or_number(token):
                out.append((word, token, _is_identifier(word, token, i == 0)))
    return out


def _singulars(word: str) -> list[str]:
    forms = [word]
    if word.endswith("s") and len(word) > 3:
        forms.append(word[:-1])
        if word.endswith("es"):
            forms.append(word[:-2])
    return forms


@functools.cache
def _english() -> Any:
    """pyspellchecker's English word frequencies (about 0.5 s to load, once), or None."""
    try:
        from spellchecker import SpellChecker
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return SpellChecker(distance=1).word_frequency


def everyday(word: str) -> bool:
    """A word of everyday English (pyspellchecker's list: "phishing", "nuke", "deploy")."""
    words = _english()
    plain = "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))
    return words is not None and plain in words


def one_token(tokenizer: Callable[[str], Sequence[Any]] | None) -> Callable[[str], bool]:
    """`is_common`: an English word, or one the embedding model's vocabulary holds whole."""
    if tokenizer is None:
        return everyday
    return lambda word: everyday(word) or len(tokenizer(word)) == 1


_CONNECTIVES = r"(?:(?:and|of|for|the|to|in|on|&)\s+)?"


def spelt_out(acronym: str, texts: Iterable[str]) -> bool:
    """Whether a text spells the acronym out in capitalised words, small connectives allowed
    between them: "NYC" in "New York City", "CVE" in "Common Vulnerabilities and Exposures".
    Lower-case words don't count: "sends email securely" is no spelling of "SES". (Abbreviations
    a document defines in parentheses are `knowledge/vocabulary.py`'s; this finds the rest.)"""
    if not (acronym.isalpha() and acronym.isupper() and 3 <= len(acronym) <= 6):
        return False
    words = [rf"{letter}[\w'-]*" for letter in acronym]
    pattern = re.compile(r"\b" + (r"\s+" + _CONNECTIVES).join(words) + r"\b")
    return any(pattern.search(text) for text in texts)


def _typos(word: str) -> set[str]:
    """Damerau edit-distance-1 variants that keep the first letter (swapping the first two is allowed)."""
    letters = string.ascii_lowercase + string.digits
    w = word.lower()
    splits = [(w[:i], w[i:]) for i in range(1, len(w) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1} | {w[1] + w[0] + w[2:]}
    replaces = {a + c + b[1:] for a, b in splits if b for c in letters}
    inserts = {a + c + b for a, b in splits for c in letters}
    return (deletes | swaps | replaces | inserts) - {w}


class TermStats:
    """Document frequencies from the sparse index: a one-term sparse search counts the chunks
    that contain a term (up to DF_CAP), for the whole index or one source.

    With `access` (a reader's grants) and `sources`, only chunks the reader may see count: a
    word that only restricted documents use is missing for everyone else, so that "I couldn't
    find anything about X" reads the same whether X is restricted or nowhere at all."""

    def __init__(
        self,
        backend: Backend,
        sparse: SparseEncoder,
        is_common: Callable[[str], bool] | None = None,
        *,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
    ) -> None:
        self.backend = backend
        self.sparse = sparse
        self.is_common = is_common or everyday
        self.access = access
        self.sources = sources

    def term_ids(self, token: str) -> list[int]:
        return sorted(self.sparse.terms(token))

    def _request(self, vector: SparseVector, limit: int, where: dict[str, str]) -> SearchRequest:
        return SearchRequest(
            "sparse",
            limit,
            sparse=vector,
            where=where,
            access=self.access,
            sources=self.sources,
            with_payload=False,
        )

    def dfs(self, ids: Sequence[int], where: dict[str, str]) -> dict[int, int]:
        requests = [self._request(SparseVector([i], [1.0]), DF_CAP, where) for i in ids]
        if not requests:
            return {}
        return {i: len(hits) for i, hits in zip(ids, self.backend.search_batch(requests), strict=True)}

    def any_of(self, ids: Iterable[int], where: dict[str, str]) -> bool:
        ids = sorted(set(ids))
        if not ids:
            return False
        return bool(self.backend.search(self._request(SparseVector(ids, [1.0] * len(ids)), 1, where)))

    def _near_miss(self, token: str, where: dict[str, str]) -> bool:
        """One typo from a word the corpus uses, or from a stop word ("teh", "hav")."""
        variants = _typos(token)
        if any(v.isalpha() and not self.sparse.terms(v) for v in variants):
            return True
        if len(token) < _TYPO_MIN_LEN:
            return False
        return self.any_of({i for v in variants for i in self.sparse.terms(v)}, where)

    def salient(self, question: str) -> list[tuple[str, str, bool, int]]:
        """`candidates` that aren't stop words, each with its term id."""
        found = []
        for word, token, identifier in candidates(question):
            ids = self.term_ids(token)
            if len(ids) == 1:  # 0: a stop word; more: the tokenizer split it further
                found.append((word, token, identifier, ids[0]))
        return found

    def signal(
        self,
        question: str,
        top_texts: Sequence[str],
        *,
        source: str | None = None,
        chunks: int | None = None,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
    ) -> TermSignal:
        """`access` and `sources`, when given, replace this object's own (see the class)."""
        if access is not None or sources is not None:
            scoped = TermStats(
                self.backend,
                self.sparse,
                self.is_common,
                access=access if access is not None else self.access,
                sources=sources if sources is not None else self.sources,
            )
            return scoped.signal(question, top_texts, source=source, chunks=chunks)
        where = {"source": source} if source else {}
        found = self.salient(question)
        dfs = self.dfs(sorted({f[3] for f in found}), where)
        in_top: set[int] = set()
        for text in top_texts:
            in_top |= self.sparse.terms(text)
        terms: list[Term] = []
        seen: set[int] = set()
        for word, token, identifier, term_id in found:
            if term_id in seen:
                continue
            seen.add(term_id)
            df = dfs[term_id]
            near = common = expanded = False
            if df == 0 and not identifier:
                common = any(self.is_common(w) for w in _singulars(token.lower()))
                if not common:
                    near = self._near_miss(token, where)
            elif df == 0:
                expanded = spelt_out(token, top_texts)
            terms.append(Term(word, token, df, term_id in in_top, near, common, expanded))
        if chunks is not None:
            total = chunks
        else:
            scope: dict[str, str | list[str]] = dict(where)
            if self.sources is not None:
                scope["source"] = [s for s in self.sources if not source or s == source]
            total = self.backend.count(scope or None, access=self.access)
        return TermSignal(tuple(terms), total)


def anything_about(missing: Sequence[str]) -> str:
    """'Terraform', 'Terraform or Ansible', 'Terraform, Ansible or Pulumi'."""
    names = list(missing)[:3]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
