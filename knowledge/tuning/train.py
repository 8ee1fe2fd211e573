"""Training a candidate retriever from pairs: the whole model (`full`) or a map on queries (`adapter`).

`full` fine-tunes MiniLM with the sentence-transformers trainer (v6, the v5 trainer API) and
`MultipleNegativesRankingLoss`: every other positive in a batch is a negative, and a pair's hard
negative is one more. On CPU, one process, batches of 32 x 256 tokens fit easily in memory, so
the cached variant (GradCache) isn't needed. The corpus must be re-embedded with the result, which
is saved as `out_dir/st` and exported to ONNX (`out_dir/model.onnx`) for the query path; the
export is checked against sentence-transformers (cosine >= 0.999) before it is kept.

`adapter` is LlamaIndex's `EmbeddingAdapterFinetuneEngine` idea (a linear layer on query
embeddings, documents untouched, so no re-index) written in torch here: the library's
`llama-index-finetuning` pulls in a second LLM stack for a 20-line model. W starts as the
identity, the loss is the same in-batch MNRL, and the result is `out_dir/adapter.npz`.

Both stop cleanly at a step boundary once `max_minutes` is up, show a progress bar with steps and
ETA, and are reproducible: the same pairs and seed give the same weights.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from knowledge.tuning.data import TrainingPair, counts

log = logging.getLogger(__name__)

Method = Literal["full", "adapter"]
OnStep = Callable[[int, int], None]  # (steps done, steps planned)
ONNX_MIN_COSINE = 0.999
MNRL_SCALE = 20.0  # sentence-transformers' default: cosine x 20 as logits


@dataclass
class TrainResult:
    method: Method
    out_dir: Path
    steps: int  # optimiser steps taken
    planned: int  # steps the full run would have taken
    seconds: float
    stopped_early: bool  # max_minutes ran out first
    counts: dict[str, int] = field(default_factory=dict)  # pairs per kind (data.counts)
    onnx_cosine: float | None = None  # the export's worst cosine to sentence-transformers (full)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "steps": self.steps,
            "planned": self.planned,
            "seconds": round(self.seconds, 1),
            "stopped_early": self.stopped_early,
            "counts": self.counts,
            "onnx_cosine": self.onnx_cosine,
        }


class OnnxMismatch(Exception):
    """The ONNX export doesn't compute what sentence-transformers does: the candidate is unusable."""


def train(
    pairs: Sequence[TrainingPair],
    *,
    base_model_dir: Path,
    out_dir: Path,
    method: Method = "full",
    max_minutes: float = 20.0,
    seed: int = 0,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float | None = None,
    max_steps: int | None = None,
    on_step: OnStep | None = None,
    progress: bool = True,
    export: bool = True,
) -> TrainResult:
    """Train a candidate from `pairs` (query, positive, optional first negative) into `out_dir`.
    `export=False` skips the ONNX export of a `full` model (tests, benchmarks)."""
    if not pairs:
        raise ValueError("no training pairs")
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _train_full if method == "full" else _train_adapter
    result = run(
        list(pairs),
        base_model_dir=base_model_dir,
        out_dir=out_dir,
        max_minutes=max_minutes,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_steps=max_steps,
        on_step=on_step,
        progress=progress,
    )
    if method == "full" and export:
        result.onnx_cosine = export_onnx(out_dir / "st", out_dir / "model.onnx")
    result.seconds = time.monotonic() - started  # the export included
    result.counts = counts(pairs)
    log.info("trained %s: %s", method, result.as_dict())
    return result


