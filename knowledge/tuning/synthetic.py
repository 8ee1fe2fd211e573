"""Training pairs written from the corpus itself, and the corpus as the tuning run sees it.

Without a language model there are two generators that need none:
- the heading path as a question ("Deploys > Rolling back" -> "Deploys Rolling back"), whose
  positive is a chunk under it *without* the heading prefix, so the model learns the topic from
  the words of the passage rather than by copying the heading;
- inverse cloze (Lee et al., 2019): an informative sentence of a chunk becomes the query, and the
  rest of the chunk, with that sentence removed, the positive.

With an LLM (`llm.provider = "openai"`) it writes one question per sampled chunk instead.

Every synthetic pair must pass Promptagator's consistency filter: the current model already ranks
its chunk in the top 20 of the corpus, so a question that doesn't match its passage at all (a
garbled heading, an off-topic generation) teaches nothing wrong. Hard negatives come from
`sentence_transformers.util.mine_hard_negatives` with a relative margin, and never from the
positive's own document (its neighbouring chunks may well answer the query too).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from llama_index.core.schema import MetadataMode, TextNode

from config.settings import LLMSettings
from knowledge.abstain import candidates
from knowledge.evaluate import NOT_IN_CORPUS, Question
from knowledge.extractive import MIN_LENGTH, units
from knowledge.tuning.data import HeldOutQuestion, TrainingPair

if TYPE_CHECKING:
    from knowledge.store import IndexStore

log = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised vectors, one row each
Chat = Callable[[list[dict[str, str]]], str]  # [system, user] messages -> the reply (OpenAIGenerator.chat)

CONSISTENCY_TOP = 20
NEGATIVE_MARGIN = 0.05  # a negative is at most 95% as close to the query as the positive (NV-Retriever)
MIN_SALIENT = 4  # words a cloze sentence must name: "see below" makes no query
_QUESTION_PROMPT = (
    "You write the question a colleague would ask in team chat that the passage below answers. "
    "Use the passage's own names and terms. Reply with the question only, on one line."
)


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str  # as stored (no title or heading prefix)
    path: str
    doc_id: str = ""
    title: str = ""
    heading: str = ""  # the heading path, " > " between levels; the title when there is none

    def indexed_text(self, embed_headings: bool = True) -> str:
        """The text the index embedded for this chunk (`knowledge.chunking`: title and heading first)."""
        if not embed_headings:
            return self.text
        node = TextNode(text=self.text, metadata={"title": self.title, "heading": self.heading})
        return node.get_content(metadata_mode=MetadataMode.EMBED)


@dataclass
class Corpus:
    """Every chunk of the index, with the vectors the current model gave it (row i = chunk i)."""

    chunks: list[Chunk]
    vectors: np.ndarray
    embed_headings: bool = True

    def texts(self) -> list[str]:
        return [c.indexed_text(self.embed_headings) for c in self.chunks]

    def index_of(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.chunks)}


def read_corpus(store: IndexStore) -> Corpus:
    """All chunks of the current index with their stored vectors, sorted by id (a stable order)."""
    fields = ["text", "path", "doc_id", "title", "heading"]
    rows = sorted(store.backend.scroll(None, fields, with_dense=True), key=lambda row: row[0])
    chunks = [
        Chunk(
            id=pid,
            text=str(p.get("text", "")),
            path=str(p.get("path", "")),
            doc_id=str(p.get("doc_id", "")),
            title=str(p.get("title", "")),
            heading=str(p.get("heading", "")),
        )
        for pid, p, _ in rows
    ]
    dim = len(rows[0][2] or []) if rows else 0
    vectors = np.asarray([v for _, _, v in rows], dtype=np.float32).reshape(len(rows), dim)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return Corpus(chunks, vectors, store.settings.chunking.embed_headings)


# -- generators -------------------------------------------------------------------------------


def _sample(items: Sequence[Any], n: int, seed: int, salt: str) -> list[Any]:
    order = list(range(len(items)))
    random.Random(f"{seed}:{salt}").shuffle(order)  # noqa: S311 - seeded sampling, not secrets
    return [items[i] for i in sorted(order[:n])] if n < len(items) else list(items)


def _pair(query: str, positive: str, chunk: Chunk) -> TrainingPair:
    # Grouped by document: questions about one page stay on one side of a train/held-out split.
    return TrainingPair(
        query=query,
        positive=positive,
        kind="synthetic",
        group=f"doc:{chunk.path or chunk.doc_id}",
        positive_id=chunk.id,
        path=chunk.path,
    )


def heading_pairs(chunks: Sequence[Chunk], *, n: int, seed: int) -> list[TrainingPair]:
    """Up to `n` (heading path, chunk text) pairs, one per distinct heading path, a seeded chunk
    under each. Chunks whose heading is only the document's title say too little."""
    by_heading: dict[tuple[str, str], list[Chunk]] = {}
    for chunk in chunks:
        heading = chunk.heading.strip()
        if heading and heading != chunk.title and len(chunk.text) >= MIN_LENGTH:
            by_heading.setdefault((chunk.path, heading), []).append(chunk)
    keys = _sample(sorted(by_heading), n, seed, "heading")
    pairs = []
    for key in keys:
        chunk = random.Random(f"{seed}:{key}").choice(by_heading[key])  # noqa: S311
        parts = [p.strip() for p in key[1].split(">") if p.strip()]
        if chunk.title and chunk.title not in parts:
            parts.insert(0, chunk.title)
        pairs.append(_pair(" ".join(parts[-3:]), chunk.text, chunk))
    return pairs


