"""The non-default paths: OpenAI-compatible embeddings, and the shared Redis docstore of server mode."""

from __future__ import annotations

import uuid

import pytest

from knowledge.store import IndexStore
from tests.conftest import write


def test_openai_embeddings_through_an_openai_compatible_server(make_settings, embedder, tmp_path):
    from knowledge.embeddings import build_embedder
    from knowledge.service import Knowledge
    from tests.emulators.openai_embeddings import embedding_server

    root = tmp_path / "docs"
    write(root, "a.md", "# Parking\n\nStaff parking is on level two of the north garage.\n")
    write(root, "b.md", "# Lunch\n\nLunch is served in the canteen at noon.\n")
    with embedding_server(embedder.model) as server:
        settings = make_settings(
            [{"name": "d", "type": "directory", "path": str(root)}],
            embedding={
                "provider": "openai",
                "openai_model": "minilm-served",
                "openai_base_url": server["url"],
                "openai_api_key": "sk-test-key",
            },
        )
        served = build_embedder(settings.embedding)
        assert (
            served.identity.name == "openai:minilm-served" and served.identity.dim == 384
        )  # asked the server
        kn = Knowledge(settings, embedder=served)
        try:
            assert kn.sync("d").chunks_embedded == 2
            assert kn.store.collection_info()["model"] == "openai:minilm-served"
            assert kn.engine.search("where can I park my car", top_k=1)[0].path == "a.md"
        finally:
            kn.close()
    assert {c["body"]["model"] for c in server["calls"]} == {"minilm-served"}
    assert all(c["auth"] == "Bearer sk-test-key" for c in server["calls"])


@pytest.mark.redis
def test_server_mode_keeps_the_docstore_in_redis(make_settings):
    # No Qdrant server exists on this machine; the client connects lazily, so the docstore side
    # of server mode can still be exercised against the real Redis.
    prefix = f"lore-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        qdrant={"url": "http://127.0.0.1:1", "collection": prefix}, redis={"url": "redis://127.0.0.1:6379/15"}
    )
    first, second = IndexStore(settings), IndexStore(settings)  # two "workers", no local lock
    try:
        docs = first.docstore(f"{prefix}-a")
        docs.set_document_hash("a:one.md", "h1")
        first.put_state("sync", f"{prefix}-a", {"added": 1})
        assert second.docstore(f"{prefix}-a").get_document_hash("a:one.md") == "h1"
        assert second.get_state("sync", f"{prefix}-a") == {"added": 1}
        assert second.docstore(f"{prefix}-b").get_all_document_hashes() == {}  # sources stay apart
        assert not (settings.data_dir / "docstore.json").exists()
    finally:
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/15")
        for key in client.scan_iter(f"*{prefix}*"):
            client.delete(key)
