"""The 100k-chunk scale test: full index, no-op resync, retrieval latency and memory, per engine.

The corpus: the real documents of the full Python-docs selection (bench/pydocs/lore.full.toml)
and the handbook, converted once to Markdown (the text Lore extracts from them), then copied
`--copies` times, each copy its own source (`copy00`, `copy01`, ...), until it holds about
100k chunks. Copy 0 is embedded by the real model (once; the vectors are cached in
~/.cache/lore/bench). Every other copy's chunk gets its copy-0 twin's real vector plus small
Gaussian noise (renormalised): embedding 100k chunks through MiniLM would take over an hour on
two cores, and search cost depends on the number and spread of the vectors, not on what they
say. Sparse (BM25) vectors are computed for real from each chunk's text.

Everything else is the real pipeline: `Knowledge.sync` reads the files, chunks them, encodes
BM25, upserts, writes the docstore, and (edge) builds the HNSW index off to the side. So the
"full index" figure is Lore's own overhead with the model taken out; the model's share is
chunks / its measured throughput (bench/index_throughput.py), printed alongside.

Queries are the 175 eval questions (handbook + Python docs), embedded by the real query model
(one thread). Latency is `engine.search` (query embedding plus hybrid search), with and
without a source filter (one copy: 10% of the points). Each engine runs in its own process,
one after the other, so RSS is per engine. Latency depends on the host: the CPU model and the
share of CPU time the hypervisor took away (steal) while the queries ran are printed with it.

Permissions (`--access`, on by default): after the unfiltered figures, every document gets an
access list by a hash of its id, so that the grant `all` sees every chunk, `sel50` about half,
`sel10` a tenth and `sel1` a hundredth; the labels are written the way a changed access rule is
(a payload update per group of documents, nothing re-embedded), and that is timed too, with
the HNSW build the sync runs next (a payload update moves the points out of their indexed
segments). Then, per grant and unfiltered, in one loop: the retrieval latency of
`engine.search(q, audience=...)` (the filter inside both the dense and the sparse search), and
recall@10 of the filtered dense (HNSW) search against exact search under the same filter.

Run: .venv/bin/python bench/scale.py [--copies 10] [--engines edge qdrant-local] [--max-queries N]
     [--no-access]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import HANDBOOK, REPO, EmbeddingCache, bench_cache_dir, percentile, settings_for

PYDOCS = REPO / "bench" / "pydocs"
NOISE = 0.03  # per dimension, as in bench/retrieval_latency.py: cosine to the twin ~0.86
# Grants and the share of documents each one sees (a document in bucket b < share has it).
SELECTIVITY = (("all", 100), ("sel50", 50), ("sel10", 10), ("sel1", 1))


def cpu_times() -> tuple[int, int]:
    """(all, steal) jiffies of the whole machine: steal is time the hypervisor gave elsewhere."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def prepare_corpus(copies: int) -> Path:
    """Markdown copies of the real documents (built once, cached beside the embeddings)."""
    from config import load_settings
    from knowledge.sources import Skipped, make_loader

    root = bench_cache_dir() / f"scale-corpus-{copies}"
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    full = load_settings(PYDOCS / "lore.full.toml").sources[0]
    handbook = settings_for(root, [{"name": "handbook", "type": "directory", "path": str(HANDBOOK)}]).sources[
        0
    ]
    docs = []
    for source in (full, handbook):
        for item in make_loader(source, data_dir=root, max_bytes=10**8).load():
            if not isinstance(item, Skipped):
                docs.append((f"{source.name}/{item.metadata['path']}", item.metadata["title"], item.text))
    for i in range(copies):
        for rel, title, text in docs:
            path = root / f"copy{i:02d}" / (rel.rsplit(".", 1)[0] + ".md")
            path.parent.mkdir(parents=True, exist_ok=True)
            body = text if text.lstrip().startswith("# ") else f"# {title}\n\n{text}"
            path.write_text(body, encoding="utf-8")
    marker.touch()
    return root


