"""The model registry, serving the active model, promotion, rollback, the grace drop and the run lock.

Real engines (Qdrant Edge and qdrant-local), real MiniLM vectors. A "candidate" is made without
the trainer: a `full` model is the base MiniLM directory under the model's `st/` (so its vectors
are the base's, but it gets its own collection and identity); an adapter is a linear map.
A document written after the base index was built is what tells the collections apart: a
promotion's full re-index finds it, the base collection (not re-synced) doesn't.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import local_model_path
from knowledge.tuning import promotion, registry
from knowledge.tuning.lock import LockBusy, run_lock
from knowledge.tuning.train import Adapter
from tests.conftest import write

DOCS = {
    "it/vpn.md": "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta.\n",
    "hr/leave.md": "# Leave\n\nEveryone gets 25 days of paid leave a year. Five unused days carry over.\n",
    "expenses/per-diem.md": "# Per diem\n\nThe per diem in New York is 95 USD a day for meals.\n",
}
LATE = ("facilities/parking.md", "# Parking\n\nStaff parking is on level two of the north garage.\n")
PARKING = "where do staff park their cars"


@pytest.fixture(params=["edge", "qdrant-local"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel, text in DOCS.items():
        write(root, rel, text)
    return root


def sources(root: Path) -> list[dict[str, str]]:
    return [{"name": "hb", "type": "directory", "path": str(root)}]


def candidate(settings, method: str = "full", **fields):
    """A model that passed the gate: the base MiniLM as a `full` model, or an adapter `W`."""
    record = registry.create_run(settings, method)  # type: ignore[arg-type]
    if method == "full":
        registry.st_dir(settings, record.id).symlink_to(local_model_path(settings.embedding))
    else:
        weight = fields.pop("W", np.eye(384, dtype=np.float32))
        Adapter(weight, np.zeros(384, dtype=np.float32)).save(registry.adapter_file(settings, record.id))
    record.gate = registry.Gate(passed=True)
    for key, value in fields.items():
        setattr(record, key, value)
    registry.save(settings, record)
    return record


def top_path(kn, question: str) -> str | None:
    hits = kn.search(question, top_k=1)
    return hits[0].path if hits else None


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    import knowledge.service as service

    monkeypatch.setattr(service, "POLL_SECONDS", 0.1)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- records and the pointer -----------------------------------------------------


def test_records_round_trip_and_the_base_model_serves_first(make_settings):
    settings = make_settings()
    assert registry.serving_id(settings) == registry.BASE and registry.previous(settings) is None
    full = registry.create_run(settings, "full")
    adapter = registry.create_run(settings, "adapter")
    assert full.parent == registry.BASE and full.collection == f"lore-{full.id}"
    assert adapter.collection == "lore"  # an adapter searches its parent's documents
    full.pairs, full.abstain_below = {"judged": 3, "imported": 0, "curated": 1, "synthetic": 20}, 0.41
    full.after = {"held-out": {"recall@5": 0.8, "mrr": 0.6}}
    registry.save(settings, full)
    again = registry.load(settings, full.id)
    assert again == full and again.status == "candidate" and not again.built
    assert [r.id for r in registry.runs(settings)] == [adapter.id, full.id]  # newest first
    refused = registry.refuse(settings, adapter.id, ["held-out MRR +0.001 < +0.02"])
    assert refused.status == "refused" and refused.gate.reasons == ["held-out MRR +0.001 < +0.02"]
    with pytest.raises(promotion.PromotionError, match="refused"):
        promotion.promote(settings, adapter.id)
    with pytest.raises(promotion.PromotionError, match="not passed the gate"):
        promotion.promote(settings, full.id)
    assert registry.serving_id(settings) == registry.BASE
    with pytest.raises(registry.UnknownModel):
        registry.load(settings, "nope")


def test_the_server_alias_switches_atomically_under_readers(tmp_path):
    """The server-mode pointer, on qdrant-client's local mode (same alias calls as a server): the
    configured collection is a real one, so the pointer is a second name; readers listing aliases
    in a loop during switches always see exactly one serving model, and can search its collection."""
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        for name in ("lore", "lore-m1", "lore-m2"):
            client.create_collection(
                name, vectors_config=qm.VectorParams(size=2, distance=qm.Distance.COSINE)
            )
            client.upsert(name, [qm.PointStruct(id=1, vector=[1.0, 0.0], payload={"in": name})])
        pointer = registry.AliasPointer(client, "lore")
        assert pointer.read() is None  # never switched: the base model, from `lore` itself
        seen, errors, stop = [], [], threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    found = pointer.read()
                    collection = found[1] if found else "lore"
                    hit = client.query_points(collection, query=[1.0, 0.0], limit=1).points[0]
                    seen.append((found, hit.payload["in"]))
                except Exception as exc:
                    errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for model, collection in [
                ("m1", "lore-m1"),
                ("m2", "lore-m2"),
                ("base", "lore"),
                ("m1", "lore-m1"),
            ]:
                pointer.write(model, collection)
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        assert not errors
        assert pointer.read() == ("m1", "lore-m1")
        assert [a.alias_name for a in client.get_aliases().aliases] == ["lore--serving--m1"]
        assert all((found[1] if found else "lore") == where for found, where in seen)
        assert {where for _, where in seen} >= {"lore-m1"}
    finally:
        client.close()


def test_server_mode_reads_and_moves_the_alias(make_settings, tmp_path, monkeypatch):
    """The server branch of `serving_id` / `switch_pointer` / `pointer_stamp`, with the client a
    real local-mode Qdrant (no server runs here) standing in for the server's."""
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

    settings = make_settings(qdrant={"url": "http://127.0.0.1:1", "collection": "kb"})
    client = QdrantClient(path=str(tmp_path / "q"))
    monkeypatch.setitem(registry._alias_clients, ("http://127.0.0.1:1", ""), client)
    try:
        model = registry.create_run(settings, "full")
        client.create_collection(
            model.collection, vectors_config=qm.VectorParams(size=2, distance=qm.Distance.COSINE)
        )
        assert registry.serving_id(settings) == registry.BASE and registry.pointer_stamp(settings) is None
        registry.switch_pointer(settings, model)
        assert registry.serving_id(settings) == model.id and registry.serving(settings).status == "serving"
        assert registry.pointer_stamp(settings) == (model.id, f"kb-{model.id}")
        assert not (settings.data_dir / "models" / "serving.json").exists()  # no file pointer in server mode
    finally:
        client.close()


