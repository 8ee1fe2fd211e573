"""Retraining the retriever from reviewers' judgments and the corpus itself (`lore tune retriever`).

The pieces, in the order a run uses them:
- `data`: the training pairs and held-out questions every source of labels is turned into.
- `synthetic`: questions written from the corpus's own chunks (heading paths, inverse cloze, or an
  LLM), kept only when the current model already ranks their chunk in its top 20.
- `train`: a sentence-transformers run (`full`) or a linear map on query vectors (`adapter`).
- `gate`: the candidate against the current model on questions neither trained on.
- `registry`: versioned models under `data_dir/models/<id>/` and the pointer to the one serving;
  `promotion`: building a model's collection, the switch, rollback, dropping old collections;
  `lock`: one tuning run at a time.

The answer model's side (`lore tune generator`): `lora` trains a LoRA adapter on the local GGUF
model with TRL + PEFT on CPU and merges it into a GGUF llama.cpp serves; `hosted` fine-tunes
through OpenAI's fine-tuning API (or any server that implements it) from an exported SFT or DPO
file, and resumes a job a dead process was watching; `answer_gate` measures a candidate against
the serving model with the answer checks and decides. The run is `workers/generator_tuning.py`;
its record and the promotion every process follows are the `models` table (`feedback/generators.py`).

Reading judgments and curated answers from the feedback database is `feedback/tuning.py`; the run
that ties these together is `workers/tuning.py`.
"""
