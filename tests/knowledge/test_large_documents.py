"""One huge file can't take over a sync: it keeps its first `index.max_chunks_per_doc` chunks,
the sync says so, and the splitting stops there too (a 5 MB one-line file is not split whole).

bench/chunking_huge_file.py measures the time this saves.
"""

from __future__ import annotations

import random

from tests.conftest import write

WORDS = ["badge", "lanyard", "office", "garage", "printer", "invoice", "laptop", "travel", "policy", "leave"]


def one_line(n_chars: int, seed: int = 7) -> str:
    """Sentences on a single line, like a minified export: no paragraph or line break at all."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n_chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)


def test_a_huge_one_line_file_is_cut_to_the_cap_and_the_sync_says_so(make_knowledge, tmp_path):
    root = tmp_path / "docs"
    opening = "The opening code word of the export is kumquat. "
    closing = " The closing code word of the export is persimmon."
    write(root, "export.md", "# Export\n\n" + opening + one_line(300_000) + closing)
    write(root, "parking.md", "# Parking\n\nStaff parking is on level two of the north garage.\n")
    source = {"name": "d", "type": "directory", "path": str(root)}
    kn = make_knowledge([source], index={"max_chunks_per_doc": 20})

    result = kn.sync("d")
    assert result.phase == "done" and result.error is None and result.added == 2, result
    per_doc: dict[str, int] = {}
    for _chunk, doc in kn.store.chunk_ids("d"):
        per_doc[doc] = per_doc.get(doc, 0) + 1
    assert per_doc == {"d:export.md": 20, "d:parking.md": 1}
    assert result.chunks_embedded == 21
    assert result.skipped == [
        {
            "path": "export.md",
            "reason": "too long: only its first 20 chunks are indexed (index.max_chunks_per_doc); "
            "the rest of the document is not",
        }
    ]
    assert kn.engine.search("opening code word kumquat", top_k=1)[0].path == "export.md"
    assert not any("persimmon" in c.text for c in kn.engine.search("closing code word persimmon", top_k=10))
    assert kn.engine.search("where do staff park", top_k=1)[0].path == "parking.md"


def as_document(text: str):
    from knowledge.sources.base import make_document

    return make_document(
        source="d",
        source_type="directory",
        doc_id="d:export.md",
        path="export.md",
        text=text,
        title="Export",
        url=None,
        updated_at=None,
        is_markdown=True,
    )


def test_the_cap_stops_the_splitting_of_a_5_mb_one_line_file(embedder):
    from knowledge.chunking import StructuredChunker

    text = "# Export\n\n" + one_line(5_000_000)
    tokenized = 0

    def counting_tokenizer(piece: str) -> list[int]:  # the real tokenizer, counting its input
        nonlocal tokenized
        tokenized += len(piece)
        return list(embedder.tokenizer(piece))

    chunker = StructuredChunker(chunk_size=200, chunk_overlap=30, max_chunks=50, tokenizer=counting_tokenizer)
    nodes = chunker([as_document(text)])
    assert len(nodes) == 50 and chunker.truncated("d:export.md") == 50
    assert nodes[0].text.split()[:8] == text.split()[:8]  # the first chunks are the ones kept
    assert tokenized < len(text) // 4, tokenized  # split up to the cap, not the whole 5 MB


def test_the_cut_keeps_exactly_the_chunks_the_whole_document_starts_with(embedder):
    from knowledge.chunking import StructuredChunker

    doc = as_document("# Export\n\n" + one_line(60_000))
    whole = StructuredChunker(chunk_size=200, chunk_overlap=30, tokenizer=embedder.tokenizer)
    uncapped = whole([doc])
    assert len(uncapped) > 10 and whole.truncated("d:export.md") is None
    capped = StructuredChunker(chunk_size=200, chunk_overlap=30, max_chunks=10, tokenizer=embedder.tokenizer)
    assert [n.text for n in capped([doc])] == [n.text for n in uncapped[:10]]
    assert [n.id_ for n in capped([doc])] == [n.id_ for n in uncapped[:10]]
