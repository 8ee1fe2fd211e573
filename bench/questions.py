"""The question detector (knowledge/questions.py): precision and recall on tests/data/questions.tsv.

    .venv/bin/python bench/questions.py            # nested cross-validation, and the shipped model
    .venv/bin/python bench/questions.py --write    # retrain and rewrite knowledge/data/question_model.json

Nested 5-fold cross-validation (stratified, seeded): for each outer fold, the whole recipe runs
on the other four fifths (cues, the classifier, its threshold picked on inner out-of-fold
predictions) and is scored on the held-out fifth, which nothing in it saw. The shipped model's
figures on the whole set are printed too, marked as in-sample: it was trained on those lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import REPO

from config.settings import EmbeddingSettings
from knowledge.embeddings import build_embedder
from knowledge.questions import (
    MODEL_FILE,
    SEED,
    QuestionDetector,
    QuestionModel,
    cues,
    fit,
    gated,
    load_labelled,
)

LABELLED = REPO / "tests" / "data" / "questions.tsv"


def scores(predicted: list[bool], labels: list[int]) -> dict[str, float]:
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    fp = sum(p and not y for p, y in zip(predicted, labels, strict=True))
    fn = sum((not p) and y for p, y in zip(predicted, labels, strict=True))
    return {
        "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="rewrite the shipped model file")
    args = parser.parse_args()

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    texts, labels = load_labelled(LABELLED)
    model = build_embedder(EmbeddingSettings()).query_model
    started = time.perf_counter()
    vectors = model.get_text_embedding_batch(texts)
    embed_s = time.perf_counter() - started
    cache = dict(zip(texts, vectors, strict=True))

    def embed(batch):  # type: ignore[no-untyped-def]
        return [cache[t] if t in cache else model.get_text_embedding(t) for t in batch]

    y = np.asarray(labels)
    cue_only = scores([gated(cues(t)) for t in texts], labels)

    predicted = [False] * len(texts)
    outer = StratifiedKFold(5, shuffle=True, random_state=SEED + 1)
    for train, test in outer.split(np.zeros(len(y)), y):
        fold = fit([texts[i] for i in train], [labels[i] for i in train], embed)
        detector = QuestionDetector(embed, fold)
        for i in test:
            predicted[i] = detector.detect(texts[i]).is_question
    nested = scores(predicted, labels)
    mistakes = [
        ("false question" if p else "missed", t)
        for t, p, yy in zip(texts, predicted, labels, strict=True)
        if p != bool(yy)
    ]

    shipped = fit(texts, labels, embed) if args.write else QuestionModel.load()
    if args.write:
        MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
        MODEL_FILE.write_text(json.dumps(shipped.to_json()) + "\n", encoding="utf-8")
    detector = QuestionDetector(embed, shipped)
    started = time.perf_counter()
    verdicts = [detector.detect(t) for t in texts]
    per_line_ms = (time.perf_counter() - started) / len(texts) * 1000
    in_sample = scores([v.is_question for v in verdicts], labels)

    report = {
        "lines": len(texts),
        "questions": int(y.sum()),
        "cues_alone": cue_only,
        "nested_cv_5fold": nested,
        "shipped_model_in_sample": in_sample,
        "threshold": shipped.threshold,
        "embed_all_s": round(embed_s, 2),
        "detect_ms_per_line_cached_embeddings": round(per_line_ms, 3),
        "written": str(MODEL_FILE) if args.write else None,
    }
    print(json.dumps(report, indent=2))
    print("nested-CV mistakes:")
    for kind, text in mistakes:
        print(f"  {kind}: {text}")
    return 0 if nested["precision"] >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
