"""An OpenAI-compatible /v1/embeddings endpoint backed by the real MiniLM model.

llama.cpp's server can't pool a causal model's token vectors into one sentence vector, so
the `openai` embedding provider is tested against this instead: real HTTP, the real OpenAI
SDK on our side, real embeddings on this side.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def embedding_server(embed_model: Any, *, model_name: str = "minilm-served") -> Iterator[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = embed_model.get_text_embedding_batch(texts)
            data = {
                "object": "list",
                "model": model_name,
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
            raw = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_port}/v1", "calls": calls}
    finally:
        server.shutdown()
