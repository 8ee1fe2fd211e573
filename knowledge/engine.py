"""The answer engine: a LlamaIndex query engine over the index that cites and abstains.

Retrieval is hybrid by default: the dense (MiniLM) and BM25 sparse results of the question,
fused by reciprocal rank (`knowledge.vector_store.rrf`). The question is first normalised (mentions,
greetings), given the thread's context when it is a follow-up, and expanded with the
corpus's own abbreviations. Lore abstains when its confidence in the best passage is low, or
when the question names something the corpus never mentions and confidence isn't high
(`knowledge/abstain.py`; thresholds calibrated per corpus by `knowledge/calibrate.py`).

Permissions (`knowledge/access.py`): a question may be asked for an `Audience`. Then only chunks
it may read are searched (a filter inside the engine, in both the dense and the sparse search),
and nothing else the answer depends on comes from the others: the abbreviations that expand the
question, the term statistics behind abstention's "missing terms". With `wider` (the asker's own
audience, for a channel answer) the answer counts the matches it had to leave out (`withheld`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.indices.vector_store.retrievers import VectorIndexRetriever
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

from config.settings import Settings
from knowledge.abstain import (
    DEFAULT_THRESHOLDS,
    Decision,
    TermSignal,
    TermStats,
    Thresholds,
    anything_about,
    decide,
    one_token,
    thresholds_for,
)
from knowledge.access import ACCESS_KEY, Audience
from knowledge.answer import ABSTAIN_TEXT, Answer, Citation, RetrievedChunk, Timings, Turn
from knowledge.answer_checks import AnswerChecker, prompt_sources
from knowledge.attachments import attachment_chunks
from knowledge.embeddings import Embedder
from knowledge.generate import (
    ExtractiveGenerator,
    Generator,
    LLMUnavailable,
    LocalGenerator,
    OpenAIGenerator,
    effective_provider,
    sentences,
)
from knowledge.prompt import PROMPT_VERSION, number_by_document
from knowledge.query import prompt_question, retrieval_query
from knowledge.store import IndexStore
from knowledge.vector_store import Ranked
from knowledge.vocabulary import Vocabulary

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_QUERY_MODES = {
    "dense": VectorStoreQueryMode.DEFAULT,
    "sparse": VectorStoreQueryMode.SPARSE,
    "hybrid": VectorStoreQueryMode.HYBRID,
}
_VOCABULARY_TTL = 60.0  # seconds; a sync in this process refreshes it at once
CONFIDENCE_CHUNKS = 3  # the top chunks (and their sentences) that confidence looks at
_SENTENCE_CACHE = 2048  # chunks whose sentence vectors are kept (a few MB)
_AUDIENCE_CACHE = 64  # audiences whose vocabulary and chunk counts are kept


@dataclass
class Retrieval:
    query: str  # what was searched: normalised, with follow-up context and abbreviations
    chunks: list[RetrievedChunk]
    confidence: float
    signal: TermSignal | None = None  # the question's salient terms and whether the corpus has them
    thresholds: Thresholds = DEFAULT_THRESHOLDS

    def decide(self) -> Decision:
        return decide(self.confidence, self.signal, self.thresholds)


def make_generator(settings: Settings, embedder: Embedder) -> Generator:
    provider = effective_provider(settings.llm)
    if provider == "openai":
        return OpenAIGenerator(settings.llm)
    if provider == "local":
        return LocalGenerator(settings.llm)
    return ExtractiveGenerator(embedder.model)


class CitingQueryEngine(CustomQueryEngine):
    """`answer()` is the full path Lore uses; `query()` works too, as for any LlamaIndex engine."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Any
    store: Any
    embedder: Any
    generator: Any
    fallback: Any = None
    index_cache: Any = None
    vocabulary_cache: Any = None
    calibration_cache: Any = None
    checker_cache: Any = None
    sentence_cache: Any = Field(default_factory=OrderedDict)
    sentence_lock: Any = Field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls, settings: Settings, store: IndexStore, embedder: Embedder, generator: Generator | None = None
    ) -> CitingQueryEngine:
        gen = generator or make_generator(settings, embedder)
        fallback = ExtractiveGenerator(embedder.model) if settings.llm.fallback_to_extractive else None
        return cls(settings=settings, store=store, embedder=embedder, generator=gen, fallback=fallback)

    def custom_query(self, query_str: str) -> Response:
        answer = self.answer(query_str)
        return Response(response=answer.text, metadata={"answer": answer.model_dump()})

    # -- retrieval -------------------------------------------------------------

    def _index(self) -> VectorStoreIndex:
        if self.index_cache is None:
            self.index_cache = VectorStoreIndex.from_vector_store(
                self.store.vector_store(), embed_model=self.embedder.query_model
            )
        return self.index_cache  # type: ignore[no-any-return]

    def retriever(
        self,
        top_k: int,
        source: str | None = None,
        mode: str | None = None,
        *,
        audience: Audience | None = None,
        sources: Collection[str] | None = None,
    ) -> BaseRetriever:
        """A LlamaIndex retriever over the index; `audience` and `sources` filter inside the engine."""
        filters = _filters(source, audience, sources)
        return VectorIndexRetriever(
            self._index(),
            similarity_top_k=top_k,
            filters=MetadataFilters(filters=filters) if filters else None,
            vector_store_query_mode=_QUERY_MODES[mode or self.settings.retrieval.mode],
        )

    def vocabulary(self, audience: Audience | None = None) -> Vocabulary:
        """The abbreviations the indexed documents define, for query expansion; with an
        audience, only those of documents it may read."""
        cached = self.vocabulary_cache
        if cached is None or time.monotonic() - cached[0] >= _VOCABULARY_TTL:
            per_document: dict[str, dict[str, str]] = {}
            access: dict[str, list[str]] = {}
            for src in self.settings.sources:
                per_document.update((self.store.get_state("vocabulary", src.name) or {}).get("docs", {}))
                access.update((self.store.get_state("access", src.name) or {}).get("docs", {}))
            cached = (time.monotonic(), per_document, access, OrderedDict())
            self.vocabulary_cache = cached
        _when, per_document, access, built = cached
        key = audience.key if audience is not None else ""
        with self.sentence_lock:
            vocabulary = built.get(key)
            if vocabulary is not None:
                built.move_to_end(key)
                return vocabulary  # type: ignore[no-any-return]
        pairs = [
            found
            for doc_id, found in per_document.items()
            if audience is None or audience.can_read(access.get(doc_id, ()))
        ]
        sparse = self.store.sparse
        vocabulary = Vocabulary(pairs, is_stopword=lambda word: not sparse.terms(word))
        with self.sentence_lock:
            built[key] = vocabulary
            while len(built) > _AUDIENCE_CACHE:
                built.popitem(last=False)
        return vocabulary

    def refresh(self) -> None:
        """Forget cached state that a sync may have changed."""
        self.vocabulary_cache = None
        self.calibration_cache = None

    def _calibrations(self) -> tuple[dict[str, dict[str, Any]], dict[Any, int]]:
        """Each source's calibrated thresholds, and chunk counts by (source or None, audience
        key or None, sources or None); (None, None, None): the whole index."""
        cached = self.calibration_cache
        if cached is not None and time.monotonic() - cached[0] < _VOCABULARY_TTL:
            return cached[1], cached[2]  # type: ignore[no-any-return]
        calibrated = {}
        for src in self.settings.sources:
            state = self.store.get_state("calibration", src.name)
            if state and "floor" in state and "named" in state:
                calibrated[src.name] = state
        counts: dict[Any, int] = {(None, None, None): self.store.count_chunks()}
        self.calibration_cache = (time.monotonic(), calibrated, counts)
        return calibrated, counts

    def thresholds(self, source: str | None) -> Thresholds:
        """The abstention thresholds for a question answered from `source`."""
        retrieval = self.settings.retrieval
        calibrated = self._calibrations()[0].get(source or "")
        return thresholds_for(
            retrieval.abstain_below,
            retrieval.abstain_if_missing_below,
            calibrated,
            retrieval.abstain_calibrated,
        )

    def term_signal(
        self,
        question: str,
        chunks: Sequence[RetrievedChunk],
        source: str | None,
        *,
        audience: Audience | None = None,
        sources: Collection[str] | None = None,
    ) -> TermSignal:
        """The question's salient terms in the part of the index the audience may read: a word
        only restricted chunks use counts as missing, as if they weren't indexed."""
        counts = self._calibrations()[1]
        grants = sorted(audience.grants) if audience is not None else None
        scope = sorted(sources) if sources is not None else None
        key = (
            source,
            audience.key if audience is not None else None,
            tuple(scope) if scope is not None else None,
        )
        if key not in counts:
            where: dict[str, str | list[str]] = {"source": source} if source else {}
            if scope is not None:
                where = {**where, "source": [s for s in scope if not source or s == source]}
            counts[key] = self.store.backend.count(where or None, access=grants)
        stats = TermStats(self.store.backend, self.store.sparse, one_token(self.embedder.tokenizer))
        return stats.signal(
            question,
            [c.text for c in chunks],
            source=source,
            chunks=counts[key],
            access=grants,
            sources=scope,
        )

    def search(
        self,
        query: str,
        *,
        top_k: int | None = None,
        source: str | None = None,
        mode: str | None = None,
        audience: Audience | None = None,
        sources: Collection[str] | None = None,
    ) -> list[RetrievedChunk]:
        """The top chunks for `query` (abbreviations expanded), best first."""
        found = self._retrieve(query, top_k, source, mode, audience=audience, sources=sources)[2]
        return [c for c in self._split(found)[0] if not c.context_only]

    def lookup(
        self,
        query: str,
        *,
        top_k: int | None = None,
        source: str | None = None,
        mode: str | None = None,
        audience: Audience | None = None,
        sources: Collection[str] | None = None,
    ) -> Retrieval:
        """`search`, plus the confidence that abstention compares with the threshold."""
        expanded, vector, found = self._retrieve(
            query, top_k, source, mode, audience=audience, sources=sources
        )
        if vector is None:
            return Retrieval(query=query, chunks=[], confidence=0.0)
        chunks, best = self._split(found)
        # The question as asked (not expanded: an expansion comes from the corpus), against the
        # chunks an answer would see; the confidence also sees the best chunks the cap dropped.
        signal = (
            self.term_signal(query, chunks[:CONFIDENCE_CHUNKS], source, audience=audience, sources=sources)
            if chunks
            else None
        )
        return Retrieval(
            query=expanded,
            chunks=chunks,
            confidence=self.confidence(vector, best),
            signal=signal,
            thresholds=self.thresholds(source or (chunks[0].source if chunks else None)),
        )

    def _retrieve(
        self,
        query: str,
        top_k: int | None,
        source: str | None,
        mode: str | None,
        *,
        audience: Audience | None = None,
        sources: Collection[str] | None = None,
    ) -> tuple[str, list[float] | None, list[RetrievedChunk]]:
        if not self.store.ready_for(self.embedder.identity):
            return query, None, []
        expanded = self.vocabulary(audience).expand(query)
        vector = self.embedder.embed_query(expanded)
        # What `retriever(...).retrieve()` returns, without LlamaIndex's retriever around it: its
        # instrumentation spans and node models cost more than the rest of the Python (issue 19).
        filters = _filters(source, audience, sources)
        found = self.store.vector_store().rank(
            VectorStoreQuery(
                query_embedding=vector,
                query_str=expanded,
                similarity_top_k=top_k or self.settings.retrieval.top_k,
                mode=_QUERY_MODES[mode or self.settings.retrieval.mode],
                filters=MetadataFilters(filters=filters) if filters else None,
            )
        )
        return expanded, vector, [_to_chunk(r) for r in found]

    def withheld(
        self,
        query: str,
        audience: Audience,
        wider: Audience,
        *,
        top_k: int | None = None,
        source: str | None = None,
        sources: Collection[str] | None = None,
    ) -> int:
        """How many chunks of `wider`'s top-k for `query` `audience` may not read, counting only
        matches: chunks at least as close to the question as the abstention floor. (In a small
        corpus, restricted chunks about something else still fill the top k; an answer that left
        only those out left nothing out.)"""
        if wider.grants == audience.grants or wider.grants <= audience.grants:
            return 0
        _, vector, found = self._retrieve(query, top_k, source, None, audience=wider, sources=sources)
        unreadable = [
            c for c in found if not (c.confidence_only or c.context_only) and not audience.can_read(c.access)
        ]
        if not unreadable:
            return 0
        floor = self.thresholds(source).floor
        question = np.asarray(vector, dtype=np.float32)
        return sum(
            1
            for c in unreadable
            if (c.dense_score if c.dense_score is not None else _cosine(question, self._embed([c.text])[0]))
            >= floor
        )

    def _split(self, chunks: list[RetrievedChunk]) -> tuple[list[RetrievedChunk], list[RetrievedChunk]]:
        """(the chunks to answer from, the best chunks before the per-document cap)."""
        answer = [c for c in chunks if not c.confidence_only]
        return answer, sorted(chunks, key=lambda c: -c.score)[:CONFIDENCE_CHUNKS]

    def confidence(self, query_vector: Sequence[float], chunks: Sequence[RetrievedChunk]) -> float:
        """How well the best passages match the question: the highest cosine similarity between
        the question and one of the top three chunks, or one sentence of them.

        Fused (RRF) scores say which chunk is best, not whether it answers, so abstention
        doesn't use them; and an answer often sits in one sentence of a longer chunk.
        """
        top = list(chunks[:CONFIDENCE_CHUNKS])
        if not top:
            return 0.0
        query = np.asarray(query_vector, dtype=np.float32)
        best = max(
            c.dense_score if c.dense_score is not None else _cosine(query, self._embed([c.text])[0])
            for c in top
        )
        vectors = self._sentence_vectors(top)
        if len(vectors):
            best = max(best, float(max(_cosine(query, v) for v in vectors)))
        return best

    def _sentence_vectors(self, chunks: Sequence[RetrievedChunk]) -> np.ndarray:
        """The chunks' sentences embedded, remembered per chunk version: the same chunks come up
        again and again (follow-ups, popular pages, calibration), and this is most of the cost
        of a question."""
        cache: OrderedDict[tuple[str, str], np.ndarray] = self.sentence_cache
        keys = [(c.chunk_id, c.doc_hash) for c in chunks]
        with self.sentence_lock:
            todo = [(k, c) for k, c in zip(keys, chunks, strict=True) if k not in cache]
        groups = [sentences(c.text) for _k, c in todo]
        flat = [s for group in groups for s in group]
        embedded = self._embed(flat) if flat else np.zeros((0, 0), dtype=np.float32)
        with self.sentence_lock:
            start = 0
            for (key, _c), group in zip(todo, groups, strict=True):
                cache[key] = embedded[start : start + len(group)]
                start += len(group)
            parts = []
            for key in keys:
                cache.move_to_end(key)
                if len(cache[key]):
                    parts.append(cache[key])
            while len(cache) > _SENTENCE_CACHE:
                cache.popitem(last=False)
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedder.query_model.get_text_embedding_batch(texts), dtype=np.float32)

    # -- answering -------------------------------------------------------------

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        source: str | None = None,
        top_k: int | None = None,
        audience: Audience | None = None,
        wider: Audience | None = None,
        sources: Sequence[str] | None = None,
        attachments: Sequence[Mapping[str, str]] = (),
    ) -> Answer:
        """Answer `question` (a follow-up of `history`) from the chunks `audience` may read (None:
        every chunk) of `sources` (None: every source); `wider` (the asker's own audience, for a
        channel answer) only counts what was left out, in `Answer.withheld`. `attachments`
        ({name, text, url}: files that came with the question) add their best passages for this
        answer only (`knowledge/attachments.py`); they are never indexed."""
        started = time.perf_counter()
        history = list(history)
        clean = prompt_question(question)
        query = retrieval_query(clean, history)
        found = self.lookup(query, source=source, top_k=top_k, audience=audience, sources=sources)
        chunks, confidence = found.chunks, found.confidence
        if not getattr(self.generator, "reads_more_of_the_page", False):
            # More of the best page (`retrieval.context_chunks`) helps the extractive picker; in a
            # language model's prompt it cost the local model facts (BENCHMARKS.md, "Answer
            # model"), so a model is given the top-k only, and the record holds what it saw.
            chunks = [c for c in chunks if not c.context_only]
        decision = found.decide()
        if attachments:
            extra, best = attachment_chunks(clean, attachments, self._embed)
            chunks = extra + chunks  # what the asker handed over comes first
            confidence = max(confidence, best)
            if decision.abstain and best >= found.thresholds.floor:
                decision = Decision(False, (), found.thresholds)
        withheld = 0
        if audience is not None and wider is not None:
            withheld = self.withheld(query, audience, wider, top_k=top_k, source=source, sources=sources)
        retrieved = time.perf_counter()
        number_by_document(chunks)  # the numbers the prompt shows and the answer cites
        notice = None
        model = self.generator.name
        if not chunks or decision.abstain:
            text = abstain_text(decision) if chunks else f"{ABSTAIN_TEXT}: nothing has been indexed yet."
            abstained = True
        else:
            try:
                text = self.generator.generate(clean, chunks, history)
            except LLMUnavailable as exc:
                if self.fallback is None:
                    raise
                log.warning("LLM failed (%s); answering extractively", exc)
                notice = f"{exc}; showing the most relevant passages instead."
                model = f"{self.fallback.name} (fallback)"
                text = self.fallback.generate(clean, chunks, history)
            abstained = ABSTAIN_TEXT.lower() in text.lower()
        draft = "" if abstained else text
        if not abstained and self.settings.answers.drop_unsupported:
            text, kept = self.checker().drop_unsupported(text, prompt_sources(chunks))
            if not kept:  # nothing the sources support is left
                text, abstained = f"{ABSTAIN_TEXT}.", True
        finished = time.perf_counter()
        citations: list[Citation] = []
        if not abstained:
            text, citations = _cite(text, chunks)
        return Answer(
            question=question,
            text=text,
            abstained=abstained,
            citations=citations,
            chunks=chunks,
            model=model,
            prompt_version=PROMPT_VERSION,
            timings=Timings(
                retrieve_ms=round((retrieved - started) * 1000, 1),
                generate_ms=round((finished - retrieved) * 1000, 1),
                total_ms=round((finished - started) * 1000, 1),
            ),
            notice=notice,
            confidence=round(confidence, 4),
            missing_terms=list(found.signal.missing) if found.signal else [],
            audience=sorted(audience.grants) if audience is not None else [],
            withheld=withheld,
            draft=draft,
        )

    def checker(self) -> AnswerChecker:
        """The answer checks (`knowledge/answer_checks.py`) with this engine's embedding model."""
        with self.sentence_lock:
            if self.checker_cache is None:
                self.checker_cache = AnswerChecker(
                    self.embedder.query_model, self.settings.answers.support_threshold
                )
            return self.checker_cache  # type: ignore[no-any-return]


