"""One huge one-line Markdown file: chunking time against its size, with and without the
chunk cap (`index.max_chunks_per_doc`), and a whole sync of a 5 MB one with the default cap.

Two shapes of line: `prose` (the handbook's sentences, repeated, with no line break) and
`nospace` (base64, like an embedded blob: LlamaIndex's splitter then falls back to one
character at a time, its slowest path). The chunker is timed the way a sync calls it
(`chunker([doc])`, with LlamaIndex's post-processing); the seconds per MB show whether time
grows linearly with size.

Run: .venv/bin/python bench/huge_file.py [--mb 0.5 1 2 5] [--nospace-mb 0.25 0.5 1] [--no-sync]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import time
from typing import Any

from _common import HANDBOOK, scratch, settings_for

from config.settings import EmbeddingSettings, IndexSettings
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import build_embedder
from knowledge.sources.base import make_document

CAP = IndexSettings().max_chunks_per_doc


def one_line(shape: str, n_chars: int) -> str:
    if shape == "nospace":
        return base64.b64encode(random.Random(7).randbytes(n_chars * 3 // 4)).decode()
    prose = " ".join(
        line.strip()
        for path in sorted(HANDBOOK.rglob("*.md"))
        for line in path.read_text().splitlines()
        if len(line) > 60 and not line.startswith(("#", "|", "-", ">"))
    )
    return (prose + " ") * (n_chars // (len(prose) + 1)) + prose[: n_chars % (len(prose) + 1)]


def time_chunking(embedder: Any, shape: str, mb: float, cap: int | None) -> dict[str, Any]:
    text = "# Export\n\n" + one_line(shape, int(mb * 1e6))
    doc = make_document(
        source="b",
        source_type="directory",
        doc_id="b:export.md",
        path="export.md",
        text=text,
        title="Export",
        url=None,
        updated_at=None,
        is_markdown=True,
    )
    chunker = StructuredChunker(
        chunk_size=200, chunk_overlap=30, max_chunks=cap, tokenizer=embedder.tokenizer
    )
    started = time.perf_counter()
    nodes = chunker([doc])
    seconds = time.perf_counter() - started
    return {
        "shape": shape,
        "mb": mb,
        "cap": cap,
        "chunks": len(nodes),
        "seconds": round(seconds, 2),
        "s_per_mb": round(seconds / mb, 2),
    }


def time_sync(embedder: Any, mb: float) -> dict[str, Any]:
    from knowledge.service import Knowledge

    base = scratch("huge-file")
    try:
        (base / "docs").mkdir()
        (base / "docs" / "export.md").write_text("# Export\n\n" + one_line("prose", int(mb * 1e6)))
        source = {"name": "b", "type": "directory", "path": str(base / "docs")}
        settings = settings_for(base / "data", [source])
        kn = Knowledge(settings, embedder=embedder)
        try:
            started = time.perf_counter()
            result = kn.sync("b")
            seconds = time.perf_counter() - started
        finally:
            kn.close()
        return {
            "mb": mb,
            "cap": settings.index.max_chunks_per_doc,
            "chunks_embedded": result.chunks_embedded,
            "seconds": round(seconds, 1),
            "skipped": result.skipped,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, nargs="+", default=[0.5, 1, 2, 5])
    parser.add_argument("--nospace-mb", type=float, nargs="+", default=[0.25, 0.5, 1])
    parser.add_argument("--no-sync", action="store_true", help="skip the whole sync of a 5 MB file")
    args = parser.parse_args()
    embedder = build_embedder(EmbeddingSettings())
    rows = []
    for shape, sizes in (("prose", args.mb), ("nospace", args.nospace_mb)):
        for mb in sizes:
            for cap in (None, CAP):
                rows.append(time_chunking(embedder, shape, mb, cap))
                print(json.dumps(rows[-1]), flush=True)
        # The cap at the largest size: what a 5 MB file costs now.
        if max(sizes) < 5:
            rows.append(time_chunking(embedder, shape, 5, CAP))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| shape | MB | cap | chunks | chunking s | s per MB |\n|---|---|---|---|---|---|")
    for r in rows:
        cap = "none" if r["cap"] is None else f"{r['cap']:,}"
        print(f"| {r['shape']} | {r['mb']} | {cap} | {r['chunks']} | {r['seconds']} | {r['s_per_mb']} |")
    if not args.no_sync:
        print("\nwhole sync:", json.dumps(time_sync(embedder, 5)))


if __name__ == "__main__":
    main()
