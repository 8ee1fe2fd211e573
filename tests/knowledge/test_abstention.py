"""Abstention that sees missing terms, and its per-corpus calibration, on small corpora with the
real MiniLM embedder and the real BM25 index."""

from __future__ import annotations

import pytest

from knowledge import calibrate as calibration
from knowledge.abstain import (
    DEFAULT_THRESHOLDS,
    TermSignal,
    TermStats,
    Thresholds,
    candidates,
    decide,
    spelt_out,
)
from knowledge.answer import ABSTAIN_TEXT
from tests.conftest import write

# A small mail-relay manual: one section per setting, like a reference page.
SECTIONS = {
    "relayhost": "The relayhost setting names the next-hop server for mail that is not delivered "
    "locally. Leave it empty to deliver directly to the recipient's MX host.",
    "queue_lifetime": "Deferred messages stay in the queue for at most five days. After the queue "
    "lifetime has passed, undeliverable mail is bounced back to the sender.",
    "message_size_limit": "The message size limit is ten megabytes by default. Larger messages are "
    "rejected during the SMTP conversation with a permanent error.",
    "mailbox_size_limit": "Local delivery refuses to grow a mailbox file beyond fifty megabytes. "
    "Raise the mailbox size limit for users who keep large mbox files.",
    "smtpd_tls": "Incoming connections may use TLS when a certificate and a private key are "
    "configured. Set the security level to encrypt to require TLS from every client.",
    "sasl_auth": "SASL authentication lets roaming users relay mail after they log in. The relay "
    "supports the Dovecot and Cyrus SASL implementations.",
    "aliases": "The aliases table redirects mail for local addresses to other recipients. Run "
    "newaliases after editing the aliases file so the change takes effect.",
    "virtual_domains": "Virtual mailbox domains receive mail for users that have no system "
    "account. Each domain needs a line in the virtual domains table.",
    "milters": "Content filters can inspect each message through the milter protocol. A milter "
    "may accept, reject, quarantine or modify the message.",
    "postscreen": "The postscreen daemon blocks zombie spambots before they reach the SMTP "
    "server. It checks DNS blocklists and protocol violations.",
    "rate_limits": "The anvil service counts connections per client. Clients that open too many "
    "connections per minute are told to try again later.",
    "header_checks": "Header checks match each message header against regular expressions and can "
    "reject, discard or redirect matching mail.",
    "logging": "Every daemon logs through syslog by default. The maillog file records deliveries, "
    "deferrals and bounces with the queue id of each message.",
    "transport_maps": "The transport table routes mail for a domain to a specific delivery agent "
    "or next-hop host, overriding the relayhost for that domain.",
    "recipient_verification": "Recipient address verification probes the downstream server before "
    "accepting mail, so that invalid recipients are rejected early.",
    "smtpd_banner": "The greeting banner is the text the server sends when a client connects. "
    "Keep the mail_name in it so that clients recognise the software.",
    "bounce_template": "Bounce messages are built from templates. A custom template can explain "
    "to senders why delivery failed and whom to contact.",
    "dns_lookups": "Address lookups use DNS and the hosts file. Disable DNS lookups only on "
    "relays that always send to a fixed smarthost by IP address.",
    "master_process": "The master daemon starts every other daemon on demand, as described by "
    "master.cf, and restarts them when they exit.",
    "local_delivery": "The local delivery agent writes mail to mailbox files or Maildir folders, "
    "and runs commands from .forward files with the user's privileges.",
}


def manual(root):
    for name, text in SECTIONS.items():
        write(root, f"{name}.md", f"# {name}\n\n{text}\n")


@pytest.fixture
def kn(make_knowledge, tmp_path):
    manual(tmp_path / "docs")
    kn = make_knowledge([{"name": "relay", "type": "directory", "path": str(tmp_path / "docs")}])
    assert kn.sync("relay").error is None
    return kn


def signal(kn, question: str) -> TermSignal:
    found = kn.engine.lookup(question)
    assert found.signal is not None
    return found.signal


