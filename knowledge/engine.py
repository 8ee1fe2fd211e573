"""The answer engine: a LlamaIndex query engine over the Qdrant index that cites and abstains."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import ConfigDict
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, NodeWithScore
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

from config.settings import Settings
from knowledge.answer import ABSTAIN_TEXT, Answer, Citation, RetrievedChunk, Timings, Turn
from knowledge.embeddings import Embedder
from knowledge.generate import (
    ExtractiveGenerator,
    Generator,
    LLMUnavailable,
    LocalGenerator,
    OpenAIGenerator,
    local_available,
)
from knowledge.prompt import PROMPT_VERSION
from knowledge.query import normalize_question, retrieval_query
from knowledge.store import IndexStore

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def make_generator(settings: Settings, embedder: Embedder) -> Generator:
    provider = settings.llm.provider
    if provider == "auto":
        provider = (
            "openai" if settings.llm.openai_configured else "local" if local_available() else "extractive"
        )
    if provider == "openai":
        return OpenAIGenerator(settings.llm)
    if provider == "local":
        return LocalGenerator(settings.llm)
    return ExtractiveGenerator(embedder.model)


class AnswerEngine(CustomQueryEngine):
    """`answer()` is the full path Lore uses; `query()` works too, as for any LlamaIndex engine."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Any
    store: Any
    embedder: Any
    generator: Any
    fallback: Any = None

    @classmethod
    def build(
        cls, settings: Settings, store: IndexStore, embedder: Embedder, generator: Generator | None = None
    ) -> AnswerEngine:
        gen = generator or make_generator(settings, embedder)
        fallback = ExtractiveGenerator(embedder.model) if settings.llm.fallback_to_extractive else None
        return cls(settings=settings, store=store, embedder=embedder, generator=gen, fallback=fallback)

    def custom_query(self, query_str: str) -> Response:
        answer = self.answer(query_str)
        return Response(response=answer.text, metadata={"answer": answer.model_dump()})

    # -- retrieval -------------------------------------------------------------

    def retriever(self, top_k: int, source: str | None = None) -> BaseRetriever:
        index = VectorStoreIndex.from_vector_store(self.store.vector_store(), embed_model=self.embedder.model)
        filters = MetadataFilters(filters=[MetadataFilter(key="source", value=source)]) if source else None
        return index.as_retriever(similarity_top_k=top_k, filters=filters)

    def search(
        self, query: str, *, top_k: int | None = None, source: str | None = None
    ) -> list[RetrievedChunk]:
        if not self.store.client.collection_exists(self.store.collection):
            return []
        self.store.check_model(self.embedder.identity)
        nodes = self.retriever(top_k or self.settings.retrieval.top_k, source).retrieve(query)
        return [_to_chunk(n) for n in nodes]

    # -- answering -------------------------------------------------------------

    def answer(
        self,
        question: str,
        history: Sequence[Turn] = (),
        *,
        source: str | None = None,
        top_k: int | None = None,
    ) -> Answer:
        started = time.perf_counter()
        history = list(history)
        clean = normalize_question(question) or question.strip()
        chunks = self.search(retrieval_query(clean, history), source=source, top_k=top_k)
        retrieved = time.perf_counter()
        _number_by_document(chunks)
        top = chunks[0].score if chunks else 0.0
        notice = None
        model = self.generator.name
        if not chunks or top < self.settings.retrieval.abstain_below:
            text = f"{ABSTAIN_TEXT}." if chunks else f"{ABSTAIN_TEXT}: nothing has been indexed yet."
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
        )


def _to_chunk(hit: NodeWithScore) -> RetrievedChunk:
    meta = hit.node.metadata
    return RetrievedChunk(
        chunk_id=hit.node.node_id,
        doc_id=str(meta.get("doc_id", hit.node.ref_doc_id or "")),
        source=str(meta.get("source", "")),
        path=str(meta.get("path", "")),
        title=str(meta.get("title", "")),
        url=str(meta.get("url", "")),
        heading=str(meta.get("heading", "")),
        updated_at=str(meta.get("updated_at", "")),
        text=hit.node.get_content(metadata_mode=MetadataMode.NONE),
        score=round(float(hit.score or 0.0), 4),
        doc_hash=str(meta.get("content_hash", "")),
    )


def _number_by_document(chunks: list[RetrievedChunk]) -> None:
    """Chunks of the same document share one source number, in order of best score."""
    numbers: dict[str, int] = {}
    for c in chunks:
        c.n = numbers.setdefault(c.doc_id, len(numbers) + 1)


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
