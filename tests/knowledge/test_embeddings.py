"""The embedding backends: ONNX Runtime exported from the same weights matches sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest

from config.settings import EmbeddingSettings
from knowledge import onnx
from knowledge.embeddings import build_embedder, local_model_path
from knowledge.onnx import blocks

TEXTS = [
    "How do I set up the VPN on my Mac?",
    "whats the per diem in new york",
    "Everyone gets 25 days of paid leave a year. Up to five unused days carry over into the next year.",
    "functools.lru_cache(maxsize=128, typed=False): decorator to wrap a function with a memoizing callable "
    "that saves up to the maxsize most recent calls.",
    "Ünïcödé, emoji 🎉 and punctuation — «quotes» … should embed too",
    "a",
    # Longer than the model's 256-token window: both must truncate the same way.
    " ".join(["The quick brown fox jumps over the lazy dog near the riverbank at dawn."] * 40),
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(local_model_path(EmbeddingSettings())), device="cpu")
    return np.asarray(model.encode(TEXTS, normalize_embeddings=True))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_matches_sentence_transformers(reference, tmp_path):
    embedder = build_embedder(EmbeddingSettings(backend="onnx", onnx_cache_dir=str(tmp_path / "onnx")))
    docs = np.asarray(embedder.document_model.get_text_embedding_batch(TEXTS))
    queries = np.asarray([embedder.query_model.get_query_embedding(t) for t in TEXTS])
    assert cosines(docs, reference).min() >= 0.999
    assert cosines(queries, reference).min() >= 0.999
    assert embedder.identity.name == "all-MiniLM-L6-v2" and embedder.identity.dim == 384
    exported = list((tmp_path / "onnx").glob("*/model.onnx"))
    assert len(exported) == 1  # exported once, into the cache dir
    stamp = exported[0].stat().st_mtime_ns
    again = build_embedder(EmbeddingSettings(backend="onnx", onnx_cache_dir=str(tmp_path / "onnx")))
    assert again.model.get_query_embedding("x") and exported[0].stat().st_mtime_ns == stamp  # reused


def test_blocks_cap_texts_and_padded_tokens():
    lengths = [5, 40, 10, 300, 10, 20]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)  # 0, 2, 4, 5, 1, 3
    assert list(blocks(order, lengths, max_texts=32, max_tokens=10**9)) == [order]
    assert list(blocks(order, lengths, max_texts=2, max_tokens=10**9)) == [[0, 2], [4, 5], [1, 3]]
    # 4 texts x 20 tokens fit in 80; a 5th of 40 would pad all to 40 (200); 300 is alone, over the cap.
    assert list(blocks(order, lengths, max_texts=32, max_tokens=80)) == [[0, 2, 4, 5], [1], [3]]
    assert [i for block in blocks(order, lengths, 3, 50) for i in block] == order  # each once, in order


def test_onnx_block_sizes_do_not_change_vectors():
    embedder = build_embedder(EmbeddingSettings(backend="onnx"))
    model = embedder.document_model
    whole = np.asarray(model.get_text_embedding_batch(TEXTS))
    model.block_tokens = 1  # one text per model call
    single = np.asarray(model.get_text_embedding_batch(TEXTS))
    assert cosines(whole, single).min() >= 0.99999  # same rows: unpadded and padded agree


def test_torch_backend_is_the_same_model(reference, embedder):
    torch_embedder = build_embedder(EmbeddingSettings(backend="torch"))
    vectors = np.asarray(torch_embedder.model.get_text_embedding_batch(TEXTS))
    assert cosines(vectors, reference).min() >= 0.9999
    assert torch_embedder.identity == embedder.identity  # either backend can query the other's index


def test_int8_is_close_but_its_own_identity(reference):
    # Benchmarks only (not a setting): bench/embedding_speed.py and retrieval_quality.py --int8.
    embedder = build_embedder(EmbeddingSettings(backend="onnx"), precision="int8")
    vectors = np.asarray(embedder.model.get_text_embedding_batch(TEXTS))
    assert cosines(vectors, reference).min() >= 0.95
    assert embedder.identity.name == "all-MiniLM-L6-v2:int8"  # never mixed with fp32 vectors


def test_idle_core_reads_the_runnable_count(tmp_path, monkeypatch):
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(onnx, "LOADAVG", loadavg)
    loadavg.write_text(f"1.52 0.98 0.61 {onnx._CPUS}/311 4242\n")  # every CPU taken, this thread included
    assert not onnx.idle_core()
    loadavg.write_text("0.10 0.20 0.30 0/311 4242\n")
    assert onnx.idle_core()
    loadavg.write_text("garbled\n")
    assert not onnx.idle_core()  # unknown counts as busy: the one-thread session
    loadavg.unlink()
    assert not onnx.idle_core()


def test_a_containers_cpu_quota_caps_the_usable_cpus(tmp_path, monkeypatch):
    cpu_max, quota, period = tmp_path / "cpu.max", tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us"
    monkeypatch.setattr(onnx, "CPU_MAX", cpu_max)
    monkeypatch.setattr(onnx, "CFS_QUOTA", quota)
    monkeypatch.setattr(onnx, "CFS_PERIOD", period)
    monkeypatch.setattr(onnx.os, "sched_getaffinity", lambda _pid: set(range(64)))  # a big host
    assert onnx._usable_cpus() == 64  # no cgroup files: no quota
    cpu_max.write_text("max 100000\n")
    assert onnx._usable_cpus() == 64
    cpu_max.write_text("100000 100000\n")  # --cpus 1
    assert onnx._usable_cpus() == 1
    cpu_max.write_text("250000 100000\n")  # --cpus 2.5: a third CPU's share is usable
    assert onnx._usable_cpus() == 3
    cpu_max.write_text("5000 100000\n")  # a twentieth of a CPU is still one
    assert onnx._usable_cpus() == 1
    cpu_max.unlink()
    quota.write_text("200000\n")  # cgroup v1
    period.write_text("100000\n")
    assert onnx._usable_cpus() == 2
    quota.write_text("-1\n")
    assert onnx._usable_cpus() == 64
    cpu_max.write_text("garbled\n")  # unreadable v2 falls through to v1
    assert onnx._usable_cpus() == 64


def test_a_question_gets_a_second_thread_only_while_a_core_is_idle(tmp_path, monkeypatch):
    embedder = build_embedder(EmbeddingSettings(backend="onnx"))  # threads 1, idle 2, index 2
    query, spare = embedder.query_model, embedder.document_model
    assert spare is query._spare()  # the indexing session doubles as the idle one: no third copy
    embedder.warm()
    # The search path's shortcut past LlamaIndex's wrapper gives LlamaIndex's vector.
    assert embedder.embed_query(TEXTS[1]) == query.get_query_embedding(TEXTS[1])
    runs = {"one thread": 0, "two threads": 0}

    def counting(session, name):
        run = session.run

        def counted(*args, **kwargs):
            runs[name] += 1
            return run(*args, **kwargs)

        monkeypatch.setattr(session, "run", counted)

    counting(query._session, "one thread")
    counting(spare._session, "two threads")
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(onnx, "LOADAVG", loadavg)
    loadavg.write_text("0.0 0.0 0.0 0/100 1\n")
    idle = [query.get_query_embedding(t) for t in TEXTS]
    assert runs == {"one thread": 0, "two threads": len(TEXTS)}
    loadavg.write_text(f"2.0 2.0 2.0 {onnx._CPUS}/100 1\n")
    busy = [query.get_query_embedding(t) for t in TEXTS]
    assert runs == {"one thread": len(TEXTS), "two threads": len(TEXTS)}
    assert np.array_equal(np.asarray(idle), np.asarray(busy))  # the same vectors either way, to the bit

    never = build_embedder(EmbeddingSettings(backend="onnx", idle_query_threads=1))
    assert never.query_model._spare is None
