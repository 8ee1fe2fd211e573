"""A no-op resync of many unchanged documents, as a ratio of the full index time.

Run: .venv/bin/python bench/noop_resync.py [--docs 2000]
"""

from __future__ import annotations

import argparse
import shutil
import time

from _common import scratch, settings_for, synthetic_docs

from knowledge.embeddings import build_embedder
from knowledge.service import Knowledge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=2000)
    args = parser.parse_args()
    work = scratch("noop")
    corpus = synthetic_docs(work / "corpus", args.docs)
    settings = settings_for(work / "data", [{"name": "bench", "type": "directory", "path": str(corpus)}])
    kn = Knowledge(settings, embedder=build_embedder(settings.embedding))
    started = time.perf_counter()
    full = kn.sync("bench")
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    noop = kn.sync("bench")
    noop_s = time.perf_counter() - started
    kn.close()
    assert noop.unchanged == args.docs and noop.chunks_embedded == 0, noop.summary()
    print("| documents | chunks | full index s | no-op resync s | ratio (no-op / full) |")
    print("|---|---|---|---|---|")
    print(
        f"| {full.added} | {full.chunks_embedded} | {full_s:.1f} | {noop_s:.2f} | **{noop_s / full_s:.3f}** |"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
