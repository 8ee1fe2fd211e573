"""Remove personal data and secrets from text before it is written anywhere. Pure functions.

Each kind of secret has its own pattern and replacement (`[EMAIL]`, `[OPENAI_KEY]`, …), and every
replacement is counted by kind, so an export can say what it removed without showing it.
Covered: emails, phone numbers, Slack tokens and webhooks, Discord bot tokens, OpenAI keys, AWS
access and secret keys, GitHub tokens, PEM private keys, JWTs, and URLs matching the configured
private patterns (`feedback.private_url_patterns`).

Patterns run from the most specific to the most general, so a token is never half-eaten by a
broader rule (an AWS secret inside a URL is redacted as the URL when the URL is private, else as
the secret).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# kind -> (pattern, replacement). Order matters: earlier kinds win.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "private_key",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ),
    ("slack_token", re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+")),
    ("slack_token", re.compile(r"\bxox[abposrec]-[A-Za-z0-9-]{8,}")),
    ("slack_token", re.compile(r"\bxapp-\d-[A-Za-z0-9-]{8,}")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    # Discord bot tokens: base64(user id) . timestamp . HMAC.
    (
        "discord_token",
        re.compile(r"(?<![\w.-])[A-Za-z\d_-]{23,28}\.[A-Za-z\d_-]{6,7}\.[A-Za-z\d_-]{27,40}(?![\w.-])"),
    ),
    ("email", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
]

# An AWS secret access key is 40 base64 characters; mixed case and a digit tell it from words,
# and from hex digests (lower-case only).
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

# Phone numbers: an optional +country code and (area code), then groups of digits separated by
# spaces, dots or dashes; or + and 8-15 digits. Checked afterwards: 9-15 digits, not an IP address
# or a date.
_PHONE = re.compile(
    r"(?<![\w.+/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,6}){1,5}(?![\w/-]|\.\d)"
    r"|(?<![\w+])\+\d{8,15}\b"
)
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{4}$")

_URL = re.compile(r"\b(?:https?|ftp|file)://[^\s<>\"'`)\]]+|\bwww\.[^\s<>\"'`)\]]+", re.IGNORECASE)

REPLACEMENT = {
    "private_url": "[PRIVATE_URL]",
    "private_key": "[PRIVATE_KEY]",
    "slack_token": "[SLACK_TOKEN]",
    "github_token": "[GITHUB_TOKEN]",
    "openai_key": "[OPENAI_KEY]",
    "aws_access_key": "[AWS_ACCESS_KEY]",
    "aws_secret_key": "[AWS_SECRET_KEY]",
    "jwt": "[JWT]",
    "discord_token": "[DISCORD_TOKEN]",
    "email": "[EMAIL]",
    "phone": "[PHONE]",
}
KINDS = tuple(REPLACEMENT)


def _looks_like_aws_secret(candidate: str) -> bool:
    return (
        any(c.isupper() for c in candidate)
        and any(c.islower() for c in candidate)
        and any(c.isdigit() for c in candidate)
    )


def _looks_like_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not 9 <= digits <= 15:
        return False
    stripped = candidate.strip()
    return not (_IP.match(stripped) or _DATE.match(stripped))


@dataclass
class Redactor:
    """`Redactor(patterns).redact(text)` -> (clean text, counts by kind)."""

    private_url_patterns: Iterable[str] = ()
    _private: list[re.Pattern[str]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._private = [re.compile(p, re.IGNORECASE) for p in self.private_url_patterns]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        if not text:
            return text, counts

        def sub(
            kind: str, pattern: re.Pattern[str], s: str, keep: Callable[[str], bool] | None = None
        ) -> str:
            def repl(m: re.Match[str]) -> str:
                if keep is not None and not keep(m.group(0)):
                    return m.group(0)
                counts[kind] += 1
                return REPLACEMENT[kind]

            return pattern.sub(repl, s)

        if self._private:
            # A whole URL goes if any private pattern matches part of it; then bare matches.
            text = sub("private_url", _URL, text, lambda url: any(p.search(url) for p in self._private))
            for pattern in self._private:
                text = sub("private_url", pattern, text)
        for kind, pattern in _PATTERNS:
            text = sub(kind, pattern, text)
        text = sub("aws_secret_key", _AWS_SECRET, text, _looks_like_aws_secret)
        text = sub("phone", _PHONE, text, _looks_like_phone)
        return text, counts

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
