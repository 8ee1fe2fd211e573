"""The embedding model on ONNX Runtime, exported from the same weights as sentence-transformers.

Export happens once, at first use, into a cache directory (`~/.cache/lore/onnx` by default),
keyed by a hash of the weights and the exporter versions, and written atomically under a
file lock so parallel processes don't race. The graph is the transformer plus mean pooling;
tokenization is the model's own `tokenizer.json` (via `tokenizers`), truncated at the model's
`max_seq_length`, and vectors are L2-normalised: the same computation as sentence-transformers,
which `tests/knowledge/test_embeddings.py` checks (cosine >= 0.999).

`int8` is dynamic quantisation of the weights, per channel (per tensor loses too much).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
OPSET = 17


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lore" / "onnx"


def _fingerprint(model_dir: Path) -> str:
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    for name in ("model.safetensors", "pytorch_model.bin", "config.json", "1_Pooling/config.json"):
        path = model_dir / name
        if path.exists():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    digest.update(f"torch={torch.__version__};ort={onnxruntime.__version__};opset={OPSET}".encode())
    return digest.hexdigest()[:16]


def model_file(model_dir: Path, precision: Precision, cache_dir: Path | None = None) -> Path:
    """The exported (and, for int8, quantised) model, exporting it first if needed."""
    # Keyed by content, not by name: the same weights under another name share one export.
    folder = (cache_dir or default_cache_dir()) / _fingerprint(model_dir)
    target = folder / ("model.onnx" if precision == "fp32" else "model-int8.onnx")
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting the same model
        try:
            fp32 = folder / "model.onnx"
            if not fp32.exists():
                export(model_dir, fp32)
            if precision == "int8" and not target.exists():
                _quantize(fp32, target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def export(model_dir: Path, target: Path) -> None:
    """`model_dir` (any sentence-transformers MiniLM-style model) as one ONNX graph at `target`,
    written atomically: the shipped model's cache above, and each trained candidate (`knowledge.tuning`)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    log.info("exporting %s to ONNX (once) into %s", model_dir.name, target.parent)

    class MeanPooled(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    sample = AutoTokenizer.from_pretrained(str(model_dir))(
        ["an example", "a second, longer example sentence"], padding=True, return_tensors="pt"
    )
    tmp = target.with_suffix(".tmp")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notes about BERT's indexing ops
        torch.onnx.export(
            MeanPooled(model),
            tuple(sample[n] for n in names),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={
                **{n: {0: "batch", 1: "tokens"} for n in names},
                "sentence_embedding": {0: "batch"},
            },
        )
    os.replace(tmp, target)


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(".tmp")
    quantize_dynamic(str(source), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
    os.replace(tmp, target)


def max_seq_length(model_dir: Path, default: int = 256) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


# A container's CPU limit (`docker run --cpus`, a Kubernetes limit): cgroup v2, then v1.
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>", or "max <period>"
CFS_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # -1: no limit
CFS_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup may use per period (2.5 for `--cpus 2.5`), or None."""
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(CFS_QUOTA.read_text())
        return None if quota_us < 0 else quota_us / int(CFS_PERIOD.read_text())
    except (OSError, ValueError):
        return None


def _usable_cpus() -> int:
    """The CPUs this process may run on, capped by a CPU quota: in a container limited to two
    CPUs on a 64-core host, affinity alone says 64, and a second thread per question would only
    be throttled."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cpu_quota()
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


_CPUS = _usable_cpus()


LOADAVG = Path("/proc/loadavg")


def idle_core() -> bool:
    """Whether a CPU this process may use is free right now: the kernel's count of runnable
    threads at this instant (the caller included; /proc/loadavg's fourth field) is below the
    CPUs. Unknown (not Linux) counts as busy. In a container the count is the host's, against
    the container's quota: it errs towards busy, the one-thread session."""
    try:
        running = int(LOADAVG.read_text().split()[3].split("/", 1)[0])
    except (OSError, ValueError, IndexError):
        return False
    return running < _CPUS


def shared(build: Callable[[], OnnxEmbedding]) -> Callable[[], OnnxEmbedding]:
    """`build`, called once on first use (thread-safe): one session however many callers share it."""
    lock = threading.Lock()
    made: list[OnnxEmbedding] = []

    def get() -> OnnxEmbedding:
        with lock:
            if not made:
                made.append(build())
            return made[0]

    return get


def blocks(
    order: Sequence[int], lengths: Sequence[int], max_texts: int, max_tokens: int
) -> Iterator[list[int]]:
    """Consecutive runs of `order` (indices sorted by token length) for one model call each: at
    most `max_texts` texts and `max_tokens` padded tokens (texts x the longest), at least one."""
    block: list[int] = []
    for i in order:
        if block and (len(block) >= max_texts or (len(block) + 1) * lengths[i] > max_tokens):
            yield block
            block = []
        block.append(i)
    if block:
        yield block


class OnnxEmbedding(BaseEmbedding):
    """A LlamaIndex embedding on ONNX Runtime.

    Documents are embedded in blocks of similar token length, capped by padded tokens as well
    as by count: little padding, and a block's activations stay in the CPU cache. On two cores
    1024-token blocks embed about 30% more chunks/s than 32 texts of up to 256 tokens
    (bench/embedding_speed.py).
    """

    model_path: str
    max_length: int = 256
    block_tokens: int = 1024

    _tokenizer: Any = PrivateAttr()
    _session: Any = PrivateAttr()
    _spare: Callable[[], OnnxEmbedding] | None = PrivateAttr(default=None)

    def __init__(
        self, *, model_path: Path, tokenizer_path: Path, threads: int = 1, spin: bool = True, **kwargs: Any
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        kwargs["model_path"] = str(model_path)
        super().__init__(**kwargs)
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=self.max_length)
        tokenizer.no_padding()  # blocks are padded here, to their own longest text
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # With several threads: idle pool threads spin (ONNX Runtime's default, fastest on idle
        # cores) or sleep (no faster than one thread: bench/embedding_speed.py)...
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        # ...but only inside a run: left spinning after it, a pool thread holds a core that other
        # work could use, and `idle_core()` would count it as busy before the next question.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self._tokenizer = tokenizer
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def class_name(cls) -> str:
        return "LoreOnnxEmbedding"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out = np.zeros((len(texts), 0), dtype=np.float32)
        for idx in blocks(order, lengths, self.embed_batch_size, self.block_tokens):
            ids = np.zeros((len(idx), lengths[idx[-1]]), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            vecs = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out

    def use_when_idle(self, spare: Callable[[], OnnxEmbedding]) -> None:
        """Embed single texts with `spare()`, a session with more threads, whenever a core is idle.

        A second thread cuts a question's embedding by about 30% on idle cores, and makes it
        slower when another process holds a core (bench/embedding_speed.py): so the choice is
        made per question, from what the machine is doing at that moment."""
        self._spare = spare

    def warm(self) -> None:
        """Load and run each session a question may use (the idle one is otherwise built on first use)."""
        self._run_one(self._session, "warm up")
        if self._spare is not None:
            self._run_one(self._spare()._session, "warm up")

    def _run_one(self, session: Any, text: str) -> np.ndarray:
        ids = np.asarray([self._tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return session.run(None, feed)[0][0]  # type: ignore[no-any-return]

    def embed_one(self, text: str) -> list[float]:
        """One text, without the batch bookkeeping: the query path, where every 0.1 ms shows."""
        session = self._spare()._session if self._spare is not None and idle_core() else self._session
        vec = self._run_one(session, text)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).tolist()  # type: ignore[no-any-return]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed_one(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed_one(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()  # type: ignore[no-any-return]

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        # One call for the whole list, so the length sort spans it rather than each small batch.
        return self._get_text_embeddings(texts)