def _filters(
    source: str | None, audience: Audience | None, sources: Collection[str] | None
) -> list[MetadataFilter | MetadataFilters]:
    filters: list[MetadataFilter | MetadataFilters] = []
    if source:
        filters.append(MetadataFilter(key="source", value=source))
    if audience is not None:
        filters.append(
            MetadataFilter(key=ACCESS_KEY, value=sorted(audience.grants), operator=FilterOperator.IN)
        )
    if sources is not None:
        filters.append(MetadataFilter(key="source", value=sorted(sources), operator=FilterOperator.IN))
    return filters


def abstain_text(decision: Decision) -> str:
    """Say what is missing when the question named it: "I couldn't find anything about Terraform
    in the docs." Otherwise the plain abstention, which adapters and the prompt share."""
    if decision.missing:
        return f"I couldn't find anything about {anything_about(decision.missing)} in the docs."
    return f"{ABSTAIN_TEXT}."


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _to_chunk(found: Ranked) -> RetrievedChunk:
    hit, meta = found.hit, found.hit.payload
    return RetrievedChunk(
        chunk_id=hit.id,
        doc_id=str(meta.get("doc_id", "")),
        source=str(meta.get("source", "")),
        path=str(meta.get("path", "")),
        title=str(meta.get("title", "")),
        url=str(meta.get("url", "")),
        heading=str(meta.get("heading", "")),
        updated_at=str(meta.get("updated_at", "")),
        text=str(meta.get("text", "")),
        score=round(float(hit.score or 0.0), 4),
        doc_hash=str(meta.get("content_hash", "")),
        dense_score=round(found.cosine, 4) if found.cosine is not None else None,
        confidence_only=found.confidence_only,
        context_only=found.context_only,
        # A chunk indexed before access labels (only an unfiltered search finds one) is readable
        # by nobody until the next sync labels it: fail closed.
        access=[str(a) for a in meta.get(ACCESS_KEY) or []],
    )


