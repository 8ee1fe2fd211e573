"""Tokens/s of the local model through llama.cpp, base vs base + LoRA adapter, side by side.

    .venv/bin/python bench/lora_speed.py --adapter DIR/adapter.gguf   # from knowledge/tuning/lora.py
    .venv/bin/python bench/lora_speed.py                              # trains a 2-step one first

Both models are loaded as `LocalGenerator` loads them (one thread, 4096 context). Each round asks
both the same handbook-sized prompt (a real handbook page as the one source, with Lore's prompt)
from a cleared cache, the base and the adapter in alternating order, and forces `--tokens` new
tokens (end-of-text is banned) so both decode the same amount. Timings are llama.cpp's own
(`llama_perf_context`): prompt processing and generation separately. The figure issue 20 asks
for is the ratio of medians (LoRA / base); 1.0 is the same speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
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
    page = sorted(HANDBOOK.rglob("*.md"))[0]
    chunk = RetrievedChunk(
        chunk_id="c1", doc_id="d1", source="handbook", path=str(page), title=page.stem, url="",
        text=page.read_text()[:2500], score=1.0, doc_hash="h",
    )  # fmt: skip
    number_by_document([chunk])
    return chat_messages("Summarise this page, citing it.", [chunk], [])


def tiny_run(out: Path) -> LoraResult:
    ex = {"messages": [*prompt(), {"role": "assistant", "content": "It says what to do [1]."}]}
    options = LoraOptions(max_steps=2, grad_accum=1, max_length=1024, learning_rate=1e-3)
    return train_sft([ex], out, options)


def load(model: Path, lora: Path | None = None) -> Any:
    from llama_cpp import Llama

    return Llama(
        model_path=str(model), lora_path=str(lora) if lora else None,
        n_ctx=4096, n_threads=1, n_threads_batch=1, verbose=False,
    )  # fmt: skip


def run(llm: Any, text: str, tokens: int) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of one answer from a cleared cache."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    llm.create_completion(
        text, max_tokens=tokens, temperature=0.0, logit_bias={llm.token_eos(): -1e9}, stop=[]
    )
    perf = llama_cpp.llama_perf_context(llm.ctx)
    return perf.n_p_eval / perf.t_p_eval_ms * 1000, perf.n_eval / perf.t_eval_ms * 1000


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
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for name in models:
        run(models[name], text, 8)  # warm-up
    names = list(models)
    for i in range(args.rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # a rotating order
            times[name].append(run(models[name], text, args.tokens))
    result: dict[str, Any] = {"run": str(run_dir), "rounds": args.rounds, "tokens": args.tokens}
    for name, rows in times.items():
        result[name] = {
            "prompt_tokens_per_s": round(statistics.median(r[0] for r in rows), 1),
            "gen_tokens_per_s": round(statistics.median(r[1] for r in rows), 1),
        }
    for name in ("adapter", "merged"):
        result[name]["ratio_to_base"] = {
            kind: round(result[name][key] / result["base"][key], 3)
            for kind, key in (("prompt", "prompt_tokens_per_s"), ("gen", "gen_tokens_per_s"))
        }
    if args.json:
        print(json.dumps(result))
        return
    for name in names:
        r = result[name]
        ratio = r.get("ratio_to_base")
        vs = f"   vs base: prompt {ratio['prompt']:.3f}, generation {ratio['gen']:.3f}" if ratio else ""
        speeds = (
            f"prompt {r['prompt_tokens_per_s']:6.1f} tok/s  generation {r['gen_tokens_per_s']:5.1f} tok/s"
        )
        print(f"{name:8} {speeds}{vs}")


if __name__ == "__main__":
    main()
