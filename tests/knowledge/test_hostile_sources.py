"""A hostile source folder never fails a sync: every bad entry is one skip with its reason.

`lore index` runs as a real process (a symlink loop used to end it with a traceback and no
summary); a Git source reads its checkout through the same loader. The Celery worker's view
of the same folder is in tests/workers/test_hostile_source.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest

from tests.conftest import REPO, write
from tests.knowledge.hostile import GOOD, HOSTILE, OUTSIDE_MARKER, good_doc_ids, hostile_folder

LORE_BIN = str(Path(sys.executable).with_name("lore"))


def lore(
    args: list[str], config: Path, cwd: Path, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(LORE_CONFIG=str(config), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.update(TOKENIZERS_PARALLELISM="false")
    # A FIFO read would block forever: the timeout turns that into a failure.
    return subprocess.run(
        [*(prefix or []), LORE_BIN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def config_for(tmp: Path, root: Path) -> Path:
    config = tmp / "lore.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n\n[llm]\nprovider = "extractive"\n\n'
        f'[[sources]]\nname = "docs"\ntype = "directory"\npath = "{root}"\n'
    )
    return config


def skip_lines(stdout: str, source: str) -> dict[str, str]:
    return dict(re.findall(rf"^\s*skipped {source}:(\S+): (.+)$", stdout, flags=re.MULTILINE))


def indexed_doc_ids(make_knowledge, data: Path, source: str) -> set[str]:
    kn = make_knowledge(data_dir=data)
    return {doc for _chunk, doc in kn.store.chunk_ids(source)}


def test_lore_index_skips_every_hostile_entry_and_indexes_the_good_pages(tmp_path, make_knowledge):
    root = hostile_folder(tmp_path)
    config = config_for(tmp_path, root)

    result = lore(["index"], config, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    reasons = skip_lines(result.stdout, "docs")
    assert set(reasons) == set(HOSTILE), result.stdout
    for path, words in HOSTILE.items():
        assert words in reasons[path], (path, reasons[path])
    row = next(line for line in result.stdout.splitlines() if line.strip(" │┃|").startswith("docs"))
    assert re.search(rf"\b{len(GOOD)}\b.*\b{len(HOSTILE)}\b", row), row  # added ... skipped

    # The next sync is not stuck on the same entries: it runs, and a new page arrives.
    write(root, "it/wifi.md", "# Wi-Fi\n\nThe office Wi-Fi network is called Northwind-Staff.\n")
    again = lore(["index"], config, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(skip_lines(again.stdout, "docs")) == set(HOSTILE)

    kn = make_knowledge(data_dir=tmp_path / "data")
    assert {doc for _chunk, doc in kn.store.chunk_ids("docs")} == good_doc_ids("docs") | {"docs:it/wifi.md"}
    assert all(OUTSIDE_MARKER not in c.text for c in kn.engine.search("vault phrase secret", top_k=10))


def _drop_root_read_override() -> list[str] | None:
    """A command prefix under which chmod 000 really stops reads, or None if there is none.

    Root reads anything through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH; `setpriv` drops both
    from the bounding set, so the `lore` process (still uid 0) obeys file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps]


def test_unreadable_file_and_folder_are_skipped_with_their_reason(tmp_path, make_knowledge):
    prefix = _drop_root_read_override()
    if prefix is None:
        pytest.skip("running as root without setpriv: chmod 000 cannot stop root's reads here")
    root = tmp_path / "docs"
    for rel, text in GOOD.items():
        if rel != "alias.md":
            write(root, rel, text)
    locked = write(root, "locked.md", "# Locked\n\nNobody may read this page.\n")
    write(root, "sealed/inside.md", "# Sealed\n\nA page in a folder nobody may list.\n")
    locked.chmod(0)
    (root / "sealed").chmod(0)
    try:
        probe = subprocess.run([*prefix, "cat", str(locked)], capture_output=True)
        assert probe.returncode != 0, "the file is still readable: the test would prove nothing"
        result = lore(["index"], config_for(tmp_path, root), cwd=tmp_path, prefix=prefix)
    finally:
        locked.chmod(0o644)
        (root / "sealed").chmod(0o755)
    assert result.returncode == 0, result.stdout + result.stderr
    reasons = skip_lines(result.stdout, "docs")
    assert reasons == {
        "locked.md": "cannot read: Permission denied",
        "sealed": "cannot list folder: Permission denied",
    }, result.stdout
    ids = indexed_doc_ids(make_knowledge, tmp_path / "data", "docs")
    assert ids == good_doc_ids("docs") - {"docs:alias.md"}


def test_git_source_skips_hostile_links_in_its_checkout(tmp_path, make_knowledge):
    work = hostile_folder(tmp_path)
    (work / "pipe.md").unlink()  # Git cannot hold a FIFO
    repo = git.Repo.init(work, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test").set_value("user", "email", "t@example.com")
    repo.git.add("-A")
    repo.index.commit("a hostile handbook")

    kn = make_knowledge([{"name": "wiki", "type": "git", "repo": str(work)}])
    result = kn.sync("wiki")
    assert result.phase == "done" and result.error is None, result
    reasons = {s["path"]: s["reason"] for s in result.skipped}
    expected = {p: w for p, w in HOSTILE.items() if p != "pipe.md"}
    assert set(reasons) == set(expected), reasons
    for path, words in expected.items():
        assert words in reasons[path], (path, reasons[path])
    assert {d for _c, d in kn.store.chunk_ids("wiki")} == good_doc_ids("wiki")
    assert all(OUTSIDE_MARKER not in c.text for c in kn.engine.search("vault phrase secret", top_k=10))