def cloze_pairs(
    chunks: Sequence[Chunk], *, n: int, seed: int, embed_headings: bool = True
) -> list[TrainingPair]:
    """Up to `n` inverse-cloze pairs: from each sampled chunk its most informative sentence (the
    most salient words, abstention's notion of them) as the query, the chunk without it as the
    positive (with the title and heading, as the index embeds it)."""
    pairs = []
    for chunk in _sample(list(chunks), n, seed, "cloze"):
        found = [
            (len(candidates(u.text)), u.text) for u in units(chunk.text) if u.kind in ("sentence", "item")
        ]
        found = [(k, s) for k, s in found if k >= MIN_SALIENT and len(s) >= MIN_LENGTH]
        if not found:
            continue
        sentence = max(found, key=lambda ks: ks[0])[1]
        rest = _without(chunk.text, sentence)
        if rest is None or len(rest) < MIN_LENGTH:
            continue
        positive = Chunk(chunk.id, rest, chunk.path, chunk.doc_id, chunk.title, chunk.heading)
        pairs.append(_pair(sentence, positive.indexed_text(embed_headings), chunk))
    return pairs


def _without(text: str, sentence: str) -> str | None:
    """`text` with `sentence` cut out. Sentences come from parsed Markdown, so the chunk may
    have wrapped lines or markup around their words: match words with anything between."""
    words = re.findall(r"\w+", sentence)
    if not words:
        return None
    pattern = r"\W*".join(re.escape(w) for w in words) + r"[^\w\n]*"
    match = re.search(pattern, text)
    if match is None:
        return None
    return re.sub(r"[ \t]{2,}", " ", text[: match.start()] + text[match.end() :]).strip()


def llm_pairs(
    chunks: Sequence[Chunk], chat: Chat, *, n: int, seed: int, embed_headings: bool = True
) -> list[TrainingPair]:
    """One LLM-written question for each of up to `n` sampled chunks (the chunk as indexed is
    the positive). A failed or empty reply skips that chunk."""
    pairs = []
    for chunk in _sample([c for c in chunks if len(c.text) >= MIN_LENGTH], n, seed, "llm"):
        passage = chunk.indexed_text(embed_headings)
        try:
            reply = chat(
                [{"role": "system", "content": _QUESTION_PROMPT}, {"role": "user", "content": passage}]
            )
        except Exception as exc:
            log.warning("no synthetic question for %s: %s", chunk.path, exc)
            continue
        question = next((line.strip().strip("\"'") for line in reply.splitlines() if line.strip()), "")
        if len(question) >= 8:
            pairs.append(_pair(question, passage, chunk))
    return pairs


def llm_chat(settings: LLMSettings) -> Chat | None:
    """The configured LLM's chat call when it is an OpenAI-compatible server, else None (the
    model-free generators are used: a local 360M model writes worse questions than cloze)."""
    openai = settings.provider == "openai" or (settings.provider == "auto" and settings.openai_configured)
    if not openai:  # as `knowledge.engine.make_generator` resolves "auto"
        return None
    from knowledge.generate import OpenAIGenerator

    return OpenAIGenerator(settings).chat


