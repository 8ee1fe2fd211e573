"""Indexing speed against the model's own speed, side by side in one run.

The figure is the ratio: chunks/s of a full `Knowledge.sync` (read, chunk, embed, upsert)
over chunks/s of embedding exactly the same chunk texts with the same model, batch size and
threads, with nothing else. Raw embedding is measured before and after the sync; their mean
is the reference. Run: .venv/bin/python bench/index_throughput.py [--copies 3]
"""

from __future__ import annotations

import argparse
import shutil
import time

from _common import copy_handbook, scratch, settings_for
from llama_index.core.schema import MetadataMode

from knowledge.chunking import StructuredChunker
from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge
from knowledge.sources import Skipped, make_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=3, help="handbook copies in the corpus")
    args = parser.parse_args()
    work = scratch("index")
    corpus = copy_handbook(work / "corpus", args.copies)
    settings = settings_for(work / "data", [{"name": "bench", "type": "directory", "path": str(corpus)}])
    embedder = build_embedder(settings.embedding)

    docs = [
        d
        for d in make_loader(settings.sources[0], data_dir=work, max_bytes=10**8).load()
        if not isinstance(d, Skipped)
    ]
    chunker = StructuredChunker(
        chunk_size=settings.chunking.size,
        chunk_overlap=settings.chunking.overlap,
        embed_headings=settings.chunking.embed_headings,
        tokenizer=embedder.tokenizer,
    )
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in chunker.get_nodes_from_documents(docs)]
    embedder.model.get_text_embedding_batch(texts[:64])  # warm up

    def raw() -> float:
        with embedder.indexing():
            started = time.perf_counter()
            embedder.model.get_text_embedding_batch(texts)
            return len(texts) / (time.perf_counter() - started)

    raw_before = raw()
    kn = Knowledge(settings, embedder=embedder)
    started = time.perf_counter()
    result = kn.sync("bench")
    index_seconds = time.perf_counter() - started
    kn.close()
    raw_after = raw()
    reference = (raw_before + raw_after) / 2
    index_rate = result.chunks_embedded / index_seconds
    assert result.chunks_embedded == len(texts), (result.chunks_embedded, len(texts))
    print("| documents | chunks | raw embed chunks/s (before, after) | lore index chunks/s | ratio |")
    print("|---|---|---|---|---|")
    print(
        f"| {len(docs)} | {len(texts)} | {raw_before:.1f}, {raw_after:.1f} | {index_rate:.1f} "
        f"| **{index_rate / reference:.2f}** |"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
