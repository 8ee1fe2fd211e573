"""Extractive answers (no LLM) quote what answers the question: the matching table row with its
header, whole sentences (a sentence that leans on the one before comes with it), one coherent
passage for a how-to question, and something for each part of a two-part question.

Before, "what is the per diem in New York?" got the table's header row and two sentences around
it, and "how long is parental leave?" three sentences that never said how long.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import write

PER_DIEM = """# Meal Per Diem Rates

When you travel overnight for work, Northwind pays a fixed daily amount (a per diem) for meals
instead of reimbursing individual meal receipts. It's simpler for you and for Finance.

## Daily rates (2026)

| Destination | Per diem per day (USD) |
| --- | --- |
| United States, standard | $75 |
| High-cost US cities: New York City, San Francisco, Boston | $95 |
| Canada | $80 |
| United Kingdom and Western Europe | $100 |
| All other international destinations | $85 |

Portland counts as a standard US destination. Local employees do not receive a per diem for
work in their home city.
"""

VPN = """# VPN Access

Every employee is added to the VPN group automatically on their first day. The VPN is only
needed for internal systems such as Grafana and the admin consoles.

## Setup on macOS

1. Open Self Service and install the VPN client. Do not install it from the Mac App Store.
2. Click the VPN icon in the menu bar and choose Log in.
3. In the browser window that opens, sign in with your Okta account.
4. Approve the Okta Verify push on your phone.
5. The menu bar icon should now show Connected.

## Setup on Linux

1. Install the client with the package manager of your distribution.
2. Run the login command in a terminal and follow the link it prints.

## Troubleshooting

If the icon stays grey after an update, quit the client and start it again from Self Service.
"""

PASSWORDS = """# Password Manager

Northwind uses a password manager for every password a person types. You receive an
invitation on your first day.

## Getting your account

When you accept the invitation, you choose a master password. It must be at least 16
characters long. We recommend a passphrase of four or more random words. The app then shows
your Secret Key once; print the Emergency Kit and keep it somewhere safe at home.
"""

SICK_LEAVE = """# Sick Leave

Sick leave is separate from paid time off.

- Full-time employees get 10 paid sick days per year. They reset on January 1.
- Tell your manager by 10:00 on the first day you are sick, by Slack or phone.
- For more than 3 consecutive sick days, we need a doctor's note.
- Sick days can also be used to care for a sick family member.
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("extractive")
    write(root, "expenses/per-diem.md", PER_DIEM)
    write(root, "it/vpn.md", VPN)
    write(root, "it/passwords.md", PASSWORDS)
    write(root, "hr/sick-leave.md", SICK_LEAVE)
    return root


@pytest.fixture
def kn(make_knowledge, corpus):
    kn = make_knowledge([{"name": "d", "type": "directory", "path": str(corpus)}])
    assert kn.sync("d").error is None
    return kn


def quotes(answer_text: str) -> list[str]:
    """The quoted text of each answer line, without the bold heading lead-in ("**Setup:** ")."""
    return re.findall(r"^- (?:\*\*[^*\n]+:\*\* )?(.+?) \[\d+\]$", answer_text, flags=re.MULTILINE)


def test_a_table_row_is_quoted_whole_with_its_header(kn):
    answer = kn.answer("what is the per diem in New York?")
    assert not answer.abstained
    found = quotes(answer.text)
    row = (
        "Destination: High-cost US cities: New York City, San Francisco, Boston; Per diem per day (USD): $95"
    )
    assert row in found, answer.text
    assert not any(q.startswith("Destination | Per diem") for q in found), answer.text  # no bare header


COMMITTEES = """# Committees

Each standing committee keeps its own calendar.

| Committee | Meets |
| --- | --- |
| Architecture Council | every Monday at 10:00 |
| Northwind Review Board | every second Thursday at 15:00 |
| Security Steering Group | on the first Friday of the month |
| Hiring Panel | every Wednesday at 11:00 |
"""


def test_an_acronym_finds_the_row_that_spells_it_out(make_knowledge, tmp_path):
    # The handbook's "whats the per diem in NYC" quoted the standard US row: no word of the
    # question is in "New York City", and the model alone didn't pick that row.
    write(tmp_path, "committees.md", COMMITTEES)
    write(tmp_path, "it/vpn.md", VPN)
    kn = make_knowledge([{"name": "d", "type": "directory", "path": str(tmp_path)}])
    assert kn.sync("d").error is None
    answer = kn.answer("when is the NRB meeting each month?")
    assert not answer.abstained, answer.text  # nor is "NRB" a name the docs never mention
    rows = [q for q in quotes(answer.text) if q.startswith("Committee:")]
    assert rows == ["Committee: Northwind Review Board; Meets: every second Thursday at 15:00"], answer.text


def test_a_how_to_question_gets_the_steps_in_order(kn):
    answer = kn.answer("how do I set up the VPN on my Mac?")
    found = quotes(answer.text)
    steps = [
        "Open Self Service and install the VPN client. Do not install it from the Mac App Store.",
        "Click the VPN icon in the menu bar and choose Log in.",
        "In the browser window that opens, sign in with your Okta account.",
        "Approve the Okta Verify push on your phone.",
        "The menu bar icon should now show Connected.",
    ]
    assert len(found) >= 3 and found[0] in steps, answer.text
    start = steps.index(found[0])
    assert found == steps[start : start + len(found)], answer.text  # consecutive, in order
    assert not any("package manager" in q or "terminal" in q for q in found), answer.text  # not Linux


