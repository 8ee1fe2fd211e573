"""Turn one file's bytes into text plus a title, or say why it can't be read.

HTML becomes Markdown that keeps the page's structure (`knowledge.html`: headings, definition
lists, tables, code, without navigation chrome), so one Markdown-aware chunker serves both.
PDF and DOCX go through LlamaIndex's file readers.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}


class Unreadable(Exception):
    """The file is skipped; the message is the reason the summary counts and logs."""


@dataclass(frozen=True)
class ReadText:
    text: str
    title: str
    is_markdown: bool  # chunk on headings


def read_bytes(data: bytes, path: PurePosixPath | Path, *, max_bytes: int) -> ReadText:
    suffix = path.suffix.lower()
    if len(data) > max_bytes:
        raise Unreadable(too_large(len(data), max_bytes))
    if not data.strip():
        raise Unreadable("empty file")
    if suffix in TEXT_SUFFIXES:
        text = _decode_text(data)
        return ReadText(text, _markdown_title(text) or _title_from_path(path), is_markdown=True)
    if suffix in HTML_SUFFIXES:
        return read_html(_decode_text(data), fallback_title=_title_from_path(path))
    if suffix == ".pdf":
        return _read_pdf(data, path)
    if suffix == ".docx":
        return _read_docx(data, path)
    raise Unreadable(f"unsupported file type {suffix or '(none)'}")


def too_large(size: int, max_bytes: int) -> str:
    return f"larger than the size limit ({size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB)"


def read_html(html: str, *, fallback_title: str, url: str | None = None) -> ReadText:
    import trafilatura
    from trafilatura.utils import load_html

    from knowledge.html import html_to_markdown

    tree = load_html(html)
    if tree is None:
        raise Unreadable("not HTML that can be parsed")
    title = _html_title(tree)  # before extract(), which may prune the tree
    text: str | None = html_to_markdown(html)
    if not text:  # nothing left after the chrome: let trafilatura find the main text
        text = trafilatura.extract(
            tree,
            url=url,
            output_format="markdown",
            include_tables=True,
            include_formatting=True,
            favor_recall=True,
        )
    if not text or not text.strip():
        raise Unreadable("no main text found in the HTML")
    title = title or _markdown_title(text) or fallback_title
    return ReadText(text, title.strip(), is_markdown=True)


def _html_title(tree: Any) -> str | None:
    """The title as trafilatura's `extract_metadata` finds it (meta tags, JSON-LD, <title>/<h1>),
    without the rest of that function: its date search (htmldate + dateparser) took three
    quarters of the reading time of the Python docs, for a date Lore doesn't use."""
    from trafilatura.metadata import examine_meta, extract_meta_json, extract_title

    meta = examine_meta(tree)
    try:
        meta = extract_meta_json(tree, meta)
    except Exception:  # trafilatura guards this call the same way
        log.debug("JSON-LD metadata unreadable", exc_info=True)
    return meta.title or extract_title(tree)


def _decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise Unreadable("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise Unreadable("not text: no character encoding fits")
    log.info("decoded as %s rather than UTF-8", best.encoding)
    return str(best)


def _read_pdf(data: bytes, path: PurePosixPath | Path) -> ReadText:
    from llama_index.readers.file import PDFReader

    if not data.startswith(b"%PDF"):
        raise Unreadable("not a PDF (bad header)")
    try:
        with tempfile.NamedTemporaryFile(suffix=".pdf") as tmp:
            tmp.write(data)
            tmp.flush()
            pages = PDFReader(return_full_document=True).load_data(Path(tmp.name))
        text = "\n\n".join(p.text for p in pages)
        title = _pdf_title(data)
    except Exception as exc:  # pypdf raises many kinds on broken files
        raise Unreadable(f"broken PDF: {_parser_error(exc)}") from exc
    if not text.strip():
        raise Unreadable("PDF has no extractable text (scanned?)")
    return ReadText(text, title or _title_from_path(path), is_markdown=False)


def _parser_error(exc: BaseException) -> str:
    """The parser's own error. LlamaIndex's file readers retry with tenacity, whose RetryError
    says only `RetryError[<Future at 0x…>]`: different on every run, and no reason at all."""
    from tenacity import RetryError

    while isinstance(exc, RetryError):
        inner = exc.last_attempt.exception()
        if inner is None:
            break
        exc = inner
    return f"{type(exc).__name__}: {exc}"


def _pdf_title(data: bytes) -> str | None:
    import pypdf

    try:
        info = pypdf.PdfReader(io.BytesIO(data)).metadata
    except Exception:  # a title is nice to have; the text was already read
        return None
    title = info.title if info else None
    return str(title).strip() if title and str(title).strip() else None


def _read_docx(data: bytes, path: PurePosixPath | Path) -> ReadText:
    from llama_index.readers.file import DocxReader

    try:
        with tempfile.NamedTemporaryFile(suffix=".docx") as tmp:
            tmp.write(data)
            tmp.flush()
            docs = DocxReader().load_data(Path(tmp.name))
    except Exception as exc:
        raise Unreadable(f"broken DOCX: {_parser_error(exc)}") from exc
    text = "\n\n".join(d.text for d in docs)
    if not text.strip():
        raise Unreadable("DOCX has no text")
    first_line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    title = first_line if 0 < len(first_line) <= 120 else _title_from_path(path)
    return ReadText(text, title, is_markdown=False)


_HEADING = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _markdown_title(text: str) -> str | None:
    match = _HEADING.search(text)
    return match.group(1).strip() if match else None


def _title_from_path(path: PurePosixPath | Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize() or path.name
