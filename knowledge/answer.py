"""The platform-neutral answer: what chat adapters render and the feedback log records."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

ABSTAIN_TEXT = "I couldn't find this in the docs"


class Citation(BaseModel):
    n: int
    title: str
    url: str
    source: str
    path: str
    doc_id: str
    updated_at: str = ""
    score: float


class RetrievedChunk(BaseModel):
    chunk_id: str
    doc_id: str
    source: str
    path: str
    title: str
    url: str
    heading: str = ""
    updated_at: str = ""
    text: str
    score: float
    doc_hash: str  # the document version this chunk came from
    n: int | None = None  # its citation number, when cited
    # `score` is the engine's ranking score: cosine (dense), BM25 (sparse) or RRF (hybrid).
    dense_score: float | None = None  # cosine similarity to the question, whatever the mode
    # A chunk the per-document cap left out of the answer, kept for the confidence only.
    confidence_only: bool = Field(default=False, exclude=True)
    # More of the best document for the answer to read, after the top-k (`context_chunks`).
    context_only: bool = Field(default=False, exclude=True)
    # Who may read it (knowledge/access.py); chunks recorded before permissions were public.
    access: list[str] = Field(default_factory=lambda: ["public"])


class Timings(BaseModel):
    retrieve_ms: float = 0.0
    generate_ms: float = 0.0
    total_ms: float = 0.0


class Turn(BaseModel):
    """One earlier message of the conversation, oldest first."""

    role: str  # "user" or "assistant"
    text: str


class Answer(BaseModel):
    answer_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    question: str
    text: str
    abstained: bool
    citations: list[Citation] = Field(default_factory=list)
    chunks: list[RetrievedChunk] = Field(default_factory=list)
    model: str
    prompt_version: str
    timings: Timings = Field(default_factory=Timings)
    notice: str | None = None  # e.g. "the language model was unreachable; showing passages instead"
    confidence: float | None = None  # what abstention compared with its thresholds
    # Salient words of the question that no indexed document mentions (knowledge/abstain.py).
    missing_terms: list[str] = Field(default_factory=list)
    # The grants the answer was filtered by (knowledge/access.py); empty = unfiltered (reviewers,
    # evals, admin tools).
    audience: list[str] = Field(default_factory=list)
    # Matches the asker could read that this answer's audience may not (a channel answer that
    # left out restricted passages): adapters offer "Answer privately" when it is above zero.
    withheld: int = 0
    # The generator's text as written, before citations were checked and renumbered: its [n]
    # are the prompt's source numbers (`knowledge.prompt.number_by_document` over `chunks`).
    # What `knowledge/answer_checks.py` measures citation validity on; not recorded.
    draft: str = Field(default="", exclude=True)
