"""Permissions in the index: access labels at sync, and the filter inside every search.

Real Qdrant Edge and local mode, real MiniLM embeddings. A restricted document holds a marker
word; an audience without the grant must never get it back, from any search mode, and top-k
must still be filled from what it may read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge.access import ACCESS_KEY, PUBLIC_AUDIENCE, AccessPolicy, Audience
from knowledge.backends import SearchRequest
from tests.conftest import write
from tests.knowledge.test_sources import site  # noqa: F401 - the real HTTP server fixture

MARKER = "zebraquartz"
PUBLIC_DOCS = {
    "it/vpn.md": "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta.\n",
    "it/laptops.md": "# Laptops\n\nEvery engineer gets a 14-inch laptop, replaced every three years.\n",
    "travel/per-diem.md": "# Per diem\n\nThe per diem in New York is 95 USD a day for meals.\n",
    "benefits/salary.md": "# Pay days\n\nSalaries are paid on the 25th of each month by bank transfer.\n",
}
RESTRICTED_DOCS = {
    "hr/salaries.md": "# Salary bands\n\nThe salary band for a senior engineer is 140k to 165k. "
    f"The code word of the compensation review is {MARKER}.\n",
    "hr/reviews.md": "# Performance reviews\n\nCalibration meetings for performance reviews are in March; "
    "ratings stay confidential.\n",
    "finance/board.md": "# Board pack\n\nThe board pack for the quarter is prepared by the CFO's office.\n",
}
RULES = [
    {"glob": "hr/**", "access": ["group:hr"]},
    {"glob": "finance/**", "access": ["group:finance", "channel:slack:CFIN"]},
]
GROUPS = {"hr": ["slack:UHR"], "finance": ["slack:UFIN"]}
MODES = ("dense", "sparse", "hybrid")


def make_corpus(root: Path) -> Path:
    for rel, text in {**PUBLIC_DOCS, **RESTRICTED_DOCS}.items():
        write(root, rel, text)
    return root


def hb(root: Path, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": "hb",
        "type": "directory",
        "path": str(root),
        "access_rules": RULES if rules is None else rules,
    }


def hr_person(policy: AccessPolicy) -> Audience:
    return policy.person(["slack:UHR"])


@pytest.fixture(scope="module", params=["edge", "qdrant-local"])
def indexed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> Iterator[Any]:
    """The corpus, plus a public `wiki` source, indexed once per engine (read-only tests)."""
    from config.settings import Settings
    from knowledge.service import Knowledge

    tmp = tmp_path_factory.mktemp(f"access-{request.param}")
    wiki = tmp / "wiki"
    write(
        wiki,
        "canteen.md",
        "# Canteen\n\nLunch is served in the canteen from noon; salaries are not discussed.\n",
    )
    settings = Settings(
        data_dir=tmp / "data",
        sources=[hb(make_corpus(tmp / "docs")), {"name": "wiki", "type": "directory", "path": str(wiki)}],
        groups=GROUPS,
        index={"engine": request.param},
        llm={"provider": "extractive"},
    )
    kn = Knowledge(settings, embedder=embedder)
    assert kn.sync("hb").error is None and kn.sync("wiki").error is None
    yield kn
    kn.close()


def paths(chunks: list[Any]) -> list[str]:
    return [c.path for c in chunks]


# -- the filter inside the searches ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_restricted_chunks_never_reach_an_audience_without_the_grant(indexed, mode):
    question = f"what is the salary band of a senior engineer, code word {MARKER}"
    everything = indexed.engine.search(question, top_k=10, mode=mode)
    assert "hr/salaries.md" in paths(everything)  # unfiltered (reviewers, evals) sees it
    for audience in (
        PUBLIC_AUDIENCE,
        indexed.policy.person(["slack:UFIN"]),
        indexed.policy.channel("slack", "C1"),
    ):
        found = indexed.engine.search(question, top_k=10, mode=mode, audience=audience)
        assert found, (mode, audience)  # top-k is still filled, from what it may read
        assert not [c for c in found if c.path.startswith("hr/")], (mode, audience, paths(found))
        assert all(MARKER not in c.text and audience.can_read(c.access) for c in found)
    hr = indexed.engine.search(question, top_k=10, mode=mode, audience=hr_person(indexed.policy))
    assert hr[0].path == "hr/salaries.md" and hr[0].access == ["group:hr"]


def test_a_channel_grant_opens_exactly_that_channel(indexed):
    question = "who prepares the board pack"
    channel = indexed.engine.search(question, top_k=3, audience=indexed.policy.channel("slack", "CFIN"))
    other = indexed.engine.search(question, top_k=10, audience=indexed.policy.channel("slack", "COTHER"))
    assert channel[0].path == "finance/board.md"
    assert "finance/board.md" not in paths(other)


def test_answers_carry_the_audience_and_each_chunk_its_access(indexed):
    answer = indexed.answer("what is the code word of the compensation review?", audience=PUBLIC_AUDIENCE)
    assert answer.audience == ["public"] and answer.withheld == 0
    assert (
        MARKER not in answer.text
        and "140k" not in answer.text
        and all(c.access == ["public"] for c in answer.chunks)
    )
    assert all(MARKER not in c.title + c.path for c in answer.citations)
    hr = indexed.answer("what is the salary band for a senior engineer?", audience=hr_person(indexed.policy))
    assert "140k" in hr.text and hr.audience == sorted(hr_person(indexed.policy).grants)
    unfiltered = indexed.answer("what is the salary band for a senior engineer?")
    assert unfiltered.audience == [] and {"group:hr"} in [set(c.access) for c in unfiltered.chunks]


def test_a_word_only_restricted_documents_use_is_missing_for_everyone_else(indexed):
    question = f"what is {MARKER}?"
    public = indexed.answer(question, audience=PUBLIC_AUDIENCE)
    assert MARKER in public.missing_terms and public.abstained  # as if it were nowhere at all
    hr = indexed.answer(question, audience=hr_person(indexed.policy))
    assert MARKER not in hr.missing_terms


def test_no_grants_or_no_sources_find_nothing(indexed):
    nobody = Audience(frozenset())
    assert indexed.engine.search("vpn", top_k=5, audience=nobody) == []
    assert indexed.engine.search("vpn", top_k=5, sources=[]) == []
    assert indexed.store.backend.count(None, access=[]) == 0


def test_the_sources_filter_keeps_a_channel_to_its_sources(indexed):
    for mode in MODES:
        wiki = indexed.engine.search("salaries lunch", top_k=10, mode=mode, sources=["wiki"])
        assert {c.source for c in wiki} == {"wiki"}, mode
    both = indexed.engine.search("salary", top_k=20, sources=["wiki", "hb"], audience=PUBLIC_AUDIENCE)
    assert {c.source for c in both} == {"wiki", "hb"} and not [c for c in both if c.path.startswith("hr/")]
    answer = indexed.answer("when is lunch served?", sources=["wiki"], audience=PUBLIC_AUDIENCE)
    assert [c.source for c in answer.citations] == ["wiki"]


def test_withheld_counts_what_the_asker_could_see_and_the_channel_may_not(indexed):
    channel, asker = indexed.policy.channel("slack", "C1"), hr_person(indexed.policy)
    question = "what is the salary band for a senior engineer?"
    answer = indexed.answer(question, audience=channel, wider=asker)
    assert answer.withheld >= 1 and "140k" not in answer.text
    assert answer.audience == sorted(channel.grants)
    assert indexed.answer(question, audience=channel).withheld == 0
    assert indexed.answer(question, audience=asker, wider=asker).withheld == 0
    assert indexed.answer(question, audience=channel, wider=indexed.policy.person(["slack:UX"])).withheld == 0


def test_restricted_chunks_that_only_fill_the_top_k_are_not_withheld_matches(indexed):
    # Nothing restricted is about the VPN, but in a small corpus restricted chunks still fill the
    # wider search's top k: they are not matches the channel answer left out (no "Answer
    # privately" to offer), only chunks as relevant as what the answer would abstain on.
    channel, asker = indexed.policy.channel("slack", "C1"), hr_person(indexed.policy)
    assert indexed.answer("which VPN client do I install?", audience=channel, wider=asker).withheld == 0


def test_visible_documents_lists_what_an_audience_may_read(indexed):
    public = indexed.visible_documents(PUBLIC_AUDIENCE)
    assert public == {"hb": sorted(PUBLIC_DOCS), "wiki": ["canteen.md"]}
    hr = indexed.visible_documents(indexed.policy.principal("group:hr"))
    assert hr["hb"] == sorted([*PUBLIC_DOCS, "hr/reviews.md", "hr/salaries.md"])
    fin = indexed.visible_documents(indexed.policy.principal("channel:slack:CFIN"))
    assert "finance/board.md" in fin["hb"] and "hr/salaries.md" not in fin["hb"]
    rows = {r["name"]: r for r in indexed.sources_status()}
    assert rows["hb"]["access"] == "public; 2 rules" and rows["wiki"]["access"] == "public"


# -- top-k is filled from what the audience may read -----------------------------------------


@pytest.mark.parametrize("engine", ["edge", "qdrant-local"])
def test_top_k_is_filled_past_fifty_restricted_near_duplicates(make_knowledge, tmp_path, engine):
    root = tmp_path / "docs"
    question = "Where do staff park their cars in the north garage?"
    for i in range(50):
        write(
            root,
            f"restricted/parking-{i:02d}.md",
            "# Where staff park\n\nWhere do staff park their cars in the north garage? "
            f"Staff park their cars in the north garage, level two (bay {i}).\n",
        )
    write(
        root,
        "facilities/garage.md",
        "# Garage\n\nEmployees may leave vehicles on the upper deck of the garage.\n",
    )
    for rel, text in PUBLIC_DOCS.items():
        write(root, rel, text)
    kn = make_knowledge(
        [hb(root, [{"glob": "restricted/**", "access": ["group:exec"]}])],
        groups={"exec": ["slack:UEXEC"]},
        index={"engine": engine},
    )
    assert kn.sync("hb").error is None
    for mode in MODES:
        unfiltered = kn.engine.search(question, top_k=50, mode=mode)
        assert len(unfiltered) == 50 and all(c.path.startswith("restricted/") for c in unfiltered), mode
        public = kn.engine.search(question, top_k=5, mode=mode, audience=PUBLIC_AUDIENCE)
        assert "facilities/garage.md" in paths(public), (mode, paths(public))
        assert not [c for c in public if c.path.startswith("restricted/")]
        # Filled: dense and hybrid rank every public chunk; BM25 only those sharing a word.
        assert len(public) == (1 if mode == "sparse" else 5), (mode, paths(public))


# -- rule changes and old indexes: payload only, nothing re-embedded -------------------------


def reopen(
    make_knowledge: Callable[..., Any], old: Any, root: Path, rules: list[dict[str, Any]], **over: Any
) -> Any:
    old.close()
    return make_knowledge([hb(root, rules)], groups=GROUPS, data_dir=old.settings.data_dir, **over)


@pytest.mark.parametrize("engine", ["edge", "qdrant-local"])
def test_a_rule_change_relabels_without_reembedding_and_back(make_knowledge, tmp_path, engine):
    root = make_corpus(tmp_path / "docs")
    question = "what is the salary band for a senior engineer?"
    kn = make_knowledge([hb(root, [])], groups=GROUPS, index={"engine": engine})
    assert kn.sync("hb").error is None
    assert kn.engine.search(question, top_k=1, audience=PUBLIC_AUDIENCE)[0].path == "hr/salaries.md"
    chunks = kn.store.count_chunks()

    kn = reopen(make_knowledge, kn, root, RULES, index={"engine": engine})
    restricted = kn.sync("hb")
    assert (restricted.chunks_embedded, restricted.changed, restricted.relabelled) == (0, 0, 3)
    assert "hr/salaries.md" not in paths(kn.engine.search(question, top_k=10, audience=PUBLIC_AUDIENCE))
    assert MARKER not in kn.answer(question, audience=PUBLIC_AUDIENCE).text
    assert kn.engine.search(question, top_k=1, audience=hr_person(kn.policy))[0].path == "hr/salaries.md"
    assert kn.store.count_chunks() == chunks
    assert kn.sync("hb").relabelled == 0  # recorded: nothing to do the next time

    kn = reopen(make_knowledge, kn, root, [], index={"engine": engine})
    public = kn.sync("hb")
    assert (public.chunks_embedded, public.relabelled) == (0, 3)
    assert kn.engine.search(question, top_k=1, audience=PUBLIC_AUDIENCE)[0].path == "hr/salaries.md"


def strip_access(kn: Any) -> None:
    """Make the index look as one built before access labels: no `access` field, no index on it,
    no recorded access state."""
    backend = kn.store.backend
    if kn.store.engine == "edge":
        import qdrant_edge as qe

        shard = backend._shard
        ids = [point_id for point_id, _p, _d in backend.scroll()]
        shard.update(qe.UpdateOperation.delete_payload(ids, [ACCESS_KEY]))
        shard.update(qe.UpdateOperation.delete_field_index(ACCESS_KEY))
        shard.flush()
        assert ACCESS_KEY not in shard.info().payload_schema
    else:
        from qdrant_client.http import models as qm

        ids = [point_id for point_id, _p, _d in backend.scroll()]
        backend.client.delete_payload(
            backend.collection, keys=[ACCESS_KEY], points=qm.PointIdsList(points=ids)
        )
    kn.store.delete_state("access", "hb")
    kn.store.persist()


@pytest.mark.parametrize("engine", ["edge", "qdrant-local"])
def test_an_index_from_before_access_labels_is_labelled_by_the_next_sync(make_knowledge, tmp_path, engine):
    root = make_corpus(tmp_path / "docs")
    kn = make_knowledge([hb(root)], groups=GROUPS, index={"engine": engine})
    assert kn.sync("hb").error is None
    strip_access(kn)
    chunks = kn.store.count_chunks()
    assert all(ACCESS_KEY not in p for _i, p, _d in kn.store.backend.scroll(None, [ACCESS_KEY, "path"]))

    kn = reopen(make_knowledge, kn, root, RULES, index={"engine": engine})
    if engine == "edge":  # the missing keyword index is made when the collection is opened
        assert ACCESS_KEY in kn.store.backend._shard.info().payload_schema
    # Unlabelled chunks match no audience (fail closed); unfiltered, they are nobody's.
    assert kn.engine.search("vpn", top_k=5, audience=PUBLIC_AUDIENCE) == []
    assert kn.engine.search("vpn", top_k=1)[0].access == []
    assert [row["unlabelled"] for row in kn.sources_status()] == [True]  # what serve warns about
    labelled = kn.sync("hb")
    assert [row["unlabelled"] for row in kn.sources_status()] == [False]
    assert (labelled.chunks_embedded, labelled.unchanged, labelled.relabelled) == (0, 7, 7)
    assert kn.store.count_chunks() == chunks
    assert (
        kn.store.backend.count(None, access=["public"])
        + kn.store.backend.count(None, access=["group:hr", "group:finance"])
        == chunks
    )
    assert (
        kn.engine.search("how do I set up the VPN", top_k=1, audience=PUBLIC_AUDIENCE)[0].path == "it/vpn.md"
    )
    hidden = kn.engine.search("salary band senior engineer", top_k=10, audience=PUBLIC_AUDIENCE)
    assert not [c for c in hidden if c.path.startswith("hr/")]


def test_access_is_not_in_the_hash_or_the_embedded_text(make_knowledge, tmp_path):
    root = make_corpus(tmp_path / "docs")
    kn = make_knowledge([hb(root)], groups=GROUPS)
    kn.sync("hb")
    [(_id, payload, dense)] = [
        row
        for row in kn.store.backend.scroll(
            {"doc_id": "hb:hr/salaries.md"}, ["access", "text"], with_dense=True
        )
    ][:1]
    plain = make_knowledge([hb(root, [])], groups=GROUPS, data_dir=tmp_path / "plain")
    plain.sync("hb")
    [(_pid, _payload, plain_dense)] = [
        row
        for row in plain.store.backend.scroll({"doc_id": "hb:hr/salaries.md"}, ["access"], with_dense=True)
    ][:1]
    assert payload[ACCESS_KEY] == ["group:hr"] and _payload[ACCESS_KEY] == ["public"]
    assert dense == plain_dense  # same vector whatever the label
    assert (
        kn.store.docstore("hb").get_all_document_hashes()
        == plain.store.docstore("hb").get_all_document_hashes()
    )


def test_website_rules_match_the_url_path(make_knowledge, site):  # noqa: F811
    rules = [{"glob": "/wifi/printing", "access": ["group:it"]}]
    kn = make_knowledge(
        [{"name": "w", "type": "website", "url": site + "/", "max_depth": 2, "access_rules": rules}],
        groups={"it": ["web:alice"]},
    )
    assert kn.sync("w").error is None
    labels = {p["url"]: p[ACCESS_KEY] for _i, p, _d in kn.store.backend.scroll(None, ["url", ACCESS_KEY])}
    assert labels == {
        site + "/": ["public"],
        site + "/wifi": ["public"],
        site + "/wifi/printing": ["group:it"],
    }
    assert kn.visible_documents(kn.policy.principal("web:alice"))["w"] == ["/", "/wifi", "/wifi/printing"]


def test_a_rule_that_matches_nothing_is_a_warning(make_knowledge, tmp_path, caplog):
    root = make_corpus(tmp_path / "docs")
    kn = make_knowledge([hb(root, [*RULES, {"glob": "payrol/**", "access": ["group:hr"]}])], groups=GROUPS)
    with caplog.at_level("WARNING", logger="knowledge.sync"):
        assert kn.sync("hb").error is None
    warned = [r.getMessage() for r in caplog.records if "matches no document" in r.getMessage()]
    assert warned == ["hb: the access rule 'payrol/**' matches no document of the source (a typo?)"]


# -- the Qdrant server path and the command line ---------------------------------------------


def test_the_server_backend_filters_inside_the_query():
    from qdrant_client.http import models as qm

    from knowledge.backends.qdrant import QdrantBackend

    # No server on this machine: the request a server would get is what can be checked.
    backend = QdrantBackend("c", url="http://127.0.0.1:1", timeout=1)
    request = backend._request(
        SearchRequest(
            "dense",
            5,
            dense=[0.1, 0.2],
            where={"source": "hb"},
            access=["public", "group:hr"],
            sources=["hb", "wiki"],
        )
    )
    assert request.filter == qm.Filter(
        must=[
            qm.FieldCondition(key="source", match=qm.MatchValue(value="hb")),
            qm.FieldCondition(key="access", match=qm.MatchAny(any=["group:hr", "public"])),
            qm.FieldCondition(key="source", match=qm.MatchAny(any=["hb", "wiki"])),
        ]
    )
    assert backend.search(SearchRequest("dense", 5, dense=[0.1], access=[])) == []  # never asks
    assert backend.count({"doc_id": []}) == 0


def test_lore_sources_shows_access_and_what_a_principal_sees(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app

    make_corpus(tmp_path / "docs")
    (tmp_path / "lore.toml").write_text(
        '[llm]\nprovider = "extractive"\n\n[groups]\nhr = ["slack:UHR"]\nfinance = ["slack:UFIN"]\n\n'
        '[[sources]]\nname = "hb"\ntype = "directory"\npath = "docs"\n\n'
        '[[sources.access_rules]]\nglob = "hr/**"\naccess = ["group:hr"]\n\n'
        '[[sources.access_rules]]\nglob = "finance/**"\naccess = ["group:finance"]\n'
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["index"], catch_exceptions=False).exit_code == 0
    table = runner.invoke(app, ["sources"], env={"COLUMNS": "250"}, catch_exceptions=False).stdout
    assert "public; 2 rules" in table
    seen = json.loads(
        runner.invoke(app, ["sources", "--as", "slack:UHR", "--json"], catch_exceptions=False).stdout
    )
    assert "group:hr" in seen["audience"]["grants"] and "hr/salaries.md" in seen["sources"]["hb"]
    assert "finance/board.md" not in seen["sources"]["hb"]
    text = runner.invoke(app, ["sources", "--as", "public"], catch_exceptions=False).stdout
    assert "hb: 4 documents" in text and "it/vpn.md" in text and "hr/" not in text
    bad = runner.invoke(app, ["sources", "--as", "group:nope"])
    assert bad.exit_code == 2 and "unknown group 'nope'" in bad.output
