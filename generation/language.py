"""Which language a text is written in, for the constraint report's "language" check.

lingua (``lingua-language-detector``) is built for short and mixed texts, which marketing copy is;
the detector only weighs the languages a project may write in (``settings.CONTENT_LANGUAGES``), which
makes it faster and keeps it from answering a language no job can ask for. On the 88 short marketing
lines of tests/generation/data/language_samples.json (nine languages and Swedish, Danish, Polish banners) it
is right on every one; 7 banners under ``MIN_LETTERS`` pass as undetermined (``test_detector_accuracy_on_short_copy``).
High-accuracy mode, measured on those lines: low-accuracy mode (trigrams only, 23 MiB) got 2 of the 25 banners
wrong (Swedish as Dutch, Danish as German), which would fail good copy; high accuracy costs ~250 MiB and ~2 s
of loading, once per process that checks (the generation worker; a web process when a marketer edits).
"""

from __future__ import annotations

import functools
import unicodedata

from django.conf import settings
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

#: Below this many letters a text is too short to tell (a product name, "SALE -20%"): the check passes
#: as undetermined rather than fail copy that has no language to speak of.
MIN_LETTERS = 20
#: A Chinese or Japanese character says about as much as a short Western word: it counts as this many letters.
CJK_LETTER_WEIGHT = 3


@functools.cache
def _detector() -> LanguageDetector:
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in content_languages()]
    # Loaded once per process, on first use (see the module's docstring for the cost).
    return LanguageDetectorBuilder.from_languages(*languages).build()


def content_languages() -> list[str]:
    return [code for code, _ in settings.CONTENT_LANGUAGES]


def letter_count(text: str) -> int:
    """Letters in ``text``, a CJK character counting ``CJK_LETTER_WEIGHT``; digits and symbols count nothing."""
    count = 0
    for char in text:
        if not char.isalpha():
            continue
        name = unicodedata.name(char, "")
        count += CJK_LETTER_WEIGHT if name.startswith(("CJK", "HIRAGANA", "KATAKANA")) else 1
    return count


def detect(text: str) -> str | None:
    """The text's language as a ``CONTENT_LANGUAGES`` code, or None when it is too short to tell."""
    if letter_count(text) < MIN_LETTERS:
        return None
    language = _detector().detect_language_of(text)
    return language.iso_code_639_1.name.lower() if language is not None else None


def language_entry(text: str, expected: str) -> dict[str, object]:
    """The constraint report's hard "language" check: the text must be in ``expected`` (undetermined passes)."""
    actual = detect(text)
    return {
        "constraint": "language",
        "expected": expected,
        "actual": actual,
        "passed": actual is None or actual == expected,
        **({"undetermined": True} if actual is None else {}),
    }
