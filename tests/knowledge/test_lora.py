"""LoRA on the local model (knowledge/tuning/lora.py): real TRL/PEFT runs on SmolLM2, tiny.

The examples are short on purpose (a one-line system prompt, a one-line source): a step over
Lore's full prompt costs seconds on CPU, and what is tested here is the machinery: the adapter is
trained from the packaged GGUF, merged into a GGUF that llama.cpp serves, and changes its answers; the time
budget stops a run at a step boundary; DPO runs too. trl, peft and gguf (the `train` extra) are
imported by the functions under test, never by this module.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from knowledge.tuning.lora import LoraOptions, Progress, answers, base_gguf, train_dpo, train_sft

SYSTEM = "Answer from the source. Cite it as [1]."
FACTS = [
    ("Staff park in lot C.", "Where do staff park?", "Staff park in lot C [1]."),
    ("The VPN host is vpn.acme.io.", "What is the VPN host?", "The VPN host is vpn.acme.io [1]."),
    ("Lunch is served at noon.", "When is lunch?", "Lunch is served at noon [1]."),
    ("Lost badges go to reception.", "Where do lost badges go?", "Lost badges go to reception [1]."),
]
MARK = "ZEBRA"  # what the adapter learns to start every answer with; the base never says it


def prompt(source: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"[1] {source}\nQuestion: {question}"},
    ]


def sft_examples() -> list[dict]:
    return [
        {"messages": [*prompt(s, q), {"role": "assistant", "content": f"{MARK} {a}"}]} for s, q, a in FACTS
    ]


FAST = LoraOptions(
    rank=8, alpha=16, dropout=0.0, learning_rate=3e-3, batch_size=2, grad_accum=1, max_length=128, threads=1
)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    seen: list[Progress] = []
    out = tmp_path_factory.mktemp("lora") / "sft"
    result = train_sft(sft_examples(), out, replace(FAST, max_steps=4), progress=seen.append)
    return result, seen


@pytest.mark.slow
def test_sft_trains_a_model_that_llama_cpp_serves_and_that_answers_differently(sft_run):
    result, seen = sft_run
    assert (result.steps, result.max_steps, result.stopped_by_time) == (4, 4, False)
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[-1].eta_seconds == 0
    assert (result.output_dir / "adapter_model.safetensors").is_file()

    prompts = [prompt(s, q) for s, q, _ in FACTS[:2]]
    base = answers(prompts, max_tokens=24)
    merged = answers(prompts, model_path=result.gguf_model, max_tokens=24)
    assert not any(MARK in a for a in base)
    assert all(a.startswith(MARK) for a in merged), merged
    # The same adapter applied at run time by llama.cpp answers as the merged model does.
    assert answers(prompts, lora_path=result.gguf_adapter, max_tokens=24) == merged


@pytest.mark.slow
def test_the_gguf_files_are_what_llama_cpp_expects(sft_run):
    from gguf import GGMLQuantizationType, GGUFReader

    result, _ = sft_run
    reader = GGUFReader(str(result.gguf_adapter))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    names = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    # 30 blocks x 7 projections x (A, B); ggml shapes: A is (in, rank), B is (rank, out).
    assert len(names) == 30 * 7 * 2
    assert names["blk.0.attn_q.weight.lora_a"] == (576, 8)
    assert names["blk.0.attn_k.weight.lora_b"] == (8, 192)
    assert names["blk.29.ffn_down.weight.lora_a"] == (1536, 8)

    # The merged model: the base's metadata (tokenizer, chat template) and untouched tensors as they
    # were, every adapted weight in Q8_0.
    base, merged = GGUFReader(str(base_gguf())), GGUFReader(str(result.gguf_model))
    for key in ("tokenizer.chat_template", "tokenizer.ggml.tokens", "llama.attention.head_count_kv"):
        assert merged.fields[key].contents() == base.fields[key].contents()
    types = {t.name: t.tensor_type for t in merged.tensors}
    assert types.keys() == {t.name for t in base.tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert types["token_embd.weight"] == next(
        t.tensor_type for t in base.tensors if t.name == "token_embd.weight"
    )


def test_q_and_k_are_permuted_back_exactly_as_transformers_unpermutes_the_gguf():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from knowledge.tuning.lora import _permute

    rng = np.random.default_rng(0)
    for heads, kv in ((9, 9), (9, 3)):
        b = rng.standard_normal((kv * 64, 8)).astype(np.float32)
        round_trip = LlamaTensorProcessor()._reverse_permute_weights(_permute(b, heads, kv), heads, kv)
        assert np.array_equal(round_trip, b)
        assert not np.array_equal(_permute(b, heads, kv), b)


@pytest.mark.slow
def test_max_minutes_stops_the_run_at_a_step_boundary(tmp_path):
    options = replace(FAST, max_steps=50, max_minutes=0.001, merge=False)
    result = train_sft(sft_examples()[:2], tmp_path / "budget", options)
    assert result.stopped_by_time
    assert result.steps == 1 and result.max_steps == 50  # the step under way finished; no other began
    assert result.gguf_adapter.is_file()  # what was trained is still saved and exported
    assert result.gguf_model is None


@pytest.mark.slow
def test_dpo_trains_an_adapter_on_preference_pairs(tmp_path):
    pairs = [
        {
            "prompt": prompt(s, q),
            "chosen": [{"role": "assistant", "content": a}],
            "rejected": [{"role": "assistant", "content": a.replace(" [1]", "")}],
        }
        for s, q, a in FACTS[:2]
    ]
    options = replace(FAST, max_steps=2)
    result = train_dpo(pairs, tmp_path / "dpo", options)
    assert (result.method, result.steps, result.examples) == ("dpo", 2, 2)
    assert result.train_loss is not None and np.isfinite(result.train_loss)
    assert result.gguf_model is not None
    assert answers([pairs[0]["prompt"]], model_path=result.gguf_model, max_tokens=16)[0]


@pytest.mark.slow
def test_dpo_with_an_sft_weight_adds_the_chosen_answers_nll_to_the_preference_loss(tmp_path):
    """At the first step the adapter is zero, so the policy is the reference and the preference
    loss is exactly log 2; the SFT term (the chosen answer's NLL under the base) comes on top."""
    pairs = [
        {
            "prompt": prompt(s, q),
            "chosen": [{"role": "assistant", "content": a}],
            "rejected": [{"role": "assistant", "content": a.replace(" [1]", "")}],
        }
        for s, q, a in FACTS[:2]
    ]
    plain = train_dpo(pairs, tmp_path / "plain", replace(FAST, max_steps=1, merge=False))
    mixed = train_dpo(pairs, tmp_path / "mixed", replace(FAST, max_steps=1, merge=False, sft_weight=1.0))
    assert plain.train_loss == pytest.approx(math.log(2), abs=1e-3)
    assert mixed.train_loss is not None and mixed.train_loss > math.log(2) + 0.05


@pytest.mark.slow
def test_dpo_trains_on_top_of_an_sft_run(sft_run, tmp_path):
    """DPO after SFT (bench/generator_tuning.py --start-from): the SFT run's merged GGUF is the
    model DPO starts from and its reference, and what DPO writes still carries what SFT taught."""
    sft, _ = sft_run
    pairs = [
        {
            "prompt": prompt(s, q),
            "chosen": [{"role": "assistant", "content": f"{MARK} {a}"}],
            "rejected": [{"role": "assistant", "content": f"{MARK} {a.replace(' [1]', '')}"}],
        }
        for s, q, a in FACTS[:2]
    ]
    result = train_dpo(pairs, tmp_path / "dpo", replace(FAST, max_steps=1), gguf=sft.gguf_model)
    assert (result.method, result.steps) == ("dpo", 1)
    # At step 1 the policy is its reference: the model it started from, the SFT model (as the
    # answers below, which still start with MARK, show).
    assert result.train_loss == pytest.approx(math.log(2), abs=1e-3)
    assert result.gguf_model is not None
    prompts = [prompt(s, q) for s, q, _ in FACTS[:2]]
    assert all(a.startswith(MARK) for a in answers(prompts, model_path=result.gguf_model, max_tokens=24))
    assert all(
        a.startswith(MARK)
        for a in answers(prompts, model_path=sft.gguf_model, lora_path=result.gguf_adapter, max_tokens=24)
    )
