"""Redaction of personal data and secrets: each kind, labelled right and counted, and no damage
to ordinary text. The real analyzer throughout (Presidio, the spaCy model, Lore's recognizers)."""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from feedback.datasets import redact as redact_module
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

# Kinds the hand-written rules let through (issue 15): each checked by Luhn, mod 97, or format.
MORE_SECRETS = [
    ("credit_card", "4526 0181 5908 3012"),  # Visa, 16 digits (the old phone rule stopped at 15)
    ("credit_card", "5555-5555-5555-4444"),  # Mastercard
    ("credit_card", "2221268599528900"),  # Mastercard 2-series
    ("credit_card", "3782 822463 10005"),  # Amex: was labelled [PHONE]
    ("credit_card", "6011 1111 1111 1117"),  # Discover
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("iban", "FR1420041010050500013M02606"),
    ("ssn", "123-45-6788"),  # was labelled [PHONE]
    ("ssn", "219 09 9999"),
    ("ip_address", "10.20.30.40"),
    ("ip_address", "192.168.100.200"),
    ("ip_address", "2001:db8::8a2e:370:7334"),
    ("password", "password: Hunter22!"),
    ("url_credentials", "postgres://lore:S3cr3tPw@db.internal:5432/app"),
]


@pytest.mark.parametrize(
    ("kind", "secret"),
    SECRETS + MORE_SECRETS,
    ids=[f"{k}-{i}" for i, (k, _s) in enumerate(SECRETS + MORE_SECRETS)],
)
def test_each_kind_is_replaced_labelled_and_counted(kind, secret):
    text = f"Please use {secret} for this, thanks."
    clean, counts = redact(text, PRIVATE)
    assert REPLACEMENT[kind] in clean and counts == Counter({kind: 1}), (clean, counts)
    assert clean.startswith("Please use ") and clean.endswith(" for this, thanks.")
    assert secret not in clean
    if kind == "password":  # the value goes, the word stays
        assert clean == "Please use password: [PASSWORD] for this, thanks."
    if kind == "url_credentials":  # the credentials go, the URL and its host stay
        assert clean == "Please use postgres://[URL_CREDENTIALS]@db.internal:5432/app for this, thanks."


def test_an_ssn_and_an_amex_number_are_not_labelled_phone_numbers():
    clean, counts = redact("SSN 123-45-6788, card 3782 822463 10005, cell (212) 555-0199.")
    assert clean == "SSN [SSN], card [CREDIT_CARD], cell [PHONE]."
    assert counts == Counter({"ssn": 1, "credit_card": 1, "phone": 1})


def test_numbers_that_fail_their_checksum_are_not_cards_or_ibans():
    # One digit changed: Luhn fails for the card, mod 97 for the IBAN.
    text = "Order 4526 0181 5908 3013 and reference GB82 WEST 1234 5698 7654 33."
    clean, counts = redact(text)
    assert "credit_card" not in counts and "iban" not in counts, (clean, counts)


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        (
            "Hi, I'm Sarah Connor and I moved to 42 Elm Street, Springfield, IL 62704.",
            "Hi, I'm [PERSON] and I moved to [ADDRESS].",
            {"person": 1, "street_address": 1},
        ),
        (
            "Please send the laptop to John Smith, 221B Baker Street, London NW1 6XE.",
            "Please send the laptop to [PERSON], [ADDRESS].",
            {"person": 1, "street_address": 1},
        ),
        (
            "Ship to Flat 3, 14 Kings Road, London SW3 4RP",
            "Ship to [ADDRESS]",
            {"street_address": 1},
        ),
        (
            "Maria Garcia approves travel; receipts to Hauptstraße 5, 10115 Berlin.",
            "[PERSON] approves travel; receipts to [ADDRESS].",
            {"person": 1, "street_address": 1},
        ),
        ("Please ask Priya Raman in HR.", "Please ask [PERSON] in HR.", {"person": 1}),
        (
            "My mailing address is P.O. Box 4521, Anchorage, AK 99509",
            "My mailing address is [ADDRESS]",
            {"street_address": 1},
        ),
    ],
)
def test_names_and_street_addresses(text, expected, counts):
    assert redact(text) == (expected, Counter(counts))


