"""`Knowledge.current_versions`: each document's current content hash, for "changed since?"."""

from __future__ import annotations

from tests.conftest import write


def test_current_versions_follow_edits_and_deletions(make_knowledge, tmp_path):
    docs = tmp_path / "docs"
    write(docs, "vpn.md", "# VPN\n\nInstall WireGuard from Self Service.\n")
    write(docs, "leave.md", "# Leave\n\nEveryone gets 25 days of paid leave.\n")
    kn = make_knowledge([{"name": "hb", "type": "directory", "path": str(docs)}])
    assert kn.sync("hb").error is None
    answer = kn.answer("how do I install the VPN?")
    used = {c.doc_id: c.doc_hash for c in answer.chunks}
    assert used.get("hb:vpn.md")

    before = kn.current_versions(["hb:vpn.md", "hb:leave.md", "hb:nope.md"])
    assert before["hb:vpn.md"] == used["hb:vpn.md"]  # what the answer used is what is indexed
    assert before["hb:leave.md"] and before["hb:nope.md"] is None

    write(docs, "vpn.md", "# VPN\n\nWe moved to Tailscale.\n")
    (docs / "leave.md").unlink()
    assert kn.sync("hb").error is None
    after = kn.current_versions(["hb:vpn.md", "hb:leave.md"])
    assert after["hb:vpn.md"] not in (None, used["hb:vpn.md"])  # changed since the answer
    assert after["hb:leave.md"] is None  # gone
    assert kn.current_versions([]) == {}
