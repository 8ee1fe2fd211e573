"""Chunk documents along their structure: Markdown headings first, then sentences to a token budget.

Chunk ids are derived from the document id and the chunk's position, so re-indexing the
same text yields the same ids: an interrupted sync that runs again overwrites rather than
duplicates.

A document keeps at most `max_chunks` chunks (`index.max_chunks_per_doc`), its first ones: one
huge file must not take over a sync. The text is split lazily, section by section and, in a
very long section, window by window, so the cut also stops the splitting: a 5 MB one-line file
is not split past what is kept. The sync reports each cut document (`truncated`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.node_parser import MarkdownNodeParser, NodeParser, SentenceSplitter
from llama_index.core.node_parser.node_utils import build_nodes_from_splits
from llama_index.core.schema import BaseNode, Document, MetadataMode, TextNode

from knowledge.sources.base import HIDDEN_METADATA

_CHUNK_NS = uuid.UUID("5b0f8b0e-3c1e-4d2a-9a51-6c1f1b2f0a10")
# A section longer than this is split a window at a time (cut at a paragraph, line or word
# break), so that a chunk cap stops the work early. Ordinary sections are one window.
_WINDOW_CHARS = 200_000


def chunk_id(doc_id: str, index: int) -> str:
    return str(uuid.uuid5(_CHUNK_NS, f"{doc_id}#{index}"))


class StructuredChunker(NodeParser):
    chunk_size: int = Field(default=200, description="tokens of the embedding model")
    chunk_overlap: int = Field(default=30)
    embed_headings: bool = Field(default=True, description="prefix embedded text with title and heading path")
    max_chunks: int | None = Field(default=None, ge=1, description="chunks kept per document; None = all")
    _tokenizer: Callable[[str], Sequence[Any]] | None = PrivateAttr(default=None)
    _prepared: dict[tuple[str, str], list[TextNode]] = PrivateAttr(default_factory=dict)
    _truncated: dict[str, int] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, *, tokenizer: Callable[[str], Sequence[Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(include_metadata=True, include_prev_next_rel=False, **kwargs)
        self._tokenizer = tokenizer

    def _splitter(self) -> SentenceSplitter:
        return SentenceSplitter(
            chunk_size=self.chunk_size,
            chunk_overlap=min(self.chunk_overlap, self.chunk_size // 2),
            tokenizer=self._tokenizer,
        )

    def prepare(self, doc: BaseNode) -> None:
        """Chunk `doc` now (e.g. on a read-ahead thread); the pipeline's call then takes the result."""
        self._prepared[(doc.id_, doc.hash)] = self._chunk_document(doc, self._splitter())

    def forget_prepared(self) -> None:
        self._prepared.clear()
        with self._lock:
            self._truncated.clear()

    def truncated(self, doc_id: str) -> int | None:
        """How many chunks `doc_id` was cut to when it was last chunked, if it was (then forgotten)."""
        with self._lock:  # chunking may run on the sync's read-ahead thread
            return self._truncated.pop(doc_id, None)

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        splitter: SentenceSplitter | None = None
        out: list[BaseNode] = []
        for doc in nodes:
            ready = self._prepared.pop((doc.id_, doc.hash), None)
            if ready is None:
                splitter = splitter or self._splitter()
                ready = self._chunk_document(doc, splitter)
            out.extend(ready)
        return out

    def _chunk_document(self, doc: BaseNode, splitter: SentenceSplitter) -> list[TextNode]:
        title = str(doc.metadata.get("title", ""))
        limit = self.max_chunks
        pieces = list(islice(_pieces(doc, splitter), None if limit is None else limit + 1))
        if limit is not None and len(pieces) > limit:
            pieces = pieces[:limit]
            with self._lock:
                self._truncated[doc.id_] = limit
        headings = [heading for heading, _text in pieces]
        texts = [text for _heading, text in pieces]
        assert isinstance(doc, Document | TextNode)
        doc_id = doc.id_
        chunks = build_nodes_from_splits(texts, doc, id_func=lambda i, _d: chunk_id(doc_id, i))
        hidden = [*HIDDEN_METADATA, "is_markdown", "chunk"]
        if not self.embed_headings:
            hidden += ["title", "heading"]
        for i, (node, heading) in enumerate(zip(chunks, headings, strict=True)):
            node.metadata = {**doc.metadata, "heading": heading or title, "chunk": i}
            node.excluded_embed_metadata_keys = hidden
            node.excluded_llm_metadata_keys = list(node.metadata)  # the prompt formats sources itself
        return list(chunks)


def _pieces(doc: BaseNode, splitter: SentenceSplitter) -> Iterator[tuple[str, str]]:
    """(heading path, chunk text) in document order, split only as far as they are consumed."""
    for heading, section in _sections(doc):
        for window in _windows(section):
            for piece in splitter.split_text(window):
                if piece.strip():
                    yield heading, piece


def _windows(text: str, size: int = _WINDOW_CHARS) -> Iterator[str]:
    """`text` in pieces of at most `size` characters, each cut at the last paragraph break in
    its second half, else the last line break, else the last space (else anywhere)."""
    start = 0
    while len(text) - start > size:
        end = start + size
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, start + size // 2, end)
            if cut > start:
                break
        else:
            cut = end
        yield text[start:cut]
        start = cut
    yield text[start:]


def _sections(doc: BaseNode) -> list[tuple[str, str]]:
    """(heading path, text) pairs. Non-Markdown text is one untitled section."""
    text = doc.get_content(metadata_mode=MetadataMode.NONE)
    if not doc.metadata.get("is_markdown"):
        return [("", text)]
    parser = MarkdownNodeParser(include_metadata=True, header_path_separator="\x1f")
    sections = []
    for node in parser.get_nodes_from_node(Document(text=text)):
        body = node.get_content(metadata_mode=MetadataMode.NONE)
        parents = [p for p in str(node.metadata.get("header_path", "")).split("\x1f") if p]
        first = body.lstrip().splitlines()[0] if body.strip() else ""
        own = first.lstrip("#").strip() if first.startswith("#") else ""
        if own and not body.strip().partition("\n")[2].strip():
            continue  # a heading straight above a subheading: it lives on in their heading paths
        path = " > ".join([*parents, own] if own else parents)
        sections.append((path, body))
    return sections or [("", text)]