@pytest.mark.parametrize(
    "text",
    [
        "On 2026-05-01 everyone gets 25 days of leave.",
        "The per diem is $95 per day, or 1,000 USD for a week.",
        "After upgrading to version 4.2.0.1, run 1.2.3 again.",
        "Commit 3f786850e387550fdab836ed7e6dc881de23001b and sha256 "
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.",
        "Tenant 123e4567-e89b-12d3-a456-426614174000 is in the billing export.",
        "See https://github.com/acme/handbook/blob/main/it/vpn.md and https://status.acme.example/",
        "Clone ssh://git@github.com/acme/infra.git or git@github.com:acme/app.git",
        "Call extension 4455 or room 12-34; the budget is 123456789 cents.",
        "The RMA number is 7734-5521-09 and the order is #A-19442-7731.",
        "Tasks: task-runner, sk-8 is a size, AKIA is a prefix.",
        "Deploys Tuesday to Thursday 09:00-17:00, ticket ENG-1234.",
        "How do I get access to Grafana dashboards for the payments service?",
        "What is the per diem in Berlin, and for the London office?",
        "Does the shuttle stop at Main Street station?",
        "Set max_connections = 200 and timeout: 30s; the password is required.",
        "Error E1234: connection refused on port 8443",
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
            {"role": "assistant", "content": "key AKIAIOSFODNN7EXAMPLE, card 4111 1111 1111 1111"},
        ],
        "label": True,
        "n": 3,
    }
    clean = r.redact_value(value, counts)
    assert clean["label"] is True and clean["n"] == 3
    assert clean["messages"][0]["content"] == "mail [EMAIL] or call [PHONE]"
    assert clean["messages"][1]["content"] == "key [AWS_ACCESS_KEY], card [CREDIT_CARD]"
    assert counts == Counter({"email": 1, "phone": 1, "aws_access_key": 1, "credit_card": 1})
    assert set(counts) <= set(KINDS)


def test_a_secret_is_never_half_redacted():
    # A Slack token contains digit runs that look like phone numbers; the token rule wins.
    clean, counts = redact("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")
    assert clean == "[SLACK_TOKEN]" and counts == Counter({"slack_token": 1})
    # The password of a URL looks like an email's local part: the URL credentials win.
    clean, counts = redact("use https://admin:hunter2@grafana.example.com/d/1")
    assert clean == "use https://[URL_CREDENTIALS]@grafana.example.com/d/1"
    assert counts == Counter({"url_credentials": 1})


def test_long_texts_go_paragraph_by_paragraph_with_the_same_result():
    paragraphs = [
        "Leave policy. " * 80 + "Please ask Priya Raman in HR.",
        "Card 4111 1111 1111 1111 is the team card. " * 3,
        "Nothing to hide here; version 1.2.3 shipped on 2026-05-01.",
    ]
    text = "\n\n".join(paragraphs)
    assert len(text) > redact_module._SPLIT_ABOVE
    whole = Redactor()
    clean, counts = whole.redact(text)
    assert clean == "\n\n".join(Redactor().redact(p)[0] for p in paragraphs)
    assert counts == Counter({"person": 1, "credit_card": 3})
    # A repeated paragraph is analysed once.
    assert paragraphs[1] in whole._cache and len(whole._cache) == 3


def test_a_pem_block_with_a_blank_line_is_not_split():
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n"
        + "MIIEowIBAAKCAQEA7bq98\n" * 60
        + "-----END RSA PRIVATE KEY-----"
    )
    assert len(key) > redact_module._SPLIT_ABOVE
    clean, counts = redact(f"My key:\n\n{key}\n\nthanks")
    assert clean == "My key:\n\n[PRIVATE_KEY]\n\nthanks" and counts == Counter({"private_key": 1})


def test_prepare_batches_and_gives_what_redact_gives_one_by_one():
    texts = [
        "Card 4111 1111 1111 1111, please.",
        "Ask Sarah Connor about 42 Elm Street, Springfield, IL 62704.",
        "Version 4.2.0.1 is fine.",
        "ip 10.0.12.5 and ssn 123-45-6788",
    ]
    one_by_one = [Redactor(PRIVATE).redact(t) for t in texts]
    batched = Redactor(PRIVATE)
    batched.prepare([{"messages": [{"content": t}]} for t in texts])
    assert set(batched._cache) == set(texts)
    assert [batched.redact(t) for t in texts] == one_by_one


def test_redaction_never_touches_the_network(monkeypatch):
    # tldextract fetches the public-suffix list on first use unless told not to, and Presidio
    # downloads a missing spaCy model: neither may happen (no internet where Lore runs).
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(redact_module, "_tld", None)  # a fresh public-suffix list too
    engine = redact_module._Engine()
    clean, counts = next(engine.redact(["Mail grace.hopper@navy.example.mil, Ada Lovelace"], []))
    assert clean == "Mail [EMAIL], [PERSON]" and counts == Counter({"email": 1, "person": 1})
    assert attempts == []