def test_chat_words_numbers_and_stop_words_are_not_salient(kn):
    stats = TermStats(kn.store.backend, kn.store.sparse)
    question = "hey, how do we set up our relay so a 15mb file isn't bounced after 5d?"
    assert [t for _w, t, _i, _id in stats.salient(question)] == ["relay", "file", "bounced"]
    named = {t: ident for _w, t, ident in candidates("Can our Terraform deploy mx-eu1 for postfix?")}
    assert named["Terraform"] and named["eu1"] and not named["postfix"]


def test_a_named_thing_the_corpus_never_mentions_is_missing(kn):
    s = signal(kn, "how do we deploy the relayhost with Terraform?")
    assert s.missing == ("Terraform",)
    assert signal(kn, "which relayhost does our setup use for mail?").missing == ()


def test_an_identifier_is_missing_as_written(kn):
    assert signal(kn, "is mx-eu1 the relayhost for our queue?").missing == ("mx-eu1",)


def test_a_misspelt_common_word_is_not_a_missing_thing(kn):
    s = signal(kn, "how long do defered mesages stay in the queue?")
    assert s.missing == ()
    assert {t.token for t in s.terms if t.near_miss} == {"mesages"}  # "defered" stems as deferred does
    # A name one letter from a corpus word, but not a typo of it (first letter differs), is missing.
    assert signal(kn, "does the milter protocol work with rmilter?").missing == ("rmilter",)


def test_an_acronym_a_retrieved_chunk_spells_out_is_not_a_missing_thing(kn):
    stats = TermStats(kn.store.backend, kn.store.sparse)
    question = "which relayhost do we use for the NYC office?"
    assert stats.signal(question, [SECTIONS["relayhost"]]).missing == ("NYC",)
    office = "Mail from the New York City office goes through the relayhost in the DMZ."
    found = stats.signal(question, [SECTIONS["relayhost"], office])
    assert found.missing == () and [t.word for t in found.terms if t.spelt_out] == ["NYC"]
    # Connectives may sit between the words; lower-case words are no spelling of a name.
    assert spelt_out("CVE", ["patch every Common Vulnerabilities and Exposures entry"])
    assert not spelt_out("SES", ["the relay sends email securely"])
    assert not spelt_out("NYC", ["New York only"]) and not spelt_out("Nyc", ["New York City"])


def test_an_everyday_word_the_corpus_lacks_is_not_a_missing_thing(kn):
    s = signal(kn, "how long do we keep deferred mail in the queue?")
    assert s.missing == () and any(t.common for t in s.terms if t.token == "long")


def test_coverage_weighs_rare_terms_that_the_top_chunks_lack(kn):
    stats = TermStats(kn.store.backend, kn.store.sparse)
    question = "does postscreen check the mailbox size limit?"
    postscreen, mailbox = SECTIONS["postscreen"], SECTIONS["mailbox_size_limit"]
    assert stats.signal(question, [postscreen, mailbox]).coverage == 1.0
    partial = stats.signal(question, [mailbox]).coverage
    assert 0 < partial < 1


def test_decide_uses_the_floor_and_the_missing_term_threshold():
    t = Thresholds(floor=0.45, named=0.6)
    missing = TermSignal()  # nothing salient
    assert decide(0.40, missing, t).abstain and not decide(0.50, missing, t).abstain
    from knowledge.abstain import Term

    named = TermSignal((Term("Terraform", "Terraform", 0, False),), chunks=100)
    assert decide(0.55, named, t).abstain and decide(0.55, named, t).missing == ("Terraform",)
    assert not decide(0.65, named, t).abstain  # a close match despite the unknown word


def test_the_reply_names_what_is_missing(kn):
    answer = kn.answer("how do we deploy the relayhost with Terraform?")
    assert answer.abstained, answer.confidence
    assert answer.text == "I couldn't find anything about Terraform in the docs."
    assert answer.missing_terms == ["Terraform"] and answer.citations == []
    plain = kn.answer("what is the wifi password at the Lisbon office?")
    assert plain.abstained and plain.text.startswith("I couldn't find")


