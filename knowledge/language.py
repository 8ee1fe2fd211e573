"""Is a question written in English? Lore's embedding model, BM25 and prompts are English, so a
question in another language gets a short note that Lore answers in English, not a poor answer.

Short chat messages are where language identification is weakest, and a false "not English"
would turn away a real question, so the test leans towards English:

1. Fewer than three words (after dropping mentions, links, code and emoji): English, since
   "VPN?" or "lgtm" says nothing about a language.
2. At least a fifth of the words are common English function words ("how", "do", "the", "my"):
   English. Technical terms and names ("kubectl", "München") do not change that.
3. Otherwise lingua-language-detector (its models ship in the wheel; low-accuracy mode, the
   trigram models only: ~40 MB and well under a millisecond a question) over English and the
   languages most often written in workplaces: not English only when another language is
   clearly ahead (confidence >= 0.5) and English is far behind (< 0.1).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

_NOISE = re.compile(r"<[^>]*>|https?://\S+|`[^`]*`|:[a-z0-9_+-]+:", re.I)
_WORD = re.compile(r"[^\W\d_]+")
# Scripts written without spaces: each character counts as a word.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")

_COMMON = """a about after all am an and any anyone are as at be been before but by can could did do does
    doing for from get got has have how i if in into is it its it's me my need no not of on or our
    should so some someone that the their there these they this to up us was we were what what's
    when where which who why will with would you your yes help please thanks hi hey"""
_FUNCTION_WORDS = frozenset(_COMMON.split())

# Lingua's names for the languages it tells apart from English here.
LANGUAGES = (
    "ENGLISH", "FRENCH", "GERMAN", "SPANISH", "PORTUGUESE", "ITALIAN", "DUTCH", "POLISH",
    "RUSSIAN", "UKRAINIAN", "TURKISH", "SWEDISH", "DANISH", "CZECH", "JAPANESE", "CHINESE",
    "KOREAN", "ARABIC", "HINDI", "INDONESIAN", "VIETNAMESE",
)  # fmt: skip


@dataclass(frozen=True)
class LanguageGuess:
    english: bool
    language: str  # lingua's name ("GERMAN"), or "ENGLISH"
    reason: str


@functools.cache
def _detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    languages = [getattr(Language, name) for name in LANGUAGES]
    return LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()


def guess(text: str) -> LanguageGuess:
    """Blocking (the first call loads the models, ~0.1 s); run it off the event loop."""
    words = [w.lower() for w in _WORD.findall(_NOISE.sub(" ", text))]
    if sum(len(_UNSPACED.findall(w)) or 1 for w in words) < 3:
        return LanguageGuess(True, "ENGLISH", "too short to tell")
    common = sum(w in _FUNCTION_WORDS for w in words)
    if common * 5 >= len(words):
        return LanguageGuess(True, "ENGLISH", "common English words")
    values = _detector().compute_language_confidence_values(" ".join(words))
    english = next((v.value for v in values if v.language.name == "ENGLISH"), 0.0)
    top = values[0] if values else None
    if top is not None and top.language.name != "ENGLISH" and top.value >= 0.5 and english < 0.1:
        return LanguageGuess(False, top.language.name, f"{top.language.name.title()} ({top.value:.2f})")
    return LanguageGuess(True, "ENGLISH", "no other language clearly ahead")


def is_english(text: str) -> bool:
    return guess(text).english
