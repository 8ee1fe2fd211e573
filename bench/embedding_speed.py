"""The embedding backends side by side: document throughput, single-query latency, fidelity.

- Throughput: the same chunk texts (the handbook's, chunked as Lore chunks them) through each
  backend with the indexing thread count, rounds interleaved (A B C A B C ...) so a busy
  machine hurts every backend alike. Reported as chunks/s and as a ratio to torch.
- Query latency: the 175 eval questions one at a time through each query configuration
  (backend, threads, whether idle pool threads spin, or Lore's default: a second thread only
  while a core is idle), interleaved; with `--busy` also while one and then two other
  processes keep the cores busy.
  The ONNX backend is also run with count-only blocks (32 texts, no token cap), as it was
  before blocks were capped by padded tokens too.
- Fidelity: the lowest cosine between each backend's vectors and sentence-transformers'.

Run: .venv/bin/python bench/embedding_speed.py [--rounds 3] [--busy]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import HANDBOOK, REPO, percentile, scratch, settings_for
from llama_index.core.schema import MetadataMode

from config.settings import EmbeddingSettings
from knowledge.chunking import StructuredChunker
from knowledge.embeddings import build_embedder, local_model_path
from knowledge.onnx import OnnxEmbedding
from knowledge.sources import Skipped, make_loader

# The ONNX backend's document model as it was before token-capped blocks: 32 texts per call.
COUNT_BLOCKS = "onnx, 32-text blocks"


def spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def onnx_session(model: Any, *, threads: int, spin: bool = True, **overrides: Any) -> OnnxEmbedding:
    """Another session on the model Lore's ONNX backend uses, with other settings."""
    assert isinstance(model, OnnxEmbedding)
    fields = {"max_length": model.max_length, "embed_batch_size": model.embed_batch_size}
    return OnnxEmbedding(
        model_path=Path(model.model_path),
        tokenizer_path=local_model_path(EmbeddingSettings()) / "tokenizer.json",
        threads=threads,
        spin=spin,
        **(fields | overrides),
    )


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

    onnx = embedders["onnx"]
    documents = {b: (e, e.document_model) for b, e in embedders.items()}
    documents[COUNT_BLOCKS] = (
        onnx,
        onnx_session(onnx.document_model, threads=onnx.index_threads, block_tokens=10**9),
    )
    rates: dict[str, list[float]] = {b: [] for b in documents}
    fidelity = {}
    for e, model in documents.values():
        with e.indexing():
            model.get_text_embedding_batch(texts[:64])  # warm up
    for _ in range(args.rounds):
        for b, (e, model) in documents.items():
            with e.indexing():
                started = time.perf_counter()
                vectors = np.asarray(model.get_text_embedding_batch(texts))
                rates[b].append(len(texts) / (time.perf_counter() - started))
            fidelity[b] = float(np.min(np.sum(vectors * ref, axis=1)))

    questions = []
    for path in (HANDBOOK / "questions.jsonl", REPO / "bench" / "pydocs" / "questions.jsonl"):
        questions += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]

    # Query configurations: (backend, threads, spin). Lore's defaults are marked in the output.
    queries: dict[str, Any] = {
        "torch, 1 thread": embedders["torch"].query_model,
        "onnx, 1 thread": onnx_session(onnx.query_model, threads=1),
        "onnx, 2 threads, spinning": onnx_session(onnx.query_model, threads=2, spin=True),
        "onnx, 2 threads, sleeping": onnx_session(onnx.query_model, threads=2, spin=False),
        # Lore's default: one thread, two (spinning) while a core is idle, decided per question.
        "onnx, 1 thread, 2 when a core is idle": onnx.query_model,
        "onnx-int8, 1 thread": embedders["onnx-int8"].query_model,
    }
    defaults = {"torch, 1 thread", "onnx, 1 thread, 2 when a core is idle"}

    def latencies() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in queries}
        for q in questions:
            for name, model in queries.items():
                started = time.perf_counter()
                model.get_query_embedding(q)
                out[name].append((time.perf_counter() - started) * 1000)
        return out

    for model in queries.values():
        model.get_query_embedding("warm up")
    loads = {"idle": latencies()}
    if args.busy:
        stop = multiprocessing.Event()
        spinners: list[Any] = []
        try:
            for busy_cores in (1, 2):
                spinners.append(multiprocessing.Process(target=spin, args=(stop,)))
                spinners[-1].start()
                time.sleep(0.5)
                loads[f"{busy_cores} busy core{'s' if busy_cores > 1 else ''}"] = latencies()
        finally:
            stop.set()
            for spinner in spinners:
                spinner.join()

    torch_rate = statistics.median(rates["torch"])
    print(f"{len(texts)} handbook chunks x {args.rounds} interleaved rounds\n")
    print("| backend | document chunks/s (median) | vs torch | min cosine to sentence-transformers |")
    print("|---|---|---|---|")
    for b in rates:
        rate = statistics.median(rates[b])
        print(f"| {b} | {rate:.1f} | {rate / torch_rate:.2f} | {fidelity[b]:.4f} |")
    print(f"\n{len(questions)} single queries, configurations interleaved; p50 / p95 ms\n")
    print("| query configuration | " + " | ".join(loads) + " |")
    print("|---|" + "---|" * len(loads))
    for name in queries:
        label = f"**{name}** (default)" if name in defaults else name
        cells = [f"{percentile(xs[name], 50):.1f} / {percentile(xs[name], 95):.1f}" for xs in loads.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
