"""What every source loader yields: documents with stable ids, or skips with reasons."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from llama_index.core import Document

# Metadata that describes the document but should not change what gets embedded or shown.
HIDDEN_METADATA = ["doc_id", "source", "path", "url", "updated_at", "content_hash", "source_type"]


class SourceUnavailable(Exception):
    """The whole source could not be listed: nothing is changed in the index for it.

    `transient` errors (network, 5xx, timeouts) are worth retrying; the others
    (missing folder, bad config) are not.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    # Set when the failure may be passing (a 503 page): keep what the index already has.
    doc_id: str | None = None


class Loader(Protocol):
    def estimate(self) -> int | None:
        """How many items `load` will yield, if known (for progress); may do the listing."""

    def load(self) -> Iterator[Document | Skipped]: ...


def make_document(
    *,
    source: str,
    source_type: str,
    doc_id: str,
    path: str,
    text: str,
    title: str,
    url: str | None,
    updated_at: datetime | None,
    is_markdown: bool,
) -> Document:
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    doc = Document(
        id_=doc_id,
        text=text,
        metadata={
            "doc_id": doc_id,
            "source": source,
            "source_type": source_type,
            "path": path,
            "title": title,
            "url": url or "",
            "updated_at": updated_at.isoformat(timespec="seconds") if updated_at else "",
            "content_hash": content_hash,
            "is_markdown": is_markdown,
        },
    )
    return doc
