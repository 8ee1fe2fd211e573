"""40 seeded secrets and personal strings, placed in questions, answers, 👎 corrections, reviewers'
ideal answers, retrieved chunks, titles and thread context, appear in no exported file of any
format (SQLite and PostgreSQL), and the dataset card counts them by kind.

Ten of them are the kinds the hand-written rules let through (issue 15): 16-digit card numbers,
IBANs, IPv4 addresses, full names with street addresses and `https://user:password@host` URLs.
Against those rules this test fails: 9 of the 10 reach the files whole or in part (the tenth,
`admin:hunter2@…`, loses its password only because the email rule takes `hunter2@grafana…`)."""

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
# What leaked before, with the pieces that must not reach a file: the whole string, and for
# names, addresses and URLs every personal or secret part of it.
LEAKED_BEFORE = [
    ("4526 0181 5908 3012", ["4526 0181 5908 3012"]),
    ("5129-1703-4236-6719", ["5129-1703-4236-6719"]),
    ("GB71 LXAA 4743 9575 5131 37", ["GB71 LXAA"]),  # before, the phone rule took only the digits
    ("DE47353799075116372651", ["DE47353799075116372651"]),
    ("10.20.30.40", ["10.20.30.40"]),
    ("172.16.4.21", ["172.16.4.21"]),
    ("Sarah Connor, 42 Elm Street, Springfield, IL 62704", ["Sarah", "Connor", "42 Elm Street", "62704"]),
    ("John Smith, 221B Baker Street, London NW1 6XE", ["John Smith", "221B Baker", "NW1 6XE"]),
    ("https://admin:hunter2@grafana.northwind.example/d/1", ["admin:hunter2", "hunter2"]),
    # Before, its password lost only "x" (the email rule took "x@files…"): "Zq8!" stayed.
    ("https://svc-backup:Zq8!x@files.northwind.example/backups", ["svc-backup", "Zq8!"]),
]
ALL = [s for _k, s in SECRETS] + [s for _k, s in MORE] + [s for s, _parts in LEAKED_BEFORE]
assert len(ALL) == 40 and len(set(ALL)) == 40


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
        a, b, c, d = ALL[4 * i : 4 * i + 4]
        answer_id = f"secret-{i}"
        rec = record(
            answer_id,
            f"Question {i} about {topic}: is {a} right?",
            text=f"Answer {i} about {topic} mentions {b} [1].",
            chunk=f"Chunk {i} about {topic} lists {c} and {a}.",
            title=f"Doc {i} {b}",
            context=(f"Earlier {i}: my contact is {c}", f"Noted {d}"),
            extra_chunk=f"Another chunk naming {d} for {topic}.",
        )
        record_interaction(db.sessions, rec)
        record_vote(
            db.sessions,
            VoteRecord(
                answer_id=answer_id,
                user_hash="u1",
                platform="slack",
                value="down",
                correction=f"Fix {c}, and {d}",
            ),
        )
        save_review(
            db.sessions,
            answer_id,
            action="edit",
            reviewer="r",
            expected_version=0,
            ideal_answer=f"Ideal {i} about {topic}: use {a}, not {b} or {c} or {d} [1].",
        )
    settings = settings_for(tmp_path, validation_fraction=0.2)
    settings.feedback.private_url_patterns = PRIVATE
    results = [export_dataset(db.sessions, fmt, settings) for fmt in ("sft", "dpo", "kto")]

    written = {p: p.read_text(encoding="utf-8") for r in results for p in r.directory.iterdir()}
    assert len(written) == 4 + 6 + 4  # jsonl files, cards and manifests
    everything = "\n".join(written.values())
    leaked = [s for s in ALL if s in everything]
    leaked += [part for _s, parts in LEAKED_BEFORE for part in parts if part in everything]
    assert leaked == []
    # Not trivially: all ten examples of every format were written, with their ordinary text.
    for r in results:
        assert r.counts["examples"] == 10, r.counts
    for i, topic in enumerate(topics):
        assert f"Ideal {i} about {topic}" in everything and f"Chunk {i} about {topic}" in everything
    # The URLs keep their hosts; only the credentials go.
    assert "https://[URL_CREDENTIALS]@grafana.northwind.example/d/1" in everything
    # And the card reports what was removed, by kind.
    expected = Counter()
    for s in ALL:
        expected.update(redact(s, PRIVATE)[1])
    new_kinds = {"credit_card", "iban", "ip_address", "person", "street_address", "url_credentials"}
    assert new_kinds <= set(expected)
    sft = results[0]
    assert set(sft.redactions) == set(expected)
    card = (sft.directory / "dataset_card.md").read_text()
    for kind, n in sft.redactions.items():
        assert f"- {kind}: {n}" in card
    assert "by Presidio 2.2" in card and "en_core_web_sm" in card
    # Every kind the redactor looks for is either counted or named as looked for.
    assert "Also looked for, none found: password, ssn." in card
