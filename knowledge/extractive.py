"""Answers without a language model: whole sentences and table rows quoted from the top chunks.

Each top chunk is parsed into Markdown blocks (markdown-it), so a hard-wrapped paragraph's lines
join into sentences and a table row keeps its header. Every unit (sentence, list item, table
row, code line) is scored against the question by

- meaning: the cosine between the question and the unit (the embedding model), and
- words: the share of the question's terms the unit (or its section heading) contains, each
  term weighted by its IDF over the candidate units, so a rare word ("York", `-q`) counts more
  than one every passage shares ("per diem" on the per-diem page),

plus a little for the chunk's retrieval rank, and for a unit with a number when the question
asks for a quantity ("how long", "how many"). A how-to question gets the best coherent passage
(consecutive units of one section: a lead-in and its steps); any other question gets the best
few units, at most one near-duplicate, from more than one document when the next one is
nearly as good. A table row is quoted with its header ("Destination: Canada; Per diem: $80"),
and the first sentence under a heading with that heading as its lead-in, so a definition
keeps the name it defines ("message_size_limit (default: 10240000): The maximal size …").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from markdown_it import MarkdownIt

from knowledge.abstain import spelt_out
from knowledge.answer import RetrievedChunk, Turn

# Sentence ends inside one block of text; line breaks are not among them (hard-wrapped prose).
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")
# CommonMark blocks, with GFM tables; no raw HTML, and no indented code (PDF text is indented).
_BLOCKS = MarkdownIt("commonmark", {"html": False}).enable("table").disable("code")
_HOW_TO = re.compile(
    r"\bhow\s+(?:do|can|could|should|would|does|to)\b|\bwhat(?:'s|\s+is|\s+are)?\s+the\s+"
    r"(?:steps|process|procedure|way)\b|\bsteps?\s+(?:to|for)\b",
    re.IGNORECASE,
)
_QUANTITY = re.compile(
    r"\bhow\s+(?:long|many|much|often|soon|big|large|old|far|fast|quickly)\b|\bwhen\b|\bwhat\s+time\b|"
    r"\b(?:default|limit|maximum|minimum|max|min|size|length|number|amount|rate|cap|timeout|deadline|"
    r"cost|price|budget|allowance|version)s?\b",
    re.IGNORECASE,
)
# Where one message asks a second question: "…? …", "… and how/when/do …".
_SPLIT = re.compile(
    r"\?\s+|[,;]?\s+(?:and|also|plus)\s+(?=(?:how|what|when|where|who|which|why|do|does|is|are|can|"
    r"should|will|would)\b)",
    re.IGNORECASE,
)
# A part of a message that asks something (not "i only started here in january").
_ASKS = re.compile(
    r"\b(?:how|what|whats|when|where|who|which|why|do|does|did|is|are|can|could|should|will|would)\b",
    re.IGNORECASE,
)
# A sentence that leans on the one before it ("It must be at least 16 characters long.").
_ANAPHOR = re.compile(r"(?:It|Its|This|That|These|Those|They|Their|Them|Such|Both|Each|He|She)\b")
_DIGIT = re.compile(r"\d")
_ACRONYM = re.compile(r"\b[A-Z]{3,6}\b")
# A unit that opens with a link ("[VPN Access](it/vpn.md) - how to set it up") points at the
# answer elsewhere: a table of contents or a "see also" list, not the answer itself.
_POINTER = re.compile(r"^\W{0,4}\[[^\]]+\]\([^)]+\)")
_MARKUP = re.compile(r"[*_`\\]")

MIN_LENGTH = 25  # shorter units are labels ("Options:"), not answers
MAX_QUOTES = 3  # units quoted for a lookup
MAX_PASSAGE = 6  # units in a how-to passage
MAX_CHARS = 900  # an answer's quotes together, roughly
ITEM_CHARS = 300  # a list item up to this long is quoted whole, not sentence by sentence
FLOOR = 0.55  # a unit scoring below this share of the best one is not quoted
# A unit's score: its cosine with the question, plus these times the share of the question's
# (IDF-weighted) terms it has, the cosine of its section (title > heading), 1 / its chunk's
# rank, and whether it has a number when the question asks for a quantity.
W_WORDS = 0.5
W_SECTION = 0.5
W_RANK = 0.3
W_NUMBER = 0.1
W_POINTER = 0.3


def sentences(text: str, min_length: int = MIN_LENGTH) -> list[str]:
    """The sentences of a chunk worth quoting (or matching): no markup, no code fences, not tiny.

    The chunk is parsed into Markdown blocks first, so the lines of a hard-wrapped paragraph or
    list item join into sentences, while list items, table rows, headings and code lines each
    stay a unit of their own."""
    return [u.text for u in units(text) if len(u.text) >= min_length]


@dataclass
class Unit:
    """A piece of a chunk: a sentence, a list item's sentence, a table row, a code line, or a
    heading or table header row (context, not quoted on their own)."""

    text: str
    kind: str  # "sentence", "item", "row", "code", "heading", "header"
    block: int  # the top-level Markdown block it is in (a paragraph, a list, a table, a fence)
    heading: str = ""  # the nearest heading above it in the chunk, or the chunk's own
    header: list[str] = field(default_factory=list)  # a table row's header cells
    cells: list[str] = field(default_factory=list)
    first: bool = False  # the first unit under its heading in this chunk
    item: int = -1  # the list item it is in (numbered through the chunk), -1 outside lists

    @property
    def quotable(self) -> bool:
        return self.kind not in ("heading", "header") and (len(self.text) >= MIN_LENGTH or self.kind == "row")

    def quote(self) -> str:
        """The text to quote: a table row with its header ("Destination: Canada; Per diem: $80")."""
        if self.kind == "row" and len(self.header) == len(self.cells) and any(self.header):
            return "; ".join(f"{h}: {c}" if h else c for h, c in zip(self.header, self.cells, strict=True))
        return self.text


def units(text: str, heading: str = "") -> list[Unit]:
    """The units of a chunk in document order; `heading` is the section the chunk starts in."""
    out: list[Unit] = []
    tokens = _BLOCKS.parse(text)
    block = -1
    header: list[str] = []
    row: list[str] | None = None
    in_head = False
    items: list[int] = []  # the list items open around the current token
    item_count = 0
    fresh = False  # a heading was just seen: the next unit is the first under it

    def add(unit: Unit) -> None:
        nonlocal fresh
        if unit.kind not in ("heading", "header"):
            unit.first, fresh = fresh, False
        out.append(unit)

    for i, token in enumerate(tokens):
        if token.level == 0 and (token.nesting == 1 or token.type == "fence"):
            block += 1
        if token.type == "list_item_open":
            items.append(item_count)
            item_count += 1
        elif token.type == "list_item_close":
            items.pop()
        elif token.type == "heading_open":
            heading = " ".join(tokens[i + 1].content.split())
            add(Unit(heading, "heading", block, heading))
            fresh = True
        elif token.type == "thead_open":
            in_head, header = True, []
        elif token.type == "thead_close":
            in_head = False
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            if in_head:
                header = row
                add(Unit(" | ".join(row), "header", block, heading))
            else:
                add(Unit(" | ".join(row), "row", block, heading, list(header), row))
            row = None
        elif token.type == "fence":
            for line in token.content.splitlines():
                if line.strip():
                    add(Unit(line.strip(), "code", block, heading))
        elif token.type == "inline" and row is not None:
            row.append(" ".join(token.content.split()))
        elif token.type == "inline" and tokens[i - 1].type != "heading_open":
            for piece, cells in _paragraph(token.content):
                kind = "row" if cells else "item" if items else "sentence"
                add(Unit(piece, kind, block, heading, cells=cells, item=items[-1] if items else -1))
    return out


def _paragraph(content: str) -> list[tuple[str, list[str]]]:
    """Sentences, or the rows (and cells) of a table cut off from its header."""
    lines = [ln.strip() for ln in content.splitlines() if ln.strip()]
    if lines and all(ln.startswith("|") for ln in lines):
        rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
        return [(" | ".join(cells), cells) for cells in rows]
    return [(s, []) for s in _SENTENCE.split(" ".join(lines)) if s]


@dataclass(eq=False)  # compared (and hashed) by identity
class _Candidate:
    unit: Unit
    chunk: int  # position of its chunk among those read
    n: int  # citation number
    index: int  # position within its chunk's units
    section: str  # the page title and the heading the unit is under
    rank: int  # retrieval rank of its chunk's document (quotes are shown in this order)
    read: int  # its chunk's place in the reading: the top chunks' ranks, then the extra context
    score: float = 0.0


class ExtractiveGenerator:
    """No LLM: the units of the top chunks that best answer the question, each with its citation."""

    name = "extractive"
    reads_more_of_the_page = True  # the chunks `retrieval.context_chunks` adds after the top-k

    def __init__(
        self, embed_model: BaseEmbedding, max_sentences: int = MAX_QUOTES, top_chunks: int = 5
    ) -> None:
        from knowledge.sparse import SparseEncoder

        self._embed = embed_model
        self._max = max_sentences
        self._top = top_chunks
        self._terms = SparseEncoder().terms

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        per_chunk = [
            self._candidates(at, rank, chunk) for at, (rank, chunk) in enumerate(_reading(chunks, self._top))
        ]
        quotable = [c for group in per_chunk for c in group if c.unit.quotable]
        if not quotable:
            return "\n".join(f"{c.text.strip()[:400]} [{c.n}]" for c in chunks[:1])
        scores = self._score([question, *_parts(question)], quotable)
        for c, score in zip(quotable, scores[0], strict=True):
            c.score = score
        if _HOW_TO.search(question) and len(scores) == 1:
            picked = _passage(quotable, per_chunk)
        else:
            # A question that asks two things gets the best unit for each part first.
            seeds = [quotable[int(np.argmax(part))] for part in scores[1:]]
            picked = _best_units(quotable, self._max, seeds)
        lines = [f"- {_render(c, picked)} [{c.n}]" for c in picked]
        return "From the docs:\n\n" + "\n".join(lines)

    def _candidates(self, at: int, rank: int, chunk: RetrievedChunk) -> list[_Candidate]:
        own = chunk.heading.split(" > ")[-1] if chunk.heading and chunk.heading != chunk.title else ""
        found = units(chunk.text, heading=own)
        item_chars: dict[tuple[int, int], int] = {}
        for u in found:
            if u.kind == "item":
                item_chars[u.block, u.item] = item_chars.get((u.block, u.item), 0) + len(u.text)
        merged: list[Unit] = []
        for u in found:
            prev = merged[-1] if merged else None
            same = (
                prev is not None
                and u.kind in ("sentence", "item")
                and (prev.kind, prev.block, prev.item) == (u.kind, u.block, u.item)
            )
            # A short list item is one thought: quoted whole. Elsewhere, a sentence that leans
            # on the one before it ("It must be …") is quoted with it.
            whole = same and u.kind == "item" and item_chars[u.block, u.item] <= ITEM_CHARS
            leans = (
                same and bool(_ANAPHOR.match(u.text)) and prev is not None and len(prev.text + u.text) < 400
            )
            if prev is not None and (whole or leans):
                merged[-1] = replace(prev, text=f"{prev.text} {u.text}")
            else:
                merged.append(u)
        return [
            _Candidate(u, at, chunk.n or 0, i, " > ".join(p for p in (chunk.title, u.heading) if p), rank, at)
            for i, u in enumerate(merged)
        ]

    def _score(self, questions: list[str], candidates: list[_Candidate]) -> list[list[float]]:
        """Each candidate's score for each question (the whole one, then its parts)."""
        texts = [_plain(c.unit.quote()) for c in candidates]
        sections = sorted({c.section for c in candidates})
        vectors = np.asarray(self._embed.get_text_embedding_batch(texts + sections))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
        own = [self._terms(t) for t in texts]
        context = [self._terms(c.unit.heading) for c in candidates]
        out = []
        for question in questions:
            query = np.asarray(self._embed.get_query_embedding(question))
            cosines = vectors @ (query / (np.linalg.norm(query) + 1e-9))
            dense = cosines[: len(texts)]
            section = dict(zip(sections, cosines[len(texts) :], strict=True))
            asked = self._terms(question)
            unit_terms = self._with_acronyms(question, texts, own)
            df = {t: sum(1 for terms in unit_terms if t in terms) for t in asked}
            idf = {t: math.log((len(own) + 1) / (d + 0.5)) for t, d in df.items() if d}
            total = sum(idf.values()) or 1.0
            quantity = bool(_QUANTITY.search(question))
            scores = []
            for c, d, terms, around, text in zip(candidates, dense, unit_terms, context, texts, strict=True):
                words = sum(w for t, w in idf.items() if t in terms) / total
                words += 0.5 * sum(w for t, w in idf.items() if t in around and t not in terms) / total
                score = float(d) + W_WORDS * words + W_SECTION * float(section[c.section])
                # By reading place, not by document: the best page's extra chunks (`context_chunks`)
                # come after the top-k, so they don't crowd out the second page's best sentence.
                score += W_RANK / (c.read + 1)
                if quantity and _DIGIT.search(text):
                    score += W_NUMBER
                if _POINTER.match(c.unit.text):
                    score -= W_POINTER
                if c.unit.kind == "code":
                    score -= W_NUMBER  # a code line rarely answers alone; a how-to passage brings it
                scores.append(score)
            out.append(scores)
        return out

    def _with_acronyms(self, question: str, texts: list[str], own: list[set[int]]) -> list[set[int]]:
        """Each unit's terms, plus the question's acronyms it spells out: a question about "NYC"
        finds the row that says "New York City"."""
        acronyms = [(self._terms(a), a) for a in set(_ACRONYM.findall(question))]
        if not acronyms:
            return own
        return [
            terms | {i for ids, a in acronyms if spelt_out(a, [text]) for i in ids}
            for terms, text in zip(own, texts, strict=True)
        ]