def offline() -> None:
    """The models are on disk: never let transformers or the trainer reach for the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Loading weights" noise


def _seed_everything(seed: int) -> None:
    import torch

    offline()

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _datasets(pairs: Sequence[TrainingPair]) -> dict[str, Any]:
    """Pairs with a negative as triplets, the rest as pairs: two datasets, since a dataset's rows
    must all have the same columns (the trainer samples batches from each in proportion)."""
    from datasets import Dataset

    triplets = [p for p in pairs if p.negatives]
    plain = [p for p in pairs if not p.negatives]
    out: dict[str, Any] = {}
    if plain:
        out["pairs"] = Dataset.from_dict(
            {"anchor": [p.query for p in plain], "positive": [p.positive for p in plain]}
        )
    if triplets:
        out["triplets"] = Dataset.from_dict(
            {
                "anchor": [p.query for p in triplets],
                "positive": [p.positive for p in triplets],
                "negative": [p.negatives[0] for p in triplets],
            }
        )
    return out


def _train_full(
    pairs: list[TrainingPair],
    *,
    base_model_dir: Path,
    out_dir: Path,
    max_minutes: float,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float | None,
    max_steps: int | None,
    on_step: OnStep | None,
    progress: bool,
) -> TrainResult:
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import TrainerCallback

    started = time.monotonic()
    deadline = started + max_minutes * 60

    class Clock(TrainerCallback):  # type: ignore[misc]
        """Stops at the first step boundary past the deadline; reports each step."""

        stopped = False

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if on_step is not None:
                on_step(state.global_step, state.max_steps)
            if time.monotonic() >= deadline and state.global_step < state.max_steps:
                self.stopped = True
                control.should_training_stop = True
            return control

    clock = Clock()

    _seed_everything(seed)
    model = SentenceTransformer(str(base_model_dir), device="cpu")
    data = _datasets(pairs)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "work"),
        num_train_epochs=epochs,
        max_steps=max_steps if max_steps is not None else -1,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate if learning_rate is not None else 2e-5,
        warmup_steps=0.1,  # a share of the steps (transformers v5: warmup_ratio is deprecated)
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        dataloader_num_workers=0,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=not progress,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate text in a batch would be a false negative
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model, scale=MNRL_SCALE),
        callbacks=[clock],
    )
    output = trainer.train()
    planned = int(trainer.state.max_steps)
    model.save(str(out_dir / "st"))
    shutil.rmtree(out_dir / "work", ignore_errors=True)  # the trainer's scratch directory
    result = TrainResult(
        method="full",
        out_dir=out_dir,
        steps=int(output.global_step),
        planned=planned,
        seconds=time.monotonic() - started,
        stopped_early=clock.stopped,
    )
    return result


def export_onnx(model_dir: Path, target: Path, probe: Sequence[str] | None = None) -> float:
    """Export `model_dir` to ONNX at `target` (as `knowledge.onnx` does for the shipped model) and
    return the worst cosine between its vectors and sentence-transformers' on `probe` texts.
    Below 0.999 the export is removed and `OnnxMismatch` raised."""
    from sentence_transformers import SentenceTransformer

    from knowledge.onnx import OnnxEmbedding, export, max_seq_length

    offline()
    export(model_dir, target)
    texts = list(probe or _PROBE)
    onnx = OnnxEmbedding(
        model_path=target, tokenizer_path=model_dir / "tokenizer.json", max_length=max_seq_length(model_dir)
    ).encode(texts)
    torch_vectors = SentenceTransformer(str(model_dir), device="cpu").encode(texts, normalize_embeddings=True)
    worst = float(np.min(np.sum(onnx * np.asarray(torch_vectors), axis=1)))
    if worst < ONNX_MIN_COSINE:
        target.unlink(missing_ok=True)
        raise OnnxMismatch(
            f"the ONNX export of {model_dir} differs from sentence-transformers (cosine {worst:.4f})"
        )
    return worst


_PROBE = (
    "how do i reset my password?",
    "VPN",
    "Deploys are rolled back with `make rollback ENV=prod`; the previous image tag is kept for 30 days.",
    "The on-call rotation changes every Monday at 10:00 UTC. " * 12,  # longer than the model's 256 tokens
)


# -- adapter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """A linear map on query vectors: q' = normalise(W q + b)."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return apply_adapter(vectors, self)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, weight=self.weight, bias=self.bias)
        tmp.replace(path)


