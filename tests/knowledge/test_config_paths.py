"""Relative paths in lore.toml are relative to the file; from the environment, to the working
directory. `lore` runs as a real process started somewhere else, as a service manager would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, write

LORE_BIN = str(Path(sys.executable).with_name("lore"))


def lore(args: list[str], cwd: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **env_vars)
    return subprocess.run([LORE_BIN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    write(proj, "docs/vpn.md", "# VPN\n\nInstall WireGuard from Self Service and sign in with Okta.\n")
    write(proj, "docs/leave.md", "# Leave\n\nEveryone gets 25 days of paid leave a year.\n")
    write(
        proj,
        "lore.toml",
        'data_dir = "state"\n\n[llm]\nprovider = "extractive"\n\n'
        '[[sources]]\nname = "hb"\ntype = "directory"\npath = "docs"\n',
    )
    return proj


def test_lore_sources_started_elsewhere_finds_the_index_next_to_its_lore_toml(tmp_path):
    proj = project(tmp_path)
    built = lore(["index"], cwd=proj)  # as `make run` does, from the project folder
    assert built.returncode == 0, built.stdout + built.stderr
    assert (proj / "state").is_dir()

    elsewhere = tmp_path / "service-cwd"
    elsewhere.mkdir()
    for args, env in (
        (["sources", "--json"], {"LORE_CONFIG": str(proj / "lore.toml")}),
        (["--config", str(proj / "lore.toml"), "sources", "--json"], {}),
        (["--config", "../proj/lore.toml", "sources", "--json"], {}),  # a relative --config too
    ):
        result = lore(args, cwd=elsewhere, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        (row,) = json.loads(result.stdout)["sources"]
        assert (row["name"], row["documents"]) == ("hb", 2), (args, row)
        assert row["last_sync"], row
    assert list(elsewhere.iterdir()) == []  # no fresh, empty index made where it was started


def test_every_path_in_the_file_is_relative_to_it_and_every_path_from_the_environment_to_the_cwd(tmp_path):
    conf = tmp_path / "etc" / "lore"
    write(
        conf,
        "lore.toml",
        'data_dir = "state"\n\n'
        '[embedding]\nmodel = "models/minilm"\nonnx_cache_dir = "cache/onnx"\n\n'
        '[llm]\nprovider = "extractive"\nlocal_model_path = "models/smol.gguf"\n\n'
        '[datasets]\nout_dir = "../exports"\n\n'
        '[[sources]]\nname = "hb"\ntype = "directory"\npath = "docs"\n\n'
        '[[sources]]\nname = "wiki"\ntype = "git"\nrepo = "repos/wiki"\n\n'
        '[[sources]]\nname = "remote"\ntype = "git"\nrepo = "https://git.example/wiki.git"\n\n'
        '[[sources]]\nname = "home"\ntype = "directory"\npath = "~/handbook"\n',
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()

    result = lore(["config", "show"], cwd=elsewhere, LORE_CONFIG="../etc/lore/lore.toml")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["data_dir"] == str(conf / "state")
    assert shown["embedding"]["model"] == str(conf / "models/minilm")
    assert shown["embedding"]["onnx_cache_dir"] == str(conf / "cache/onnx")
    assert shown["llm"]["local_model_path"] == str(conf / "models/smol.gguf")
    assert shown["datasets"]["out_dir"] == str(tmp_path / "etc" / "exports")
    paths = {s["name"]: s.get("path") or s.get("repo") for s in shown["sources"]}
    assert paths == {
        "hb": str(conf / "docs"),
        "wiki": str(conf / "repos/wiki"),
        "remote": "https://git.example/wiki.git",
        "home": str(Path("~/handbook").expanduser()),
    }

    # The environment (and so .env and compose files) is relative to where Lore runs.
    result = lore(
        ["config", "show"],
        cwd=elsewhere,
        LORE_CONFIG=str(conf / "lore.toml"),
        LORE_DATA_DIR="here-state",
        LORE_DATASETS__OUT_DIR="here-exports",
        LORE_SOURCES=json.dumps([{"name": "env", "type": "directory", "path": "here-docs"}]),
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["data_dir"] == "here-state"
    assert shown["datasets"]["out_dir"] == "here-exports"
    assert [s["path"] for s in shown["sources"]] == ["here-docs"]
    assert shown["embedding"]["onnx_cache_dir"] == str(conf / "cache/onnx")  # the file's, not overridden


def test_the_default_data_dir_belongs_to_the_file_too(tmp_path):
    """A lore.toml that names no data_dir (like the repository's own) keeps its index in `.lore`
    beside the file, wherever Lore is started from."""
    proj = project(tmp_path)
    toml = proj / "lore.toml"
    toml.write_text(toml.read_text().replace('data_dir = "state"\n', ""))
    assert lore(["index"], cwd=proj).returncode == 0
    assert (proj / ".lore").is_dir()

    elsewhere = tmp_path / "service-cwd"
    elsewhere.mkdir()
    result = lore(["--config", str(toml), "sources", "--json"], cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)["sources"]
    assert row["documents"] == 2, row
    assert list(elsewhere.iterdir()) == []
    # The environment still wins, relative to the working directory.
    moved = lore(["--config", str(toml), "config", "show"], cwd=elsewhere, LORE_DATA_DIR="here")
    assert json.loads(moved.stdout)["data_dir"] == "here", moved.stdout