def twin_embedder(embedder: Any) -> Any:
    """Copy 0: real vectors (cached). Other copies: the copy-0 twin's vector plus noise."""
    from dataclasses import replace

    import numpy as np
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode, MetadataMode

    cache = EmbeddingCache(embedder.identity.name)
    real = embedder.document_model

    class Twins(BaseEmbedding):
        _real: Any = PrivateAttr()

        def __init__(self) -> None:
            super().__init__(model_name="bench-twins")
            self._real = real

        def _get_query_embedding(self, query: str) -> list[float]:
            return list(self._real.get_query_embedding(query))

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return list(self._real.get_text_embedding(text))

        def __call__(self, nodes: Any, **kwargs: Any) -> Any:
            texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
            found = cache.get_many(texts)
            missing = [t for t in dict.fromkeys(texts) if cache.key(t) not in found]
            if missing:
                vectors = self._real.get_text_embedding_batch(missing)
                cache.put_many(list(zip(missing, vectors, strict=True)))
                found.update(
                    {
                        cache.key(t): np.asarray(v, dtype=np.float32)
                        for t, v in zip(missing, vectors, strict=True)
                    }
                )
            for node, text in zip(nodes, texts, strict=True):
                vec = np.asarray(found[cache.key(text)], dtype=np.float64)
                if node.metadata.get("source") != "copy00":
                    seed = int(hashlib.sha1(node.node_id.encode()).hexdigest()[:8], 16)
                    vec = vec + np.random.default_rng(seed).normal(0, NOISE, vec.shape)
                    vec = vec / np.linalg.norm(vec)
                node.embedding = vec.tolist()
            nodes_out: list[BaseNode] = list(nodes)
            return nodes_out

    twins = Twins()
    return replace(embedder, index_model_factory=lambda: twins, _index_model=twins)


def questions() -> list[str]:
    out = []
    for path in (HANDBOOK / "questions.jsonl", PYDOCS / "questions.jsonl"):
        out += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return out


def measure_access(kn: Any, qs: list[str], repeats: int) -> dict[str, Any]:
    """Label every document by a hash of its id (see the module docstring), then time filtered
    searches and measure their recall@10 against exact search, per grant."""
    from knowledge.access import ACCESS_KEY, Audience
    from knowledge.backends import SearchRequest

    store, backend = kn.store, kn.store.backend
    groups: dict[tuple[str, ...], list[str]] = {}
    state: dict[str, dict[str, list[str]]] = {}
    for src in kn.settings.sources:
        state[src.name] = {}
        for doc_id in store.docstore(src.name).get_all_document_hashes().values():
            bucket = int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % 100
            labels = tuple(grant for grant, share in SELECTIVITY if bucket < share)
            groups.setdefault(labels, []).append(doc_id)
            state[src.name][doc_id] = list(labels)
    started = time.perf_counter()
    for labels, ids in groups.items():  # as sync relabels documents whose rule changed
        for i in range(0, len(ids), 512):
            backend.set_payload({"doc_id": ids[i : i + 512]}, {ACCESS_KEY: list(labels)})
    relabel_s = time.perf_counter() - started
    # What the sync does next: the payload update moved the points out of their HNSW-indexed
    # segments (copy on write), so enough of them make a new build worth it.
    started = time.perf_counter()
    store.optimize()
    rebuild_s = time.perf_counter() - started
    for name, docs in state.items():
        store.put_state("access", name, {"docs": docs})
    kn.engine.refresh()
    total = store.count_chunks()
    ef = kn.settings.index.hnsw_ef
    vectors = {q: kn.embedder.query_model.get_query_embedding(q) for q in qs}
    # None: unfiltered, measured in the same loop, so that whatever else runs on the machine
    # weighs on every row alike.
    grants: list[str | None] = [None, *(grant for grant, _share in SELECTIVITY)]
    audiences = {g: Audience(frozenset({g}), g) if g else None for g in grants}
    for q in qs[:10]:
        for audience in audiences.values():
            kn.engine.search(q, audience=audience)  # warm up (each audience's vocabulary)
    times: dict[str | None, list[float]] = {g: [] for g in grants}
    load_before = os.getloadavg()[0]
    for _ in range(repeats):
        for q in qs:
            for g, audience in audiences.items():
                t0 = time.perf_counter()
                kn.engine.search(q, audience=audience)
                times[g].append((time.perf_counter() - t0) * 1000)
    load_after = os.getloadavg()[0]
    rows = []
    for g in grants:
        recalls, dense_times = [], []
        access = [g] if g else None
        for q in qs:
            ask = SearchRequest("dense", 10, dense=vectors[q], access=access, hnsw_ef=ef, with_payload=False)
            t0 = time.perf_counter()
            approx = {h.id for h in backend.search(ask)}
            dense_times.append((time.perf_counter() - t0) * 1000)
            exact_ask = SearchRequest(
                "dense", 10, dense=vectors[q], access=access, exact=True, with_payload=False
            )
            exact = {h.id for h in backend.search(exact_ask)}
            if exact:
                recalls.append(len(approx & exact) / len(exact))
        visible = backend.count(None, access=access)
        rows.append(
            {
                "grant": g or "(unfiltered)",
                "visible_chunks": visible,
                "visible_pct": round(100 * visible / max(1, total), 1),
                "p50_ms": round(percentile(times[g], 50), 2),
                "p95_ms": round(percentile(times[g], 95), 2),
                "dense_p95_ms": round(percentile(dense_times, 95), 2),
                "recall_at_10": round(sum(recalls) / max(1, len(recalls)), 4),
            }
        )
    return {
        "relabel_s": round(relabel_s, 1),
        "rebuild_s": round(rebuild_s, 1),
        "documents": sum(len(v) for v in groups.values()),
        "load_avg": [round(load_before, 2), round(load_after, 2)],
        "rows": rows,
    }