def load_adapter(path: Path) -> Adapter:
    with np.load(path) as data:
        return Adapter(
            np.asarray(data["weight"], dtype=np.float32), np.asarray(data["bias"], dtype=np.float32)
        )


def apply_adapter(vectors: np.ndarray | Sequence[Sequence[float]], adapter: Adapter) -> np.ndarray:
    """Query vectors (one per row, or one vector) mapped by `adapter`, L2-normalised again: what
    the serving side does to each query vector before searching the unchanged index."""
    v = np.asarray(vectors, dtype=np.float32)
    single = v.ndim == 1
    m = np.atleast_2d(v) @ adapter.weight.T + adapter.bias
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = m[0] if single else m
    return out


def _train_adapter(
    pairs: list[TrainingPair],
    *,
    base_model_dir: Path,
    out_dir: Path,
    max_minutes: float,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float | None,
    max_steps: int | None,
    on_step: OnStep | None,
    progress: bool,
) -> TrainResult:
    import torch
    from sentence_transformers import SentenceTransformer
    from tqdm.auto import tqdm

    started = time.monotonic()
    deadline = started + max_minutes * 60
    _seed_everything(seed)
    model = SentenceTransformer(str(base_model_dir), device="cpu")

    def encode(texts: list[str]) -> torch.Tensor:
        unique = list(dict.fromkeys(texts))  # many questions share a passage: embed it once
        vectors = model.encode(unique, normalize_embeddings=True, batch_size=32, show_progress_bar=False)
        row = {t: i for i, t in enumerate(unique)}
        return torch.as_tensor(vectors[[row[t] for t in texts]])

    # Documents are embedded once by the frozen model: only queries go through the map.
    queries = encode([p.query for p in pairs])
    positives = encode([p.positive for p in pairs])
    with_negative = [i for i, p in enumerate(pairs) if p.negatives]
    negatives = encode([pairs[i].negatives[0] for i in with_negative]) if with_negative else None
    negative_row = {pair_i: row for row, pair_i in enumerate(with_negative)}
    dim = queries.shape[1]
    weight = torch.nn.Parameter(torch.eye(dim))
    bias = torch.nn.Parameter(torch.zeros(dim))
    optimiser = torch.optim.AdamW([weight, bias], lr=learning_rate if learning_rate is not None else 1e-3)
    per_epoch = math.ceil(len(pairs) / batch_size)
    planned = per_epoch * epochs if max_steps is None else max_steps
    generator = torch.Generator().manual_seed(seed)
    steps, stopped = 0, False
    bar = tqdm(total=planned, desc="adapter", unit="step", disable=not progress)
    try:
        while steps < planned and not stopped:
            order = torch.randperm(len(pairs), generator=generator)
            for batch in order.split(batch_size):  # type: ignore[no-untyped-call]
                q = torch.nn.functional.normalize(queries[batch] @ weight.T + bias, dim=1)
                docs = positives[batch]
                rows = [negative_row[int(i)] for i in batch if int(i) in negative_row]
                if rows and negatives is not None:
                    docs = torch.cat([docs, negatives[rows]])
                loss = torch.nn.functional.cross_entropy(q @ docs.T * MNRL_SCALE, torch.arange(len(batch)))
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                steps += 1
                bar.update(1)
                if on_step is not None:
                    on_step(steps, planned)
                if steps >= planned:
                    break
                if time.monotonic() >= deadline:
                    stopped = True
                    break
    finally:
        bar.close()
    adapter = Adapter(weight.detach().numpy().astype(np.float32), bias.detach().numpy().astype(np.float32))
    adapter.save(out_dir / "adapter.npz")
    return TrainResult(
        method="adapter",
        out_dir=out_dir,
        steps=steps,
        planned=planned,
        seconds=time.monotonic() - started,
        stopped_early=stopped,
    )
