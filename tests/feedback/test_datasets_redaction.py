"""30 seeded secrets and personal strings, placed in questions, answers, ideal answers, retrieved
chunks and thread context, appear in no exported file of any format (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter

from feedback.datasets.export import export_dataset
from feedback.datasets.redact import redact
from feedback.reviews import save_review
from feedback.schema import VoteRecord
from feedback.store import record_interaction, record_vote
from tests.feedback.test_datasets import record, settings_for
from tests.feedback.test_redact import SECRETS

PRIVATE = [r"corp\.example", r"intranet\.northwind\.local"]
MORE = [
    ("email", "grace.hopper@navy.example.mil"),
    ("email", "j.doe@corp-mail.example.org"),
    ("phone", "+49 30 901820"),
    ("phone", "(212) 555-0199"),
    ("private_url", "https://git.corp.example/infra/secrets.yaml"),
    ("private_url", "http://intranet.northwind.local/people/ada"),
    ("openai_key", "sk-svcacct-ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210"),
    ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
    ("slack_token", "xoxa-2-1234567890-0987654321-abcdefabcdefabcdef"),
    ("discord_token", "ODk0NTY3ODkwMTIzNDU2Nzg5.YbCdEf.Zx-Yw_VuTsRqPoNmLkJiHgFeDcBa98765"),
]
ALL = [s for _k, s in SECRETS] + [s for _k, s in MORE]
assert len(ALL) == 30 and len(set(ALL)) == 30


def test_no_seeded_secret_reaches_any_exported_file(db, tmp_path):
    topics = [
        "vpn",
        "leave",
        "per diem",
        "deploys",
        "laptops",
        "phishing",
        "wifi",
        "printers",
        "benefits",
        "on-call",
    ]
    for i, topic in enumerate(topics):
        a, b, c = ALL[3 * i : 3 * i + 3]
        answer_id = f"secret-{i}"
        rec = record(
            answer_id,
            f"Question {i} about {topic}: is {a} right?",
            text=f"Answer {i} about {topic} mentions {b} [1].",
            chunk=f"Chunk {i} about {topic} lists {c} and {a}.",
            title=f"Doc {i} {b}",
            context=(f"Earlier {i}: my contact is {c}", f"Noted {b}"),
            extra_chunk=f"Another chunk naming {a} for {topic}.",
        )
        record_interaction(db.sessions, rec)
        record_vote(
            db.sessions,
            VoteRecord(
                answer_id=answer_id, user_hash="u1", platform="slack", value="down", correction=f"Fix {c}"
            ),
        )
        save_review(
            db.sessions,
            answer_id,
            action="edit",
            reviewer="r",
            expected_version=0,
            ideal_answer=f"Ideal {i} about {topic}: use {a}, not {b} or {c} [1].",
        )
    settings = settings_for(tmp_path, validation_fraction=0.2)
    settings.feedback.private_url_patterns = PRIVATE
    results = [export_dataset(db.sessions, fmt, settings) for fmt in ("sft", "dpo", "kto")]

    written = {p: p.read_text(encoding="utf-8") for r in results for p in r.directory.iterdir()}
    assert len(written) == 4 + 6 + 4  # jsonl files, cards and manifests
    everything = "\n".join(written.values())
    leaked = [s for s in ALL if s in everything]
    assert leaked == []
    # Not trivially: all ten examples of every format were written, with their ordinary text.
    for r in results:
        assert r.counts["examples"] == 10, r.counts
    for i, topic in enumerate(topics):
        assert f"Ideal {i} about {topic}" in everything and f"Chunk {i} about {topic}" in everything
    # And the card reports what was removed, by kind.
    expected = Counter()
    for s in ALL:
        expected.update(redact(s, PRIVATE)[1])
    sft = results[0]
    assert set(sft.redactions) == set(expected)
    card = (sft.directory / "dataset_card.md").read_text()
    for kind, n in sft.redactions.items():
        assert f"- {kind}: {n}" in card