# -- serving, promotion, rollback ------------------------------------------------


def test_promote_a_full_model_rebuilds_beside_the_old_one_and_rollback_restores_it(
    make_knowledge, docs, engine, fast_poll
):
    kn = make_knowledge(sources(docs), index={"engine": engine}, tuning={"grace": "1h"})
    settings = kn.settings
    assert kn.sync("hb").error is None
    write(docs, *LATE)  # not in the base collection until its next sync
    assert top_path(kn, PARKING) != LATE[0]
    model = candidate(settings, abstain_below=0.2)

    answered, errors, stop = [], [], threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                answered.append(top_path(kn, "how many days of paid leave do I get"))
            except Exception as exc:
                errors.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        phases = []
        promoted = promotion.promote(settings, model.id, lambda p: phases.append(p.phase))
        wait_for(lambda: kn.view.model == model.id or bool(kn.follow()))
        time.sleep(0.3)  # a few questions on the new model too
    finally:
        stop.set()
        asker.join()
    assert not errors and answered and set(answered) == {"hr/leave.md"}
    assert "indexing" in phases and promoted.status == "serving" and promoted.built
    assert registry.serving_id(settings) == model.id
    assert registry.previous(settings).id == registry.BASE
    assert registry.load(settings, registry.BASE).status == "retired"
    # The instance built before the switch follows it: the new collection, embedder and threshold.
    assert kn.store.collection == f"lore-{model.id}"
    assert kn.store.collection_info()["model"] == f"lore-tuned:{model.id}"
    assert kn.engine.thresholds("hb").floor == 0.2
    assert top_path(kn, PARKING) == LATE[0]  # found by the new model's full re-index

    back = promotion.rollback(settings)
    assert back.id == registry.BASE and registry.serving_id(settings) == registry.BASE
    assert registry.load(settings, model.id).status == "retired"
    wait_for(lambda: kn.view.model == registry.BASE or bool(kn.follow()))
    assert kn.store.collection == "lore"
    assert top_path(kn, PARKING) != LATE[0]  # the previous collection, as it was: no re-index
    assert top_path(kn, "how many days of paid leave do I get") == "hr/leave.md"
    assert kn.engine.thresholds("hb").floor != 0.2


def test_an_adapter_switches_without_a_reindex_and_maps_only_queries(
    make_knowledge, docs, embedder, fast_poll
):
    kn = make_knowledge(sources(docs))
    settings = kn.settings
    assert kn.sync("hb").error is None
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(384, 384)))[0].astype(np.float32)
    model = candidate(settings, "adapter", W=rotation, abstain_below=0.3)
    view = registry.view_of(settings, model)
    mapped = registry.embedder_for(view, embedder)
    q = np.asarray(embedder.query_model.get_query_embedding("parking"))
    assert np.allclose(mapped.query_model.get_query_embedding("parking"), rotation @ q, atol=1e-5)
    assert np.allclose(
        mapped.document_model.get_text_embedding_batch(["parking"])[0],
        embedder.document_model.get_text_embedding_batch(["parking"])[0],
    )
    assert mapped.identity == embedder.identity  # it searches the base model's collection

    identity = candidate(settings, "adapter", abstain_below=0.3)  # W = I: the base's answers
    promotion.promote(settings, identity.id, embedder=embedder)
    assert registry.load(settings, registry.BASE).built  # no new collection was built
    wait_for(lambda: kn.view.model == identity.id or bool(kn.follow()))
    assert kn.store.collection == "lore"
    assert top_path(kn, "how many days of paid leave do I get") == "hr/leave.md"
    assert kn.engine.thresholds("hb").floor == 0.3
    configured = make_knowledge(sources(docs), data_dir=settings.data_dir, retrieval={"abstain_below": 0.5})
    kn.close()
    assert configured.engine.thresholds("hb").floor == 0.5  # lore.toml wins over the model's value


