"""Hard output constraints of a template version, checked on every variant."""

from __future__ import annotations

import re
from typing import Any

_WORD = re.compile(r"\b[\w'’-]+\b", re.UNICODE)  # noqa: RUF001 (typographic apostrophes count)


def fill(phrase: str, inputs: dict[str, Any]) -> str:
    """Phrases may name variables as {name}; unknown names stay literal."""
    return re.sub(r"\{(\w+)\}", lambda m: str(inputs.get(m.group(1), m.group(0))), phrase)


def check(text: str, constraints: dict[str, Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per constraint: ``{"constraint", "expected", "actual", "passed"}``."""
    report: list[dict[str, Any]] = []
    chars = len(text)
    words = len(_WORD.findall(text))
    lowered = text.casefold()

    def add(name: str, expected: Any, actual: Any, passed: bool) -> None:
        report.append({"constraint": name, "expected": expected, "actual": actual, "passed": passed})

    if constraints.get("min_chars") is not None:
        add("min_chars", constraints["min_chars"], chars, chars >= constraints["min_chars"])
    if constraints.get("max_chars") is not None:
        add("max_chars", constraints["max_chars"], chars, chars <= constraints["max_chars"])
    if constraints.get("min_words") is not None:
        add("min_words", constraints["min_words"], words, words >= constraints["min_words"])
    if constraints.get("max_words") is not None:
        add("max_words", constraints["max_words"], words, words <= constraints["max_words"])
    for phrase in constraints.get("required_phrases") or []:
        wanted = fill(phrase, inputs).strip()
        if wanted:
            add("required_phrase", wanted, wanted.casefold() in lowered, wanted.casefold() in lowered)
    for phrase in constraints.get("banned_phrases") or []:
        banned = fill(phrase, inputs).strip()
        if banned:
            present = banned.casefold() in lowered
            add("banned_phrase", banned, present, not present)
    return report


def validate_spec(constraints: Any) -> list[str]:
    """Errors in a constraints object a user wrote (custom templates)."""
    if not isinstance(constraints, dict):
        return ["constraints must be an object"]
    errors = []
    allowed = {"min_chars", "max_chars", "min_words", "max_words", "required_phrases", "banned_phrases"}
    for key, value in constraints.items():
        if key not in allowed:
            errors.append(f"unknown constraint {key!r} (allowed: {', '.join(sorted(allowed))})")
        elif key.endswith("_phrases"):
            if not isinstance(value, list) or not all(isinstance(p, str) and len(p) <= 200 for p in value):
                errors.append(f"{key} must be a list of strings of at most 200 characters")
        elif value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000):
            errors.append(f"{key} must be a whole number between 0 and 100000")
    for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
        lo, hi = constraints.get(low), constraints.get(high)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            errors.append(f"{low} is larger than {high}")
    return errors
