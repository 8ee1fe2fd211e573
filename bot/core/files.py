"""Files that come with a question: text files and PDFs are read as extra context for that one
question (never indexed, never kept beyond the answer's record); anything else is named in the
reply as not read, rather than silently ignored.

The adapter's `FileFetcher` downloads with the platform's credentials (Slack: url_private with
the bot token; Discord: the attachment's CDN url) and stops at `chat.attachment_max_bytes`.
PDF text comes from pypdf, off the event loop. Every problem (too big, not a kind Lore reads, a
failed download, no text inside) becomes one short sentence for the reply; none is an error.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, Protocol

from bot.core.messages import Attachment

log = logging.getLogger(__name__)

Kind = Literal["text", "pdf", "image"]
TEXT_SUFFIXES = frozenset(
    [
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".log",
        ".csv",
        ".tsv",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".xml",
        ".html",
        ".htm",
        ".py",
        ".js",
        ".ts",
        ".sh",
        ".sql",
        ".go",
        ".java",
        ".rb",
        ".rs",
        ".c",
        ".h",
        ".cpp",
        ".env",
        ".properties",
    ]
)
IMAGE_SUFFIXES = frozenset(
    [".png", ".jpg", ".jpeg", ".gif", ".webp", ".heic", ".bmp", ".tif", ".tiff", ".svg"]
)
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml", "application/yaml")
MAX_TEXT_CHARS = 200_000  # of one file's text, whatever its size in bytes
NAME_CHARS = 80


class FileTooLarge(Exception):
    """The download went past the size limit (the payload's size can be missing or wrong)."""


async def read_limited(chunks: AsyncIterator[bytes], name: str, max_bytes: int) -> bytes:
    """A download's bytes, stopped as soon as it passes `max_bytes` (`FileTooLarge`)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > max_bytes:
            raise FileTooLarge(name)
    return bytes(data)


class FileFetcher(Protocol):
    async def fetch(self, file: Attachment, max_bytes: int) -> bytes:
        """The file's bytes; `FileTooLarge` past `max_bytes`; any other exception: not downloaded."""
        ...


@dataclass(frozen=True)
class FileText:
    name: str
    text: str
    url: str

    def as_dict(self) -> dict[str, str]:
        """As the answer engine takes it (`CitingQueryEngine.answer(attachments=…)`), JSON-safe."""
        return {"name": self.name, "text": self.text, "url": self.url}


def kind_of(file: Attachment) -> Kind | None:
    suffix = PurePosixPath(file.name.lower()).suffix
    mime = file.mimetype.lower()
    if mime.startswith("image/") or suffix in IMAGE_SUFFIXES:
        return "image"
    if mime == "application/pdf" or suffix == ".pdf":
        return "pdf"
    if mime.startswith(TEXT_TYPES) or suffix in TEXT_SUFFIXES:
        return "text"
    return None


def shown_name(file: Attachment) -> str:
    name = " ".join(file.name.split()) or "the attachment"
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def size_text(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{max(1, round(n / 1000))} KB"


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()


def decode_text(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").strip()


async def read_files(
    files: Sequence[Attachment], fetcher: FileFetcher | None, max_bytes: int
) -> tuple[list[FileText], list[str]]:
    """(the files' texts, a short sentence for each file Lore did not use)."""
    texts: list[FileText] = []
    problems: list[str] = []
    for file in files:
        name = shown_name(file)
        kind = kind_of(file)
        if kind == "image":
            problems.append(f"I can't read images, so I didn't look at {name}.")
            continue
        if kind is None:
            problems.append(f"I can only read text files and PDFs, so I left {name} out.")
            continue
        if file.size > max_bytes:
            problems.append(
                f"{name} ({size_text(file.size)}) is over the {size_text(max_bytes)} I read, "
                "so I left it out."
            )
            continue
        if fetcher is None or not file.url:
            problems.append(f"I couldn't download {name}, so I answered without it.")
            continue
        try:
            data = await fetcher.fetch(file, max_bytes)
        except FileTooLarge:
            problems.append(f"{name} is over the {size_text(max_bytes)} I read, so I left it out.")
            continue
        except Exception as exc:
            log.warning("could not download an attachment (%s: %s)", type(exc).__name__, exc)
            problems.append(f"I couldn't download {name}, so I answered without it.")
            continue
        try:
            text = await asyncio.to_thread(pdf_text, data) if kind == "pdf" else decode_text(data)
        except Exception as exc:
            log.warning("could not read the text of an attachment (%s: %s)", type(exc).__name__, exc)
            problems.append(f"I couldn't read the text in {name}, so I answered without it.")
            continue
        if not text:
            problems.append(f"I found no text in {name} (a scanned PDF?), so I answered without it.")
            continue
        texts.append(FileText(name, text[:MAX_TEXT_CHARS], file.url))
    return texts, problems