def _reading(chunks: list[RetrievedChunk], top: int) -> list[tuple[int, RetrievedChunk]]:
    """The chunks to quote from, each with the rank its document has: the top `top`, and after
    them more chunks of those documents (the engine's `context_chunks`)."""
    first = {c.doc_id: rank for rank, c in enumerate(chunks[:top])}
    return [(rank, c) for rank, c in enumerate(chunks[:top])] + [
        (first[c.doc_id], c) for c in chunks[top:] if c.doc_id in first
    ]


def _parts(question: str) -> list[str]:
    """The questions in one message ("how many sick days do we get and do i need a note?"),
    when there are two or more; else none."""
    parts = [p.strip(" ,;") for p in _SPLIT.split(question) if p and p.strip(" ,;?")]
    parts = [p for p in parts if len(p.split()) >= 3 and _ASKS.search(p)]
    return parts if len(parts) > 1 else []


def _plain(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split())


def _best_units(
    candidates: list[_Candidate], limit: int, seeds: Sequence[_Candidate] = ()
) -> list[_Candidate]:
    """The seeds, then the best units: near-duplicates and units far below the best skipped; a
    second document gets in when its best unit is close to the best one (a question that spans
    two pages)."""
    ranked = sorted(candidates, key=lambda c: -c.score)
    best = ranked[0].score
    picked: list[_Candidate] = []
    seen: set[str] = set()
    chars = 0
    for c in [ranked[0], *dict.fromkeys(seeds), *ranked]:
        key = _plain(c.unit.quote()).lower()
        if key in seen or (picked and c.score < FLOOR * best):
            continue
        if c.unit.kind == "row" and c not in seeds and any(_same_table(c, p) for p in picked):
            continue  # one matching row answers; a small table is added whole below
        if picked and chars + len(key) > MAX_CHARS:
            break
        picked.append(c)
        seen.add(key)
        chars += len(key)
        if len(picked) >= limit:
            break
    if all(c.n == picked[0].n for c in picked):
        other = next((c for c in ranked if c.n != picked[0].n and c.score >= best - 0.25), None)
        if other is not None:
            picked = [*picked[: limit - 1], other]
    for row in [c for c in picked if c.unit.kind == "row"]:
        # A small table is read whole: its other rows are the alternatives to the one that matched.
        table = [
            c
            for c in candidates
            if c.unit.kind == "row" and (c.chunk, c.unit.block) == (row.chunk, row.unit.block)
        ]
        if len(table) <= 3:
            picked += [c for c in table if c not in picked]
    return sorted(picked, key=lambda c: (c.rank, c.chunk, c.index))  # document order reads better


