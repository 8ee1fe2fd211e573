"""The embedding backends side by side: document throughput, single-query latency, fidelity.

- Throughput: the same chunk texts (the handbook's, chunked as Lore chunks them) through each
  backend with the indexing thread count, rounds interleaved (A B C A B C ...) so a busy
  machine hurts every backend alike. Reported as chunks/s and as a ratio to torch.
- Query latency: the 175 eval questions one at a time with one thread (the query path), with
  `--busy` also while another process keeps one of the two cores busy.
- Fidelity: the lowest cosine between each backend's vectors and sentence-transformers'.

Run: .venv/bin/python bench/embedding_speed.py [--rounds 3] [--busy]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from typing import Any

import numpy as np
from _common import HANDBOOK, REPO, percentile, scratch, settings_for
from llama_index.core.schema import MetadataMode

from config.settings import EmbeddingSettings
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import build_embedder, local_model_path
from knowledge.sources import Skipped, make_loader

BACKENDS = ["torch", "onnx", "onnx-int8"]


def spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="also measure queries with one core kept busy")
    args = parser.parse_args()
    settings = settings_for(scratch("emb"), [{"name": "hb", "type": "directory", "path": str(HANDBOOK)}])
    embedders = {
        "torch": build_embedder(EmbeddingSettings(backend="torch")),
        "onnx": build_embedder(EmbeddingSettings(backend="onnx")),
        # Measured, not offered as a setting: it costs more recall than allowed (BENCHMARKS.md).
        "onnx-int8": build_embedder(EmbeddingSettings(backend="onnx"), precision="int8"),
    }
    docs = [d for d in make_loader(settings.sources[0], data_dir=scratch("emb"), max_bytes=10**8).load()]
    docs = [d for d in docs if not isinstance(d, Skipped)]
    chunker = StructuredChunker(chunk_size=200, chunk_overlap=30, tokenizer=embedders["torch"].tokenizer)
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in chunker.get_nodes_from_documents(docs)]

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(local_model_path(EmbeddingSettings())), device="cpu")
    ref = np.asarray(reference.encode(texts, normalize_embeddings=True))

    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    fidelity = {}
    for e in embedders.values():
        with e.indexing():
            e.document_model.get_text_embedding_batch(texts[:64])  # warm up
    for _ in range(args.rounds):
        for b, e in embedders.items():
            with e.indexing():
                started = time.perf_counter()
                vectors = np.asarray(e.document_model.get_text_embedding_batch(texts))
                rates[b].append(len(texts) / (time.perf_counter() - started))
            fidelity[b] = float(np.min(np.sum(vectors * ref, axis=1)))

    questions = []
    for path in (HANDBOOK / "questions.jsonl", REPO / "bench" / "pydocs" / "questions.jsonl"):
        questions += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]

    def latencies() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for q in questions:
            for b, e in embedders.items():
                started = time.perf_counter()
                e.query_model.get_query_embedding(q)
                out[b].append((time.perf_counter() - started) * 1000)
        return out

    for e in embedders.values():
        e.query_model.get_query_embedding("warm up")
    idle = latencies()
    busy: dict[str, list[float]] | None = None
    if args.busy:
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=spin, args=(stop,))
        spinner.start()
        try:
            busy = latencies()
        finally:
            stop.set()
            spinner.join()

    torch_rate = statistics.median(rates["torch"])
    print(f"{len(texts)} handbook chunks x {args.rounds} interleaved rounds; {len(questions)} queries\n")
    header = "| backend | chunks/s (median) | vs torch | query p50 / p95 ms |"
    header += " busy core p50 / p95 ms |" if busy else ""
    print(header + " min cosine to sentence-transformers |")
    print("|---|---|---|---|" + ("---|" if busy else "") + "---|")
    for b in BACKENDS:
        rate = statistics.median(rates[b])
        row = f"| {b} | {rate:.1f} | {rate / torch_rate:.2f} | "
        row += f"{percentile(idle[b], 50):.1f} / {percentile(idle[b], 95):.1f} |"
        if busy:
            row += f" {percentile(busy[b], 50):.1f} / {percentile(busy[b], 95):.1f} |"
        print(row + f" {fidelity[b]:.4f} |")


if __name__ == "__main__":
    main()
