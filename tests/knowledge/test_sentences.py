"""Extractive answers quote whole sentences from hard-wrapped Markdown.

Sentences used to be split at every newline, so a paragraph wrapped at 72 columns was quoted a
line at a time ("If the VPN stops working after an [1]"). A paragraph's (or list item's) lines
now join into sentences; list items, table rows, headings and code lines stay separate units.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import write

VPN = """# VPN

If the VPN stops working after an update, quit WireGuard, reinstall it
from Self Service and sign in again with your Okta password. The tunnel
reconnects on its own within a minute, and your open sessions survive the
switch without any action from you.

## Setup

- Install WireGuard from Self Service on your laptop before your first
  day, then import the profile that IT emails to you.
- Turn on the tunnel whenever you work from a cafe or a hotel network.
- Leave the tunnel off in the office, where the wired network is already
  trusted by every internal service.

| Office | Gateway |
|--------|---------|
| Berlin headquarters | vpn-ber.northwind.example |
| Lisbon engineering hub | vpn-lis.northwind.example |

```sh
wg-quick up northwind-office-tunnel --profile laptop
```
"""

EXPENSES = """# Travel expenses

Train tickets for trips under four hours are booked in second class, and
anything longer may be booked in first class when the ticket costs less than
the flight. Keep every receipt: the finance team needs a photo of each one
within thirty days of the trip.

Hotel nights are reimbursed up to 180 euros in most cities. In London,
Paris and New York the limit is 260 euros a night, breakfast included.
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("wrapped")
    write(root, "it/vpn.md", VPN)
    write(root, "finance/travel.md", EXPENSES)
    return root


def quotes(answer_text: str) -> list[str]:
    """The quoted text of each answer line, without the bold heading lead-in ("**Setup:** ")."""
    return re.findall(r"^- (?:\*\*[^*\n]+:\*\* )?(.+?) \[\d+\]$", answer_text, flags=re.MULTILINE)


def flat(text: str) -> str:
    return " ".join(text.split())


QUESTIONS = [
    "what should I do if the VPN stops working after an update?",
    "how long until the tunnel reconnects?",
    "when do I install WireGuard?",
    "should I use the VPN in a cafe or hotel?",
    "do I need the tunnel in the office?",
    "what is the VPN gateway for the Berlin headquarters?",
    "can I book first class train tickets?",
    "what is the hotel limit in London?",
    "how soon do I have to send receipts to finance?",
]


def test_extractive_answers_over_hard_wrapped_markdown_quote_whole_sentences(make_knowledge, corpus):
    kn = make_knowledge([{"name": "d", "type": "directory", "path": str(corpus)}])
    assert kn.sync("d").error is None
    source = flat(VPN + " " + EXPENSES)
    quoted: list[str] = []
    for question in QUESTIONS:
        answer = kn.answer(question)
        assert not answer.abstained, question
        found = quotes(answer.text)
        assert found, answer.text
        quoted += found
    for quote in quoted:
        if quote.startswith(("Office: ", "Gateway: ")):  # a table row, with its header
            cells = [pair.split(": ", 1) for pair in quote.split("; ")]
            assert all(f"| {h} |" in VPN and f"| {c} |" in VPN for h, c in cells), quote
            continue
        assert flat(quote) in source, quote  # a piece of the docs, lines joined
        if not quote.startswith("wg-quick"):  # code lines
            assert quote[0].isupper() and quote.endswith((".", "!", "?")), f"cut sentence: {quote!r}"
    joined = set(quoted)
    assert (
        "If the VPN stops working after an update, quit WireGuard, reinstall it from Self Service "
        "and sign in again with your Okta password." in joined
    ), quoted
    assert "Turn on the tunnel whenever you work from a cafe or a hotel network." in joined, quoted


def test_sentences_keep_lists_tables_headings_and_code_apart():
    from knowledge.generate import sentences

    assert sentences(VPN) == [
        "If the VPN stops working after an update, quit WireGuard, reinstall it from Self Service "
        "and sign in again with your Okta password.",
        "The tunnel reconnects on its own within a minute, and your open sessions survive the "
        "switch without any action from you.",
        "Install WireGuard from Self Service on your laptop before your first day, then import "
        "the profile that IT emails to you.",
        "Turn on the tunnel whenever you work from a cafe or a hotel network.",
        "Leave the tunnel off in the office, where the wired network is already trusted by every "
        "internal service.",
        "Berlin headquarters | vpn-ber.northwind.example",
        "Lisbon engineering hub | vpn-lis.northwind.example",
        "wg-quick up northwind-office-tunnel --profile laptop",
    ]


def test_sentences_of_a_chunk_cut_mid_table_or_mid_code_block():
    from knowledge.generate import sentences

    # A chunk can start inside a table (no header row) or end inside a code fence.
    chunk = (
        "| Lisbon engineering hub | vpn-lis.northwind.example |\n"
        "| Porto support office | vpn-opo.northwind.example |\n\n"
        "Run the installer from a terminal when Self Service is\nunavailable:\n\n"
        "```sh\nsudo apt install wireguard-tools resolvconf\nwg-quick up northwind"
    )
    assert sentences(chunk) == [
        "Lisbon engineering hub | vpn-lis.northwind.example",
        "Porto support office | vpn-opo.northwind.example",
        "Run the installer from a terminal when Self Service is unavailable:",
        "sudo apt install wireguard-tools resolvconf",
    ]
