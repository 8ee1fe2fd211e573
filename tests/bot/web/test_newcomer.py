"""A newcomer's run: the README's run command on a fresh data directory.

`make run` is `scripts/bootstrap` (which installs the venv, already done here) and then
`.venv/bin/lore serve` with the repository's lore.toml. This runs that real process from an empty
directory: it must index the example handbook first (saying so), then serve the console, and a
handbook question asked through HTTP must come back with sources. The extractive generator
stands in for the optional local LLM, as on a machine without the `local` extra.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port


def test_make_run_is_bootstrap_then_lore_serve():
    makefile = (REPO / "Makefile").read_text()
    run = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert run and "bootstrap" in run.group(0).splitlines()[0]
    assert run.group(1).strip().splitlines()[-1].strip() == ".venv/bin/lore serve"
    assert "make run" in (REPO / "README.md").read_text()


@pytest.mark.slow
async def test_lore_serve_on_a_fresh_data_dir_indexes_the_handbook_and_answers_with_sources(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORE_")} | {
        "LORE_CONFIG": str(REPO / "lore.toml"),
        # A fresh index: without this, data_dir is the .lore beside the repository's lore.toml.
        "LORE_DATA_DIR": str(tmp_path / ".lore"),
        "LORE_WEB__PORT": str(port),
        "LORE_LLM__PROVIDER": "extractive",
        "HF_HUB_OFFLINE": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("lore")),
            "serve",
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 420  # indexing 36 documents on a busy 2-core machine
            while True:
                assert proc.returncode is None, log.read_text()[-3000:]
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"lore serve did not come up:\n{log.read_text()[-3000:]}"
                await asyncio.sleep(0.5)
            output = log.read_text()
            assert "Nothing is indexed yet: indexing handbook first" in output
            assert re.search(r"handbook: 3\d documents, \d+ chunks", output), output[-2000:]
            assert "No console users yet" in output and f"{base}/chat" in output

            chat = await client.get("/chat")
            assert chat.status_code == 200
            token = re.search(r'name="csrf-token" content="([^"]+)"', chat.text).group(1)
            answer = await client.post(
                "/api/ask", json={"question": "How do I set up the VPN?"}, headers={"X-CSRF-Token": token}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert not body["abstained"] and body["sources"]
            assert any(s["url"].endswith("it/vpn.md") for s in body["sources"]), body["sources"]
            assert (await client.get("/readyz")).json()["status"] == "ready"
        assert (tmp_path / ".lore").is_dir()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
