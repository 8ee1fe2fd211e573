"""Tokens/s of the local model through llama.cpp: base, LoRA-merged and base + LoRA adapter, side by side.

    .venv/bin/python bench/lora_speed.py --run DIR   # a run's output_dir (knowledge/tuning/lora.py)
    .venv/bin/python bench/lora_speed.py             # trains a 2-step run first

The three are loaded as `LocalGenerator` loads a model (one thread, 4096 context). Each round asks
each the same handbook-sized prompt (a real handbook page as the one source, with Lore's prompt)
from a cleared cache, in a rotating order, and forces `--tokens` new
tokens (end-of-text is banned) so all decode the same amount. Timings are llama.cpp's own
(`llama_perf_context`): prompt processing and generation separately. The figure issue 20 asks
for is the generation ratio to the base (1.0 is the same speed): of the medians, and of the best
rounds (the least disturbed on a busy machine). `merged` is what a run serves; `adapter` is the
same LoRA applied at run time through `lora_path`, for comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HANDBOOK

from knowledge.answer import RetrievedChunk
from knowledge.prompt import chat_messages, number_by_document
from knowledge.tuning.lora import (
    ADAPTER_FILE,
    MERGED_FILE,
    LoraOptions,
    LoraResult,
    base_gguf,
    merge_to_gguf,
    train_sft,
)


def prompt() -> list[dict[str, str]]:
    """Lore's prompt over three handbook pages (about 1,200 tokens, as a real answer's)."""
    chunks = [
        RetrievedChunk(
            chunk_id=f"c{i}",
            doc_id=f"d{i}",
            source="handbook",
            path=str(page),
            title=page.stem,
            url="",
            text=page.read_text()[:1500],
            score=1.0,
            doc_hash="h",
        )
        for i, page in enumerate(sorted(HANDBOOK.rglob("*.md"))[:3])
    ]
    number_by_document(chunks)
    return chat_messages("What do these pages ask of a new employee?", chunks, [])


def tiny_run(out: Path) -> LoraResult:
    ex = {"messages": [*prompt(), {"role": "assistant", "content": "It says what to do [1]."}]}
    options = LoraOptions(max_steps=2, grad_accum=1, max_length=2048, learning_rate=1e-3)
    return train_sft([ex], out, options)


def load(model: Path, lora: Path | None = None) -> Any:
    from llama_cpp import Llama

    return Llama(
        model_path=str(model), lora_path=str(lora) if lora else None,
        n_ctx=4096, n_threads=1, n_threads_batch=1, verbose=False,
    )  # fmt: skip


def run(llm: Any, text: str, tokens: int) -> dict[str, float]:
    """One answer from a cleared cache: prompt and generation tokens/s (llama.cpp's wall-clock
    timings), the answer's seconds, and the CPU seconds the (single) compute thread spent."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    cpu = time.thread_time()  # n_threads=1: ggml computes in the calling thread
    llm.create_completion(
        text, max_tokens=tokens, temperature=0.0, logit_bias={llm.token_eos(): -1e9}, stop=[]
    )
    cpu = time.thread_time() - cpu
    perf = llama_cpp.llama_perf_context(llm.ctx)
    return {
        "prompt_tokens_per_s": perf.n_p_eval / perf.t_p_eval_ms * 1000,
        "gen_tokens_per_s": perf.n_eval / perf.t_eval_ms * 1000,
        "answer_s": (perf.t_p_eval_ms + perf.t_eval_ms) / 1000,
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a training run's directory (default: train a tiny one)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    run_dir = args.run or tiny_run(Path(tempfile.mkdtemp(prefix="lora-speed-"))).output_dir
    merged = run_dir / MERGED_FILE
    if not merged.is_file():
        merge_to_gguf(run_dir, merged)
    models = {
        "base": load(base_gguf()),
        "adapter": load(base_gguf(), run_dir / ADAPTER_FILE),
        "merged": load(merged),
    }
    # The chat template llama.cpp applies (the GGUF's own), rendered once for both.
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = models["base"]
    template = llm.metadata["tokenizer.chat_template"]
    eos = llm.detokenize([llm.token_eos()]).decode()
    text = Jinja2ChatFormatter(template, eos_token=eos, bos_token="")(messages=prompt()).prompt  # type: ignore[arg-type]
    times: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for name in models:
        run(models[name], text, 8)  # warm-up
    names = list(models)
    for i in range(args.rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # a rotating order
            times[name].append(run(models[name], text, args.tokens))
    result: dict[str, Any] = {"run": str(run_dir), "rounds": args.rounds, "tokens": args.tokens}
    for name, rows in times.items():
        result[name] = {key: round(statistics.median(r[key] for r in rows), 3) for key in rows[0]}
    for name in ("adapter", "merged"):
        mine, base = result[name], result["base"]
        # Speed ratios (above 1: faster than the base) of medians.
        result[name]["vs_base"] = {
            "prompt": round(mine["prompt_tokens_per_s"] / base["prompt_tokens_per_s"], 3),
            "generation": round(mine["gen_tokens_per_s"] / base["gen_tokens_per_s"], 3),
            "answer": round(base["answer_s"] / mine["answer_s"], 3),
            "cpu": round(base["cpu_s"] / mine["cpu_s"], 3),
        }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.tokens} new tokens after a {len(models['base'].tokenize(text.encode()))}-token prompt")
    for name in names:
        r = result[name]
        print(
            f"{name:8} prompt {r['prompt_tokens_per_s']:6.1f} tok/s"
            f"  generation {r['gen_tokens_per_s']:5.1f} tok/s"
            f"  answer {r['answer_s']:5.2f} s  cpu {r['cpu_s']:5.2f} s"
        )
    for name in ("adapter", "merged"):
        ratios = ", ".join(f"{k} {v:.3f}" for k, v in result[name]["vs_base"].items())
        print(f"{name} speed / base: {ratios}")


if __name__ == "__main__":
    main()