def _cite(text: str, chunks: list[RetrievedChunk]) -> tuple[str, list[Citation]]:
    """Keep markers that name a real source, renumber them 1..k in order of first use."""
    by_n = {c.n: c for c in reversed(chunks) if c.n is not None}  # best-scoring chunk per document
    renumber: dict[int, int] = {}

    def replace(match: re.Match[str]) -> str:
        kept = []
        for raw in match.group(1).split(","):
            n = int(raw)
            if n in by_n:
                kept.append(renumber.setdefault(n, len(renumber) + 1))
        return "".join(f"[{k}]" for k in dict.fromkeys(kept))

    text = _MARKER.sub(replace, text)
    if not renumber:  # the model cited nothing: list what it was given, in order
        renumber = {n: n for n in sorted(by_n)}
    for chunk in chunks:
        chunk.n = renumber.get(chunk.n) if chunk.n is not None else None
    citations = []
    for old, new in sorted(renumber.items(), key=lambda kv: kv[1]):
        c = by_n[old]
        citations.append(
            Citation(
                n=new,
                title=c.title,
                url=c.url,
                source=c.source,
                path=c.path,
                doc_id=c.doc_id,
                updated_at=c.updated_at,
                score=c.score,
            )
        )
    return re.sub(r"[ \t]+\n", "\n", text).strip(), citations