def synthesize(corpus: Corpus, *, n: int, seed: int, chat: Chat | None = None) -> list[TrainingPair]:
    """Up to `n` synthetic pairs, before the consistency filter: LLM questions when `chat` is
    given, else heading paths (up to a third) and inverse cloze for the rest."""
    if n <= 0 or not corpus.chunks:
        return []
    if chat is not None:
        return llm_pairs(corpus.chunks, chat, n=n, seed=seed, embed_headings=corpus.embed_headings)
    headings = heading_pairs(corpus.chunks, n=n // 3, seed=seed)
    cloze = cloze_pairs(corpus.chunks, n=n - len(headings), seed=seed, embed_headings=corpus.embed_headings)
    return headings + cloze


# -- filters and negatives --------------------------------------------------------------------


def ranks(queries: Sequence[str], corpus: Corpus, encode: Encode) -> np.ndarray:
    """Cosine of every query to every chunk (queries x chunks)."""
    if not queries:
        return np.zeros((0, len(corpus.chunks)), dtype=np.float32)
    return np.asarray(encode(list(queries)) @ corpus.vectors.T)


def consistent(
    pairs: Sequence[TrainingPair], corpus: Corpus, encode: Encode, *, top: int = CONSISTENCY_TOP
) -> list[TrainingPair]:
    """The pairs whose chunk the current model ranks in its `top` for their query (Promptagator's
    round-trip filter). Pairs without a chunk id are kept as they are."""
    index = corpus.index_of()
    scored = [p for p in pairs if p.positive_id in index]
    sims = ranks([p.query for p in scored], corpus, encode)
    keep = {id(p) for p in pairs if p.positive_id not in index}
    for row, pair in zip(sims, scored, strict=True):
        own = row[index[pair.positive_id]]
        if int((row > own).sum()) < top:
            keep.add(id(pair))
    return [p for p in pairs if id(p) in keep]


def with_hard_negatives(
    pairs: Sequence[TrainingPair],
    corpus: Corpus,
    model: Any,
    *,
    margin: float = NEGATIVE_MARGIN,
    per_pair: int = 1,
) -> list[TrainingPair]:
    """Pairs without negatives get up to `per_pair` mined from the corpus by `model` (a
    SentenceTransformer, the one that gave the index its vectors): the closest chunks that are at
    most (1 - margin) as close as the positive, and not of the positive's own document. Pairs
    with negatives keep theirs."""
    from datasets import Dataset
    from sentence_transformers import mine_hard_negatives

    todo = [p for p in pairs if not p.negatives]
    if not todo or len(corpus.chunks) < 2:
        return list(pairs)
    texts = corpus.texts()
    # Candidates are the corpus and the other pairs' positives (the miner adds those): each by document.
    path_of = {t: c.path or c.doc_id for t, c in zip(texts, corpus.chunks, strict=True)}
    path_of.update({p.positive: p.path or p.positive_id for p in todo})
    indexed: Any = _IndexedModel(model, dict(zip(texts, corpus.vectors, strict=True)))  # duck-typed
    with contextlib.redirect_stderr(io.StringIO()):  # its encode bars are always on: noise under ours
        mined = mine_hard_negatives(
            Dataset.from_dict({"query": [p.query for p in todo], "positive": [p.positive for p in todo]}),
            indexed,
            corpus=texts,
            relative_margin=margin,
            num_negatives=per_pair + 4,  # some are dropped below: the positive's own document
            sampling_strategy="top",
            output_format="labeled-pair",
            batch_size=32,
            verbose=False,
        )
    found: dict[str, list[str]] = {}
    for row in mined:
        if not row["label"]:
            found.setdefault(row["query"], []).append(row["positive"])
    out = []
    for pair in pairs:
        if pair.negatives:
            out.append(pair)
            continue
        own = pair.path or pair.positive_id
        negatives = [t for t in found.get(pair.query, []) if path_of.get(t) != own and t != pair.positive]
        out.append(replace(pair, negatives=tuple(negatives[:per_pair])))
    return out


class _IndexedModel:
    """`model` for the miner, with the corpus vectors the index already holds: the same model
    gave them, so the whole corpus is not encoded again (on 11,815 chunks that took 200 s, a
    quarter of the loop). Texts the index lacks are encoded by the model itself."""

    def __init__(self, model: Any, known: dict[str, np.ndarray]) -> None:
        self._model = model
        self._known = known

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode_document(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        fresh = {}
        if missing:
            fresh = dict(zip(missing, self._model.encode_document(missing, **options), strict=True))
        rows = np.stack([self._known[t] if t in self._known else fresh[t] for t in texts]).astype(np.float32)
        normed: np.ndarray = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return normed


# -- imported pairs (`--pairs FILE`, `lore eval` format) --------------------------------------


def imported(
    questions: Sequence[Question], corpus: Corpus, encode: Encode
) -> tuple[list[TrainingPair], list[HeldOutQuestion]]:
    """Pairs from `lore eval`-format questions: for each source path, its chunk the current model
    finds closest to the question is the positive. Also each answerable question as a held-out
    question by paths. Not-in-corpus questions (no sources) give neither. The group is the
    question's sorted sources, so paraphrases of one question split together."""
    by_path: dict[str, list[int]] = {}
    for i, chunk in enumerate(corpus.chunks):
        by_path.setdefault(chunk.path, []).append(i)
    answerable = [q for q in questions if q.kind != NOT_IN_CORPUS and q.sources]
    sims = ranks([q.question for q in answerable], corpus, encode)
    pairs: list[TrainingPair] = []
    held: list[HeldOutQuestion] = []
    texts = corpus.texts()
    for row, q in zip(sims, answerable, strict=True):
        group = "imported:" + "|".join(sorted(q.sources))
        held.append(HeldOutQuestion(question=q.question, group=group, paths=frozenset(q.sources)))
        for path in q.sources:
            rows = by_path.get(path)
            if not rows:
                log.warning("imported question %s: %s is not in the index", q.id, path)
                continue
            best = max(rows, key=lambda i: row[i])
            chunk = corpus.chunks[best]
            pairs.append(
                TrainingPair(
                    query=q.question,
                    positive=texts[best],
                    kind="imported",
                    group=group,
                    positive_id=chunk.id,
                    path=chunk.path,
                )
            )
    return pairs, held


def load_imported(
    path: Path, corpus: Corpus, encode: Encode
) -> tuple[list[TrainingPair], list[HeldOutQuestion]]:
    """`imported` for a `lore eval`-format file."""
    from knowledge.evaluate import load_questions

    return imported(load_questions(path), corpus, encode)