def test_answerable_questions_with_chat_phrasing_and_typos_are_answered(kn):
    for question in (
        "hey, how long do defered messages stay in our queue before they bounce?",
        "whats the default message size limit on our relay?",
        "we need roaming users to relay mail after they log in, how?",
    ):
        answer = kn.answer(question)
        assert not answer.abstained, (question, answer.confidence, answer.missing_terms)


def test_configured_thresholds_override_everything(make_knowledge, tmp_path):
    manual(tmp_path / "docs")
    sources = [{"name": "relay", "type": "directory", "path": str(tmp_path / "docs")}]
    kn = make_knowledge(sources, retrieval={"abstain_below": -1, "abstain_if_missing_below": -1})
    assert kn.sync("relay").error is None
    assert kn.engine.thresholds("relay") == Thresholds(-1, -1, "configured")
    assert not kn.answer("how do we deploy the relayhost with Terraform?").abstained
    status = kn.sources_status()[0]["abstention"]
    assert status["origin"] == "configured" and status["floor"] == -1


def test_calibration_fits_thresholds_and_is_stored_with_the_index(kn, monkeypatch):
    assert kn.sources_status()[0]["abstention"]["origin"] == "default"  # 20 chunks: too few to calibrate
    monkeypatch.setattr(calibration, "CHUNKS_PER_PAIR", 2)
    monkeypatch.setattr(calibration, "MAX_QUESTIONS", 8)
    state = kn.calibrate("relay")
    assert state is not None
    assert state["answerable"] == state["unanswerable"] >= 4
    assert state["detected"] >= 0.75  # the term signal sees most swapped-in names as missing
    lo, hi = calibration.FLOOR_RANGE
    assert lo <= state["floor"] <= hi and state["floor"] <= state["named"] <= calibration.NAMED_RANGE[1]
    # Stored and shown, but the built-in thresholds answer unless calibration is switched on.
    status = kn.sources_status()[0]
    assert status["abstention"]["origin"] == "default" and status["calibration"]["named"] == state["named"]
    assert kn.engine.thresholds("relay") == DEFAULT_THRESHOLDS
    kn.settings.retrieval.abstain_calibrated = True
    kn.engine.refresh()
    thresholds = kn.engine.thresholds("relay")
    assert thresholds.origin == "calibrated" and thresholds.named == pytest.approx(state["named"], abs=1e-4)
    assert kn.sources_status()[0]["abstention"]["origin"] == "calibrated"
    # A full sync calibrates again; a small corpus goes back to the defaults.
    monkeypatch.setattr(calibration, "CHUNKS_PER_PAIR", 1000)
    kn.sync("relay", full=True)
    assert kn.engine.thresholds("relay") == DEFAULT_THRESHOLDS


def test_a_full_sync_calibrates(kn, monkeypatch):
    monkeypatch.setattr(calibration, "CHUNKS_PER_PAIR", 2)
    monkeypatch.setattr(calibration, "MAX_QUESTIONS", 6)
    kn.sync("relay", full=True)
    assert kn.store.get_state("calibration", "relay")["answerable"] >= 3


def test_synthetic_questions_swap_the_rarest_word_for_a_name_the_corpus_lacks(kn):
    store = kn.store
    texts = [str(p.get("text", "")) for _i, p, _d in store.backend.scroll({"source": "relay"}, ["text"])]
    pairs = calibration.synthesize(texts, TermStats(store.backend, store.sparse), "relay", 5)
    assert len(pairs) == 5
    for pair in pairs:
        assert pair.name in pair.unanswerable and pair.name not in pair.answerable
        assert pair.swapped in pair.answerable.split(" ") or pair.swapped in pair.answerable
        assert pair.answerable.replace(pair.swapped, pair.name, 1) == pair.unanswerable


def test_the_plain_abstention_text_is_unchanged():
    assert ABSTAIN_TEXT == "I couldn't find this in the docs"
