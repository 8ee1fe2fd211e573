"""Query handling: chat noise stripped, the corpus's own abbreviations expanded, follow-ups in context."""

from __future__ import annotations

from knowledge.answer import Turn
from knowledge.query import normalize_question, retrieval_query
from knowledge.sparse import SparseEncoder
from knowledge.vocabulary import Vocabulary, mine
from tests.conftest import write


def test_abbreviations_are_mined_from_definitions():
    text = (
        "This page covers **paid time off (PTO)**. Reset MFA (multi-factor authentication) at the desk. "
        "Write Architecture Decision Records (ADRs) for big changes. Time to detect (TTD) matters.\n"
        "A customer-facing summary (RCA) is not a definition, nor is NFC (security key) or (Tailscale)."
    )
    assert mine(text) == {
        "PTO": "paid time off",
        "MFA": "multi-factor authentication",
        "ADR": "Architecture Decision Records",
        "TTD": "Time to detect",
    }


def test_expansion_adds_the_other_form_once():
    sparse = SparseEncoder()
    vocab = Vocabulary(
        [{"PTO": "paid time off"}, {"PTO": "paid time off", "IT": "information technology"}],
        is_stopword=lambda w: not sparse.terms(w),
    )
    assert vocab.expand("how much pto do I get?") == "how much pto do I get? (paid time off)"
    assert vocab.expand("is paid time off capped") == "is paid time off capped (PTO)"
    assert vocab.expand("Is PAID Time Off capped") == "Is PAID Time Off capped (PTO)"  # any case
    assert vocab.expand("PTO vs paid time off") == "PTO vs paid time off"
    assert vocab.expand("is it down?") == "is it down?"  # "it" is a word; only "IT" is the abbreviation
    assert vocab.expand("ask IT for a laptop").endswith("(information technology)")


def test_chat_noise_is_stripped():
    assert normalize_question("<@U06LQM3H2PX> hey, how do I reset MFA?") == "how do I reset MFA?"
    assert normalize_question("anyone know the minimum length for passwords?? thanks!") == (
        "the minimum length for passwords??"
    )
    assert normalize_question("Hi team! Does anyone know if we get a per diem? tia") == "we get a per diem?"
    assert normalize_question("@Lore") == ""


def test_follow_ups_borrow_the_previous_question():
    history = [
        Turn(role="user", text="@Lore how many vacation days do we get?"),
        Turn(role="assistant", text="25"),
    ]
    assert retrieval_query("and do they carry over?", history) == (
        "how many vacation days do we get? and do they carry over?"
    )
    assert retrieval_query("what is the hotel cap in New York for a three night trip?", history) == (
        "what is the hotel cap in New York for a three night trip?"
    )


def test_the_index_keeps_each_documents_abbreviations(make_knowledge, tmp_path):
    root = tmp_path / "docs"
    write(root, "leave.md", "# Leave\n\nThis page covers paid time off (PTO). You get 25 days a year.\n")
    write(root, "mfa.md", "# MFA\n\nReset your Multi-Factor Authentication (MFA) at the IT desk.\n")
    write(root, "travel.md", "# Travel\n\nBook trains for trips under four hours.\n")
    kn = make_knowledge([{"name": "hb", "type": "directory", "path": str(root)}])
    kn.sync("hb")
    assert kn.engine.vocabulary().abbreviations == {
        "PTO": "paid time off",
        "MFA": "multi-factor authentication",
    }
    hit = kn.engine.search("how much PTO do i get", top_k=1)[0]
    assert hit.path == "leave.md"
    (root / "mfa.md").unlink()
    kn.sync("hb")  # a deleted document takes its abbreviations with it
    assert kn.engine.vocabulary().abbreviations == {"PTO": "paid time off"}
    write(root, "leave.md", "# Leave\n\nYou get 25 days of leave a year.\n")
    kn.sync("hb")  # and so does an edit that drops the definition
    assert kn.engine.vocabulary().abbreviations == {}