def test_a_sentence_that_leans_on_the_one_before_is_quoted_with_it(kn):
    answer = kn.answer("what's the minimum length for the master password?")
    leaning = (
        "When you accept the invitation, you choose a master password. "
        "It must be at least 16 characters long."
    )
    assert leaning in quotes(answer.text), answer.text


def test_each_part_of_a_two_part_question_is_answered(kn):
    answer = kn.answer("how many sick days do we get and do i need a doctors note?")
    text = answer.text
    assert "10 paid sick days per year" in text, text
    assert "we need a doctor's note" in text, text


def test_quotes_are_whole_sentences(kn):
    for question in (
        "is portland a high-cost city for per diem?",
        "when do I get added to the VPN group?",
        "what do I do if the VPN icon stays grey?",
    ):
        for quote in quotes(kn.answer(question).text):
            if ": " in quote and ";" in quote:  # a table row
                continue
            assert quote[0].isupper() and quote.endswith((".", "!", "?", ":")), (question, quote)


def test_units_attach_the_header_to_each_row_and_never_quote_the_header_alone():
    from knowledge.extractive import units

    found = units(PER_DIEM)
    header = [u for u in found if u.kind == "header"]
    rows = [u for u in found if u.kind == "row"]
    assert [u.text for u in header] == ["Destination | Per diem per day (USD)"]
    assert not header[0].quotable
    assert rows[1].quote() == (
        "Destination: High-cost US cities: New York City, San Francisco, Boston; Per diem per day (USD): $95"
    )
    assert all(u.heading == "Daily rates (2026)" for u in rows)
    # A chunk that starts mid-table has rows without a header: quoted as they are.
    cut = units("| Canada | $80 |\n| United Kingdom and Western Europe | $100 |\n")
    assert [(u.kind, u.quote()) for u in cut] == [
        ("row", "Canada | $80"),
        ("row", "United Kingdom and Western Europe | $100"),
    ]


def test_a_message_is_split_into_the_questions_it_asks():
    from knowledge.extractive import _parts

    assert _parts("how many sick days do we get and do i need a doctors note?") == [
        "how many sick days do we get",
        "do i need a doctors note?",
    ]
    # Context is not a question of its own.
    assert _parts("do i get paid leave for that? i only started here in january") == []
    assert _parts("what is the per diem in New York?") == []


CONTENTS = """# Employee Handbook

Start here: every policy has its own page.

- [VPN Access](it/vpn.md) - when you need the VPN and how to set it up
- [Password Manager](it/passwords.md) - vaults, sharing and account recovery
- [Sick Leave](hr/sick-leave.md) - how to report a sick day
"""


def test_a_table_of_contents_line_is_not_the_answer(make_knowledge, tmp_path):
    # Before: "How do I set up the VPN?" quoted the handbook's contents line that links to the
    # VPN page ("[VPN Access](it/vpn.md) - ... how to set it up"), and cited only the contents.
    write(tmp_path, "README.md", CONTENTS)
    write(tmp_path, "it/vpn.md", VPN)
    write(tmp_path, "it/passwords.md", PASSWORDS)
    kn = make_knowledge([{"name": "d", "type": "directory", "path": str(tmp_path)}])
    assert kn.sync("d").error is None
    answer = kn.answer("How do I set up the VPN?")
    assert not answer.abstained
    assert not any(q.startswith("[") for q in quotes(answer.text)), answer.text
    assert [c.path for c in answer.citations] == ["it/vpn.md"], answer.text


def test_the_best_pages_extra_context_does_not_outrank_the_second_page(embedder):
    # With `retrieval.context_chunks`, the answer also reads more of the best page after the
    # top-k. Those chunks are weighed by where they are read (after the top-k), not by their
    # page's rank: before, they outranked the second page's chunk, and on the Postfix manual
    # quoted the best page's passages in place of the second page's answer.
    from knowledge.answer import RetrievedChunk
    from knowledge.extractive import ExtractiveGenerator

    same = "Laptops are replaced every three years, and the old one goes back to IT."

    def chunk(doc: str, n: int, text: str, **extra: bool) -> RetrievedChunk:
        return RetrievedChunk(
            chunk_id=f"{doc}-{len(text)}", doc_id=doc, source="d", path=f"{doc}.md", title="Laptops",
            url="", text=text, score=1.0, doc_hash="h", n=n, **extra,
        )  # fmt: skip

    chunks = [
        chunk("policy", 1, "Every employee gets a company laptop on their first day."),
        chunk("refresh", 2, same),
        chunk("policy", 1, same, context_only=True),  # the same sentence: only the weighing differs
    ]
    answer = ExtractiveGenerator(embedder.model, top_chunks=2).generate(
        "how often are laptops replaced?", chunks, []
    )
    assert f"- {same} [2]" in answer.splitlines(), answer
    assert f"- {same} [1]" not in answer.splitlines(), answer