def run_engine(
    engine: str, copies: int, repeats: int, max_queries: int, access: bool = True
) -> dict[str, Any]:
    from knowledge.embeddings import build_embedder
    from knowledge.query import normalize_question
    from knowledge.service import Knowledge

    corpus = prepare_corpus(copies)
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"lore-bench-scale-{engine}"
    shutil.rmtree(data_dir, ignore_errors=True)
    sources = [
        {"name": f"copy{i:02d}", "type": "directory", "path": str(corpus / f"copy{i:02d}")}
        for i in range(copies)
    ]
    settings = settings_for(data_dir, sources, index={"engine": engine, "batch_docs": 64})
    base = build_embedder(settings.embedding)
    kn = Knowledge(settings, embedder=twin_embedder(base))
    kn.sync("copy00")  # warm the vector cache (the real model runs only the first time)
    kn.rebuild()
    rss_before = rss_mb()[0]

    started = time.perf_counter()
    for src in sources:
        result = kn.sync(src["name"])
        assert result.error is None, result.error
    full_s = time.perf_counter() - started
    chunks = kn.store.count_chunks()

    started = time.perf_counter()
    for src in sources:
        noop = kn.sync(src["name"])
        assert noop.chunks_embedded == 0 and noop.added == noop.changed == noop.deleted == 0
    noop_s = time.perf_counter() - started

    qs = [normalize_question(q) or q for q in questions()][:max_queries]
    engine_ = kn.engine
    for q in qs[:10]:
        engine_.search(q)
        engine_.search(q, source="copy03")
    query_model = kn.embedder.query_model
    plain, filtered, embed = [], [], []
    cpu_before = cpu_times()
    for _ in range(repeats):
        for q in qs:
            t0 = time.perf_counter()
            query_model.get_query_embedding(q)  # the model's share of a search, on its own
            embed.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            engine_.search(q)
            plain.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            hits = engine_.search(q, source="copy03")
            filtered.append((time.perf_counter() - t0) * 1000)
            assert all(h.source == "copy03" for h in hits)
    cpu_after = cpu_times()
    rss_now, rss_peak = rss_mb()
    permissions = measure_access(kn, qs, repeats) if access else None
    access_cpu = cpu_times()
    kn.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "engine": engine,
        "chunks": chunks,
        "documents": sum(1 for _ in corpus.rglob("*.md")),
        "full_index_s": round(full_s, 1),
        "noop_resync_s": round(noop_s, 1),
        "queries": len(plain),
        "embed_p50_ms": round(percentile(embed, 50), 2),
        "embed_p95_ms": round(percentile(embed, 95), 2),
        "p50_ms": round(percentile(plain, 50), 2),
        "p95_ms": round(percentile(plain, 95), 2),
        "filtered_p50_ms": round(percentile(filtered, 50), 2),
        "filtered_p95_ms": round(percentile(filtered, 95), 2),
        "steal_pct": round(100 * (cpu_after[1] - cpu_before[1]) / max(1, cpu_after[0] - cpu_before[0]), 1),
        "cpu": cpu_model(),
        "rss_mb": round(rss_now),
        "rss_peak_mb": round(rss_peak),
        "rss_model_and_python_mb": round(rss_before),
        "access": permissions,
        "access_steal_pct": round(
            100 * (access_cpu[1] - cpu_after[1]) / max(1, access_cpu[0] - cpu_after[0]), 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--engines", nargs="+", default=["edge", "qdrant-local"])
    parser.add_argument("--repeats", type=int, default=2)
    # Local mode scores sparse vectors in Python, seconds per query at 100k: sample it with fewer.
    parser.add_argument("--max-queries", type=int, default=1000, help="the first N eval questions")
    parser.add_argument(
        "--access",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure searches filtered by access grants of 1-100%% selectivity",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one engine, print JSON
    args = parser.parse_args()
    if args.one:
        result = run_engine(args.one, args.copies, args.repeats, args.max_queries, args.access)
        print("RESULT " + json.dumps(result), flush=True)
        return
    prepare_corpus(args.copies)
    rows = []
    for engine in args.engines:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            engine,
            "--copies",
            str(args.copies),
            "--repeats",
            str(args.repeats),
            "--max-queries",
            str(args.max_queries),
            "--access" if args.access else "--no-access",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{engine} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[len("RESULT ") :]))
    keys = [
        ("engine", "engine"),
        ("chunks", "chunks"),
        ("documents", "files"),
        ("full_index_s", "full index s (no model)"),
        ("noop_resync_s", "no-op resync s"),
        ("embed_p50_ms", "query embed p50 ms"),
        ("embed_p95_ms", "query embed p95 ms"),
        ("p50_ms", "retrieve p50 ms"),
        ("p95_ms", "retrieve p95 ms"),
        ("filtered_p50_ms", "filtered p50 ms"),
        ("filtered_p95_ms", "filtered p95 ms"),
        ("steal_pct", "CPU steal % (queries)"),
        ("rss_mb", "RSS MB"),
        ("rss_peak_mb", "peak RSS MB"),
    ]
    print("| " + " | ".join(label for _, label in keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k, _ in keys) + " |")
    for row in rows:
        if row.get("access"):
            access = row["access"]
            print(
                f"\n{row['engine']}, {row['chunks']} chunks: access labels of {access['documents']} "
                f"documents written in {access['relabel_s']} s (payload only), HNSW rebuilt in "
                f"{access['rebuild_s']} s; unfiltered retrieve "
                f"p95 {row['p95_ms']} ms; CPU steal {row['access_steal_pct']}%; load average "
                f"{access['load_avg'][0]} to {access['load_avg'][1]} on {os.cpu_count()} CPUs"
            )
            print(
                "| grant | visible chunks | visible % | retrieve p50 ms | retrieve p95 ms "
                "| dense p95 ms | recall@10 |"
            )
            print("|---|---|---|---|---|---|---|")
            for a in access["rows"]:
                print(
                    f"| {a['grant']} | {a['visible_chunks']} | {a['visible_pct']} | {a['p50_ms']} | "
                    f"{a['p95_ms']} | {a['dense_p95_ms']} | {a['recall_at_10']} |"
                )
    print(json.dumps(rows))
    print(f"CPU: {rows[0]['cpu']}" if rows else "")


if __name__ == "__main__":
    main()
