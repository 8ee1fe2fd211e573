"""Redaction of personal data and secrets: each kind, counted, and no damage to ordinary text."""

from __future__ import annotations

from collections import Counter

import pytest

from feedback.datasets.redact import KINDS, REPLACEMENT, Redactor, redact

PRIVATE = [r"wiki\.corp\.example", r"https?://intranet\.northwind\.local\S*", r"jira\.internal"]

# (kind, secret): fake values shaped like the real thing.
SECRETS = [
    ("email", "ada.lovelace@northwindlabs.com"),
    ("email", "payroll+urgent@hr.example.co.uk"),
    ("phone", "+1 (415) 555-2671"),
    ("phone", "020 7946 0958"),
    ("phone", "+442079460958"),
    ("phone", "503.555.0142"),
    ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("slack_token", "xoxp-2222222222-3333333333-4444444444-abcdef0123456789abcdef0123456789"),
    ("slack_token", "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef"),
    ("slack_token", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("discord_token", "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab"),
    ("openai_key", "sk-proj-AbCdEf0123456789AbCdEf0123456789xyzXYZ"),
    ("openai_key", "sk-AbCdEf0123456789AbCdEf0123456789AbCdEf01"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("github_token", "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("private_url", "https://wiki.corp.example/pages/viewpage.action?pageId=12345"),
    ("private_url", "http://intranet.northwind.local/hr/salaries"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"),
]


@pytest.mark.parametrize(("kind", "secret"), SECRETS, ids=[f"{k}-{i}" for i, (k, _s) in enumerate(SECRETS)])
def test_each_kind_is_replaced_and_counted(kind, secret):
    text = f"Please use {secret} for this, thanks."
    clean, counts = redact(text, PRIVATE)
    assert secret not in clean and REPLACEMENT[kind] in clean
    assert counts == Counter({kind: 1}), (clean, counts)
    assert clean.startswith("Please use ") and clean.endswith(" for this, thanks.")


@pytest.mark.parametrize(
    "text",
    [
        "On 2026-05-01 everyone gets 25 days of leave.",
        "The per diem is $95 per day, or 1,000 USD for a week.",
        "Connect to 10.20.30.40 or 192.168.100.200, then run version 1.2.3.",
        "Commit 3f786850e387550fdab836ed7e6dc881de23001b and sha256 "
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.",
        "See https://github.com/acme/handbook/blob/main/it/vpn.md and https://status.acme.example/",
        "Call extension 4455 or room 12-34; the budget is 123456789 cents.",
        "Tasks: task-runner, sk-8 is a size, AKIA is a prefix.",
        "Deploys Tuesday to Thursday 09:00-17:00, ticket ENG-1234.",
    ],
)
def test_ordinary_text_is_left_alone(text):
    clean, counts = redact(text, PRIVATE)
    assert clean == text and not counts


def test_private_url_patterns_take_the_whole_url_and_bare_mentions():
    r = Redactor(PRIVATE)
    clean, counts = r.redact(
        "Docs at https://jira.internal/browse/ENG-1?x=1 and wiki.corp.example/x, public: https://example.com/a"
    )
    assert clean == "Docs at [PRIVATE_URL] and [PRIVATE_URL]/x, public: https://example.com/a"
    assert counts == Counter({"private_url": 2})
    assert Redactor().redact("https://wiki.corp.example/a")[1] == Counter()  # no patterns, no private URLs


def test_values_are_redacted_all_the_way_down_and_counts_add_up():
    r = Redactor(PRIVATE)
    counts: Counter[str] = Counter()
    value = {
        "messages": [
            {"role": "user", "content": "mail ada@example.com or call +1 415 555 2671"},
            {"role": "assistant", "content": "key AKIAIOSFODNN7EXAMPLE"},
        ],
        "label": True,
        "n": 3,
    }
    clean = r.redact_value(value, counts)
    assert clean["label"] is True and clean["n"] == 3
    assert clean["messages"][0]["content"] == "mail [EMAIL] or call [PHONE]"
    assert counts == Counter({"email": 1, "phone": 1, "aws_access_key": 1})
    assert set(counts) <= set(KINDS)


def test_a_secret_is_never_half_redacted():
    # A Slack token contains digit runs that look like phone numbers; the token rule wins.
    clean, counts = redact("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")
    assert clean == "[SLACK_TOKEN]" and counts == Counter({"slack_token": 1})
