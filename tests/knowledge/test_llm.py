"""The LLM providers: OpenAI-compatible against a real llama.cpp server, its failure modes, and local."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knowledge.generate import LLMUnavailable
from tests.conftest import free_port, write

pytestmark = pytest.mark.llm


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "docs"
    write(root, "leave.md", "# Leave\n\nEveryone gets 25 days of paid leave per year.\n")
    write(root, "vpn.md", "# VPN\n\nInstall WireGuard from Self Service, then sign in with Okta.\n")
    return [{"name": "hb", "type": "directory", "path": str(root)}]


def openai_llm(base_url: str, **extra) -> dict:
    return {"provider": "openai", "base_url": base_url, "model": "smollm2", "max_tokens": 80, **extra}


def test_openai_provider_answers_through_a_real_server(make_knowledge, corpus, llama_server):
    kn = make_knowledge(corpus, llm=openai_llm(llama_server))
    kn.sync("hb")
    answer = kn.answer("how many days of paid leave do we get?")
    assert answer.model == "openai:smollm2" and answer.notice is None
    assert answer.text.strip() and not answer.abstained
    assert answer.citations and answer.citations[0].path == "leave.md"
    assert answer.timings.generate_ms > 0


class _Misbehaving(BaseHTTPRequestHandler):
    mode = "429"
    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "slow":
            time.sleep(3)
        self.send_response(429)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "rate limited", "type": "rate_limit_error"}}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bad_server() -> Iterator[type[_Misbehaving]]:
    handler = type("Handler", (_Misbehaving,), {"hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_port}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler
    server.shutdown()


def test_server_down_falls_back_to_extractive_and_says_so(make_knowledge, corpus):
    kn = make_knowledge(corpus, llm=openai_llm(f"http://127.0.0.1:{free_port()}/v1", max_retries=0))
    kn.sync("hb")
    answer = kn.answer("how many days of paid leave do we get?")
    assert answer.model == "extractive (fallback)"
    assert "unreachable" in answer.notice and "25 days" in answer.text


def test_server_down_without_fallback_is_a_clear_error(make_knowledge, corpus):
    llm = openai_llm(f"http://127.0.0.1:{free_port()}/v1", max_retries=0, fallback_to_extractive=False)
    kn = make_knowledge(corpus, llm=llm)
    kn.sync("hb")
    with pytest.raises(LLMUnavailable, match="unreachable"):
        kn.answer("how many days of paid leave do we get?")


def test_rate_limit_is_retried_then_reported(make_knowledge, corpus, bad_server):
    llm = openai_llm(bad_server.url, max_retries=2, fallback_to_extractive=False)
    kn = make_knowledge(corpus, llm=llm)
    kn.sync("hb")
    with pytest.raises(LLMUnavailable, match="rate limited"):
        kn.answer("how many days of paid leave do we get?")
    assert bad_server.hits >= 3  # the first try plus two retries


def test_timeout_is_reported(make_knowledge, corpus, bad_server):
    bad_server.mode = "slow"
    llm = openai_llm(bad_server.url, max_retries=0, timeout=1, fallback_to_extractive=False)
    kn = make_knowledge(corpus, llm=llm)
    kn.sync("hb")
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="timed out"):
        kn.answer("how many days of paid leave do we get?")
    assert time.monotonic() - started < 10


def test_local_provider_runs_the_gguf_in_process(make_knowledge, corpus):
    kn = make_knowledge(corpus, llm={"provider": "local", "max_tokens": 60})
    kn.sync("hb")
    answer = kn.answer("how do I install the VPN?")
    assert answer.model.startswith("local:SmolLM2") and answer.text.strip()
    assert answer.citations[0].path == "vpn.md"


def test_auto_prefers_openai_when_configured_then_local(make_settings, embedder, llama_server):
    from knowledge.engine import make_generator

    assert make_generator(make_settings(llm={"base_url": llama_server}), embedder).name.startswith("openai:")
    assert make_generator(make_settings(llm={}), embedder).name.startswith("local:")  # installed with [dev]