def _same_table(a: _Candidate, b: _Candidate) -> bool:
    return a.unit.kind == b.unit.kind == "row" and (a.chunk, a.unit.block) == (b.chunk, b.unit.block)


def _passage(candidates: list[_Candidate], per_chunk: list[list[_Candidate]]) -> list[_Candidate]:
    """The block the best unit is in (its list of steps, its paragraph), quoted in order: with
    the sentence that leads into it ("… as follows:") and, when the block itself ends with a
    colon, the block it leads into (the command, the list)."""
    anchor = max(candidates, key=lambda c: c.score)
    quotable = {id(c) for c in candidates}
    run = [c for c in per_chunk[anchor.chunk] if id(c) in quotable]
    blocks = sorted({c.unit.block for c in run})

    def block(b: int) -> list[_Candidate]:
        return [c for c in run if c.unit.block == b]

    here = block(anchor.unit.block)
    at = here.index(anchor)
    start = max(0, min(at - 1, len(here) - MAX_PASSAGE))
    passage = here[start : start + MAX_PASSAGE]
    i = blocks.index(anchor.unit.block)
    if start == 0 and i > 0:
        before = block(blocks[i - 1])
        if before and before[-1].unit.text.rstrip().endswith(":"):
            passage.insert(0, before[-1])
    # A lead-in ("… as follows:") brings the block it introduces; a short passage brings the
    # next block of its section (the command after "roll back first").
    while i + 1 < len(blocks) and len(passage) < MAX_PASSAGE:
        following = block(blocks[i + 1])
        if not following or not (
            passage[-1].unit.text.rstrip().endswith(":")
            or (len(passage) < 3 and following[0].unit.heading == anchor.unit.heading)
        ):
            break
        passage += following[: MAX_PASSAGE - len(passage)]
        i += 1
    kept: list[_Candidate] = []
    chars = 0
    for c in passage:
        chars += len(c.unit.quote())
        if kept and chars > MAX_CHARS:
            break
        kept.append(c)
    return kept


def _render(c: _Candidate, picked: list[_Candidate]) -> str:
    """The quote, led by its heading when it is the first unit under that heading and the
    heading is not already quoted (a definition keeps the name it defines)."""
    text = c.unit.quote()
    heading = c.unit.heading
    if (
        c.unit.first
        and c.unit.kind in ("sentence", "item")
        and heading
        and _plain(heading).lower() not in _plain(text).lower()
        and not any(p.unit.heading == heading and p.index < c.index and p.chunk == c.chunk for p in picked)
    ):
        return f"**{heading}:** {text}"
    return text
