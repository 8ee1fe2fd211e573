"""Indexing speed against the model's own speed, side by side in one run.

The figure is the ratio: chunks/s of a full `Knowledge.sync` (read, chunk, embed, BM25,
upsert, docstore, index build) over chunks/s of embedding exactly the same chunk texts with
the same model backend, batch size and threads, with nothing else. Raw embedding is measured
before and after each sync; their mean is that sync's reference. `--rounds` syncs (each into an
empty index) alternate with raw runs, and the median ratio is the figure: on a shared virtual
machine a single pair can be off by a few percent either way.

Corpora: `handbook` (the example handbook copied `--copies` times: Markdown, PDF, HTML) or
`pydocs` (the Python-docs core selection: 104 HTML pages, where reading is the costliest).

Run: .venv/bin/python bench/index_throughput.py [--corpus handbook|pydocs] [--copies 3] [--rounds 3]
     [--set embedding.backend=torch] [--set index.engine=qdrant-local]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from _common import REPO, copy_handbook, scratch, settings_for
from llama_index.core.schema import MetadataMode
from retrieval_quality import overrides

from config import load_settings
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge
from knowledge.sources import Skipped, make_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", choices=["handbook", "pydocs"], default="handbook")
    parser.add_argument("--copies", type=int, default=3, help="handbook copies in the corpus")
    parser.add_argument("--rounds", type=int, default=3, help="syncs, each between two raw runs")
    parser.add_argument("--set", dest="pairs", action="append", default=[])
    args = parser.parse_args()
    work = scratch("index")
    if args.corpus == "pydocs":
        source = load_settings(REPO / "bench" / "pydocs" / "lore.toml").sources[0].model_dump()
        source["name"] = "bench"
    else:
        corpus = copy_handbook(work / "corpus", args.copies)
        source = {"name": "bench", "type": "directory", "path": str(corpus)}
    settings = settings_for(work / "data", [source], **overrides(args.pairs))
    embedder = build_embedder(settings.embedding)
    model = embedder.document_model

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
    model.get_text_embedding_batch(texts[:64])  # warm up

    def raw() -> float:
        with embedder.indexing():
            started = time.perf_counter()
            model.get_text_embedding_batch(texts)
            return len(texts) / (time.perf_counter() - started)

    raws, syncs = [raw()], []
    for round_ in range(args.rounds):
        fresh = settings_for(work / f"data{round_}", [source], **overrides(args.pairs))
        kn = Knowledge(fresh, embedder=embedder)
        started = time.perf_counter()
        result = kn.sync("bench")
        syncs.append(result.chunks_embedded / (time.perf_counter() - started))
        kn.close()
        assert result.chunks_embedded == len(texts), (result.chunks_embedded, len(texts))
        raws.append(raw())
    ratios = [rate / ((raws[i] + raws[i + 1]) / 2) for i, rate in enumerate(syncs)]
    print(
        "| corpus | backend | engine | documents | chunks | raw embed chunks/s (median) "
        "| lore index chunks/s (median) | ratio per round | ratio (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.corpus} | {embedder.backend} | {settings.index.engine} | {len(docs)} | {len(texts)} "
        f"| {statistics.median(raws):.1f} | {statistics.median(syncs):.1f} "
        f"| {', '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}** |"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