def test_the_old_collection_is_dropped_after_the_grace_and_rollback_rebuilds_it(make_knowledge, docs, engine):
    kn = make_knowledge(sources(docs), index={"engine": engine}, tuning={"grace": "1h"})
    settings = kn.settings
    assert kn.sync("hb").error is None
    model = candidate(settings)
    promotion.promote(settings, model.id)
    assert promotion.drop_expired(settings) == []  # within the grace
    kn.close()  # (a running process closes the old store RETIRED_CLOSE_AFTER after the switch)
    later = registry.load(settings, registry.BASE).retired_at + registry_grace(settings) * 2
    assert promotion.drop_expired(settings, now=later) == ["lore"]
    assert not registry.load(settings, registry.BASE).built
    assert registry.load(settings, model.id).built  # the serving collection is never dropped
    write(docs, *LATE)
    assert promotion.rollback(settings).id == registry.BASE  # re-indexed, since it was dropped
    assert registry.load(settings, registry.BASE).built
    again = make_knowledge(sources(docs), index={"engine": engine}, data_dir=settings.data_dir)
    assert again.store.collection == "lore" and top_path(again, PARKING) == LATE[0]


def registry_grace(settings):
    from config.settings import parse_duration

    return parse_duration(settings.tuning.grace)


_PROMOTE_CHILD = """
import sys, time
from config.settings import Settings
from knowledge.tuning import promotion
settings = Settings.model_validate_json(sys.argv[1])
def progress(p):
    if p.phase == "indexing" and p.chunks_embedded:
        print("indexing", flush=True)
        time.sleep(60)
promotion.promote(settings, sys.argv[2], progress)
"""


def test_kill_9_during_the_reindex_leaves_the_old_model_serving_and_the_next_promotion_works(
    make_knowledge, docs, engine, embedder, tmp_path
):
    kn = make_knowledge(sources(docs), index={"engine": engine, "batch_docs": 1})
    settings = kn.settings
    assert kn.sync("hb").error is None
    kn.close()  # the child owns the embedded data dir while it promotes
    model = candidate(settings)
    child = subprocess.Popen(
        [sys.executable, "-c", _PROMOTE_CHILD, settings.model_dump_json(), model.id],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert child.stdout.readline().strip() == "indexing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert registry.serving_id(settings) == registry.BASE
    assert not registry.load(settings, model.id).built
    after = make_knowledge(
        sources(docs), index={"engine": engine, "batch_docs": 1}, data_dir=settings.data_dir
    )
    assert after.store.collection == "lore"
    assert top_path(after, "how many days of paid leave do I get") == "hr/leave.md"
    assert promotion.drop_expired(settings) == [f"lore-{model.id}"]  # the half-built one
    promotion.promote(settings, model.id, embedder=embedder)
    assert after.follow(force=True) and after.store.collection == f"lore-{model.id}"
    assert after.store.count_chunks() == len(DOCS)
    assert top_path(after, "how many days of paid leave do I get") == "hr/leave.md"


# -- the run lock ----------------------------------------------------------------


def _second_waits(settings) -> None:
    order: list[str] = []
    busy: list[BaseException] = []

    def try_now() -> None:
        try:
            with run_lock(settings, timeout=0.2):
                busy.append(AssertionError("got the lock while it was held"))
        except LockBusy as exc:
            busy.append(exc)

    def second() -> None:
        with run_lock(settings):
            order.append("second")

    with run_lock(settings):
        with run_lock(settings):  # re-entrant in one thread
            order.append("first")
        other = threading.Thread(target=try_now)
        other.start()
        other.join()
        assert isinstance(busy[0], LockBusy)
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        assert order == ["first"]  # still waiting
    waiter.join(timeout=5)
    assert order == ["first", "second"]


def test_a_second_run_waits_for_the_first_file_lock(make_settings):
    _second_waits(make_settings())


@pytest.mark.redis
def test_a_second_run_waits_for_the_first_redis_lock(make_settings):
    _second_waits(
        make_settings(
            redis={"url": "redis://127.0.0.1:6379/15", "prefix": f"lore-test-{uuid.uuid4().hex[:8]}:"}
        )
    )
