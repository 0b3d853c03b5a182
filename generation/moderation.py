"""Input and output moderation: a configurable block list plus a small rule set.

Rules are regular expressions per category, deliberately conservative (whole
words, explicit phrases) so marketing copy is not blocked by accident. Operators
extend the block list with ``MODERATION_BLOCKLIST`` (comma-separated terms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

RULES: dict[str, list[str]] = {
    "violence": [
        r"\b(kill|murder|shoot|stab)\s+(him|her|them|you|everyone|people)\b",
        r"\bbomb[- ]making\b",
        r"\bhow to (make|build) (a )?(bomb|explosive)s?\b",
    ],
    "self_harm": [r"\b(kill|hurt) (myself|yourself)\b", r"\bsuicide (method|instructions)\b"],
    "hate": [r"\b(exterminate|gas) (the )?(jews|muslims|christians|blacks|whites|gays)\b"],
    "sexual_minors": [r"\b(child|minor|underage)\s+(porn|sex|nude)\w*\b"],
    "weapons": [r"\b(ghost gun|untraceable (gun|firearm))\b"],
    "prompt_injection": [
        r"\bignore (all |any )?(the )?(previous|prior|above) instructions\b",
        r"\b(reveal|print|show|repeat) (me )?(the |your )?(system prompt|hidden instructions)\b",
    ],
}


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    category: str = ""
    match: str = ""

    @property
    def reason(self) -> str:
        return f"blocked by moderation ({self.category}: {self.match!r})" if self.blocked else ""

    def as_dict(self) -> dict[str, str | bool]:
        return {"blocked": self.blocked, "category": self.category, "match": self.match}


@lru_cache(maxsize=8)
def _compiled(blocklist: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    patterns = [(category, re.compile(p, re.IGNORECASE)) for category, ps in RULES.items() for p in ps]
    patterns += [("blocklist", re.compile(rf"\b{re.escape(term)}\b", re.IGNORECASE)) for term in blocklist if term]
    return patterns


def moderate(text: str) -> Verdict:
    for category, pattern in _compiled(tuple(settings.MODERATION_BLOCKLIST)):
        found = pattern.search(text)
        if found:
            return Verdict(True, category, found.group(0))
    return Verdict(False)
