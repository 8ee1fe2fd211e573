"""Do an HTML manual's section titles survive reading and chunking?

For every HTML page of a corpus (the eval set's own `lore.toml` selection), the page is read
and chunked the way a sync does it (`read_bytes`, then `StructuredChunker` with the MiniLM
tokenizer and the default chunk size), and each `<h1>`-`<h3>` and `<dt>` text of the raw HTML
is looked up in the page's chunks:

- `in text`: the title appears in some chunk's text (whitespace, case and Markdown emphasis or
  escapes ignored), so the answer can quote it and BM25 sees it;
- `in path`: it appears in some chunk's heading path (`heading` metadata), which
  `chunking.embed_headings` puts in front of the embedded text.

Titles inside navigation chrome count too, so 100% is not expected where a page repeats its
menu. Chunks are also checked for stray code fences: a ``` that is not a line of its own
(inline code rendered as a fenced block, as trafilatura did on the Git pages).

`--dir NAME=PATH` surveys any folder of HTML pages as well (every *.html under it), e.g. a
manual made by another toolchain than the eval sets' (DocBook: Debian's debian-reference-en).

Run: .venv/bin/python bench/heading_survival.py [--sets postfix sqlite git] [--max-pages N]
         [--dir debian-reference=/usr/share/debian-reference]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO

from config import load_settings
from config.settings import EmbeddingSettings
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import build_embedder
from knowledge.readers import HTML_SUFFIXES, Unreadable, read_bytes
from knowledge.sources import make_document, make_loader

SETS = {
    "postfix": REPO / "bench" / "evalsets" / "postfix" / "lore.toml",
    "sqlite": REPO / "bench" / "evalsets" / "sqlite" / "lore.toml",
    "git": REPO / "bench" / "evalsets" / "git" / "lore.toml",
    "pydocs": REPO / "bench" / "pydocs" / "lore.toml",
}
_MARKUP = re.compile(r"[*`\\¶§]")  # emphasis, escapes, permalink signs


def norm(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split()).lower()


def titles(html: bytes) -> dict[str, list[str]]:
    import lxml.html

    tree = lxml.html.fromstring(html)
    found: dict[str, list[str]] = {"h1-h3": [], "dt": []}
    for el in tree.iter("h1", "h2", "h3", "dt"):
        text = norm(el.text_content())
        if text:
            found["dt" if el.tag == "dt" else "h1-h3"].append(text)
    return found


def survey(name: str, config: Path, tokenizer: Any, max_pages: int | None) -> dict[str, Any]:
    settings = load_settings(config, data_dir=Path("/tmp/unused"))
    source = settings.sources[0]
    loader = make_loader(source, data_dir=settings.data_dir, max_bytes=int(settings.index.max_file_mb * 1e6))
    paths = [p for p in loader._list() if isinstance(p, Path) and p.suffix.lower() in HTML_SUFFIXES]
    paths = paths[:max_pages] if max_pages else paths
    chunker = StructuredChunker(
        chunk_size=settings.chunking.size, chunk_overlap=settings.chunking.overlap, tokenizer=tokenizer
    )
    counts = {kind: {"total": 0, "in_text": 0, "in_path": 0} for kind in ("h1-h3", "dt")}
    pages = chunks = stray = 0
    started = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        rel = path.relative_to(source.path).as_posix()
        try:
            read = read_bytes(data, path, max_bytes=len(data) + 1)
        except Unreadable:
            continue
        doc = make_document(
            source=name,
            source_type="directory",
            doc_id=f"{name}:{rel}",
            path=rel,
            text=read.text,
            title=read.title,
            url=None,
            updated_at=None,
            is_markdown=read.is_markdown,
        )
        nodes = chunker([doc])
        pages += 1
        chunks += len(nodes)
        texts = [norm(n.get_content()) for n in nodes]
        paths_text = [norm(str(n.metadata.get("heading", ""))) for n in nodes]
        stray += sum(1 for n in nodes if _stray_fence(n.get_content()))
        for kind, found in titles(data).items():
            for title in found:
                counts[kind]["total"] += 1
                counts[kind]["in_text"] += any(title in t for t in texts)
                counts[kind]["in_path"] += any(title in p for p in paths_text)
    result: dict[str, Any] = {"set": name, "pages": pages, "chunks": chunks, "stray_fence_chunks": stray}
    for kind, c in counts.items():
        result[kind] = {**c, "share_in_text": round(c["in_text"] / c["total"], 3) if c["total"] else None}
        result[kind]["share_in_path"] = round(c["in_path"] / c["total"], 3) if c["total"] else None
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


_FENCE_LINE = re.compile(r"^[\s>]*(```+|~~~+)[\w+-]*\s*$")  # in a blockquote too


def _stray_fence(chunk: str) -> bool:
    """A code fence that is not a line of its own: inline code rendered as a fenced block."""
    return any("```" in line and not _FENCE_LINE.match(line) for line in chunk.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=["postfix", "sqlite", "git"], choices=sorted(SETS))
    parser.add_argument("--max-pages", type=int, default=None, help="the first N pages of each set")
    parser.add_argument(
        "--dir", action="append", default=[], metavar="NAME=PATH", help="a folder of HTML pages"
    )
    args = parser.parse_args()
    configs = {name: SETS[name] for name in args.sets}
    scratch = Path(tempfile.mkdtemp(prefix="lore-headings-"))
    for spec in args.dir:
        name, _, folder = spec.partition("=")
        if not folder or not Path(folder).is_dir():
            parser.error(f"--dir {spec!r}: expected NAME=PATH of an existing folder")
        configs[name] = scratch / f"{name}.toml"
        path = json.dumps(str(Path(folder).resolve()))  # a TOML basic string
        toml = f'name = {json.dumps(name)}\ntype = "directory"\npath = {path}\ninclude = ["*.html"]\n'
        configs[name].write_text(f"[[sources]]\n{toml}", encoding="utf-8")
    tokenizer = build_embedder(EmbeddingSettings()).tokenizer
    print(
        "| set | pages | chunks | h1-h3 in text | h1-h3 in heading path | dt in text "
        "| dt in heading path | stray fences |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name, config in configs.items():
        r = survey(name, config, tokenizer, args.max_pages)
        rows.append(r)
        h, d = r["h1-h3"], r["dt"]
        print(
            f"| {name} | {r['pages']} | {r['chunks']} | {h['in_text']}/{h['total']} ({h['share_in_text']}) "
            f"| {h['in_path']}/{h['total']} ({h['share_in_path']}) | {d['in_text']}/{d['total']} "
            f"({d['share_in_text']}) | {d['in_path']}/{d['total']} ({d['share_in_path']}) "
            f"| {r['stray_fence_chunks']} |",
            flush=True,
        )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
