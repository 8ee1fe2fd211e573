"""Content gaps at scale: embed and cluster 10,000 questions the way `lore.cluster_gaps` does.

    nice -n 10 .venv/bin/python bench/gaps.py [--questions 10000] [--json]

The questions are made up from 200 topics (a subject and an action each, asked in seven
phrasings and twelve contexts), all distinct strings with real near-duplicates, as a busy help
channel's are.
They are stored as interaction records in a throwaway SQLite feedback log, then `run_reports`
selects, embeds (Lore's MiniLM, `embedding.backend` as configured: ONNX by default), clusters
(scikit-learn, average linkage on cosine distance) and stores the run. Timed apart: the select,
the embedding, the clustering, and the whole run; then a second run, as the next scheduled one
finds the same questions (their vectors come from the process's cache). Target: clustering 10k
questions under 60 s.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import scratch

SUBJECTS = [
    "VPN",
    "laptop",
    "printer",
    "parking permit",
    "gym subsidy",
    "visa",
    "401k",
    "payroll",
    "expense report",
    "badge",
    "Wi-Fi",
    "Slack channel",
    "Jira project",
    "GitHub access",
    "on-call rota",
    "release pipeline",
    "staging database",
    "SSO login",
    "password reset",
    "MFA token",
    "travel booking",
    "per diem",
    "health insurance",
    "dental plan",
    "parental leave",
    "sick day",
    "holiday calendar",
    "desk booking",
    "monitor",
    "headset",
    "meeting room",
    "coffee machine",
    "bike storage",
    "shower",
    "locker",
    "mail room",
    "shipping label",
    "NDA",
    "contract template",
    "invoice",
    "purchase order",
    "vendor onboarding",
    "security training",
    "phishing email",
    "incident report",
    "backup",
    "disk encryption",
    "antivirus",
    "software licence",
    "Figma seat",
]
ACTIONS = ["get", "renew", "cancel", "report a problem with"]
FORMS = [
    "How do I {a} my {s}?",
    "Who can help me {a} the {s}?",
    "Where is the page about how to {a} a {s}?",
    "What's the process to {a} my {s}?",
    "Is there a way to {a} the {s} quickly?",
    "hey, can someone explain how to {a} a {s}",
    "I need to {a} my {s}, what should I do?",
]


CONTEXTS = [
    "",
    " as a contractor",
    " from home",
    " before Friday",
    " on my phone",
    " in the Berlin office",
    " for a new hire",
    " while travelling",
    " for my team",
    " after the reorg",
    " this quarter",
    " without admin rights",
]


def questions(n: int, seed: int = 7) -> list[str]:
    """`n` distinct questions (up to 16,800): 200 topics x 7 phrasings x 12 contexts, sampled."""
    rng = random.Random(seed)
    every = [
        form.format(a=a, s=s).rstrip("?") + c + ("?" if form.endswith("?") else "")
        for s in SUBJECTS
        for a in ACTIONS
        for form in FORMS
        for c in CONTEXTS
    ]
    if n > len(every):
        raise SystemExit(f"at most {len(every)} distinct questions")
    return rng.sample(every, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from config.settings import GapsSettings, Settings
    from feedback.db import Database
    from feedback.gaps import cached_embed, cluster_report, select_questions, store_report
    from feedback.schema import InteractionRecord
    from feedback.store import record_interaction
    from knowledge.answer import ABSTAIN_TEXT, Answer
    from knowledge.embeddings import build_embedder

    data = scratch("gaps")
    settings = Settings(data_dir=data)
    db = Database.from_settings(settings)
    db.upgrade()
    now = datetime.now(UTC)
    texts = questions(args.questions)
    for i, text in enumerate(texts):
        answer = Answer(question=text, text=ABSTAIN_TEXT, abstained=True, model="x", prompt_version="v1")
        record = InteractionRecord(
            answer=answer,
            correlation_id=str(i),
            platform="slack",
            channel="C0HELP",
            user_hash="u",
            created_at=now - timedelta(minutes=i),
        )
        record_interaction(db.sessions, record)
    embedder = build_embedder(settings.embedding)
    embedder.query_model.get_text_embedding_batch(["warm up"])
    gaps = GapsSettings(max_questions=args.questions)

    timings: dict[str, float] = {}
    cached = cached_embed(embedder)

    def embed(batch: list[str]) -> np.ndarray:
        t = time.perf_counter()
        found = cached(batch)
        timings["embed_s"] = time.perf_counter() - t
        return found

    def run() -> list:
        start = time.perf_counter()
        since = now - timedelta(days=90)
        selected = select_questions(db.sessions, "gaps", since=since, limit=gaps.max_questions)
        timings["select_s"] = time.perf_counter() - start
        t = time.perf_counter()
        clusters = cluster_report(selected, embed, distance=gaps.distance, min_size=gaps.min_size)
        timings["cluster_s"] = time.perf_counter() - t - timings["embed_s"]  # linkage, labels, members
        t = time.perf_counter()
        store_report(db.sessions, "gaps", clusters, params={}, questions=len(selected), started_at=now)
        timings["store_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - start
        return [selected, clusters]

    selected, clusters = run()
    first = dict(timings)
    run()  # the next scheduled run: the same questions, vectors from the process's cache
    timings = {**first, "rerun_embed_s": timings["embed_s"], "rerun_total_s": timings["total_s"]}
    result = {
        "questions": len(selected),
        "unique": len(set(" ".join(q.question.lower().split()) for q in selected)),
        "clusters": len(clusters),
        "largest": clusters[0]["size"] if clusters else 0,
        "embedding": f"{embedder.identity.describe()} via {embedder.backend}",
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **{k: round(v, 2) for k, v in timings.items()},
    }
    db.dispose()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>12}: {v}")


if __name__ == "__main__":
    main()
