"""Hard output constraints of a template version, checked on every variant.

A report describes the text it was made for: the model's output when a variant
is stored, the marketer's text after an edit. Besides the template's own rules
it fails a text the model did not finish (``truncated``: it hit the token limit
or the job's deadline), and checks each line a template asks for (``fields``,
e.g. a Google ad's "Headline:" and "Description:") on its own.
"""

from __future__ import annotations

import re
from typing import Any

from generation import language as detected_language

_WORD = re.compile(r"\b[\w'’-]+\b", re.UNICODE)  # noqa: RUF001 (typographic apostrophes count)
#: "Headline: text", also with list or Markdown decoration ("- **Headline:** text").
_FIELD_LINE = re.compile(r"^[\s>#*_-]*(?:\d+[.)]\s*)?(?P<label>[^:\n]+?)[\s*_]*:[\s*_]*(?P<value>.*?)\s*$")
_LIMITS = ("min_chars", "max_chars", "min_words", "max_words")
#: Finish reasons that cut the text off before the model ended it (workers.engine.FinishReason).
TRUNCATING_FINISHES = frozenset({"length", "deadline", "canceled"})
MAX_FIELDS = 10
MAX_FIELD_LABEL = 40


def fill(phrase: str, inputs: dict[str, Any]) -> str:
    """Phrases may name variables as {name}; unknown names stay literal."""
    return re.sub(r"\{(\w+)\}", lambda m: str(inputs.get(m.group(1), m.group(0))), phrase)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def check(
    text: str,
    constraints: dict[str, Any],
    inputs: dict[str, Any],
    *,
    finish_reason: str | None = None,
    language: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per constraint: ``{"constraint", "expected", "actual", "passed"}`` (a field's also ``"field"``).

    ``finish_reason`` is the model's, for its own output; an edited text has none. ``language``: the job's,
    which the text must be written in (``generation.language``; a text too short to tell passes).
    """
    report: list[dict[str, Any]] = []
    lowered = text.casefold()

    def add(name: str, expected: Any, actual: Any, passed: bool, **extra: Any) -> None:
        report.append({"constraint": name, "expected": expected, "actual": actual, "passed": passed, **extra})

    if finish_reason in TRUNCATING_FINISHES:
        # A cut-off text fails whatever its length: "Insulation: 100" is not copy anyone can use.
        add("truncated", False, True, False, finish_reason=finish_reason)
    for name, actual in _measures(text, constraints):
        add(name, constraints[name], actual, _within(name, actual, constraints[name]))
    for phrase in constraints.get("required_phrases") or []:
        wanted = fill(phrase, inputs).strip()
        if wanted:
            add("required_phrase", wanted, wanted.casefold() in lowered, wanted.casefold() in lowered)
    for phrase in constraints.get("banned_phrases") or []:
        banned = fill(phrase, inputs).strip()
        if banned:
            present = banned.casefold() in lowered
            add("banned_phrase", banned, present, not present)
    if constraints.get("fields"):
        report += _check_fields(text, constraints["fields"])
    if language and text.strip():
        report.append(detected_language.language_entry(text, language))
    return report


def _measures(text: str, limits: dict[str, Any]) -> list[tuple[str, int]]:
    """(limit, the text's length in its unit) for each limit that is set."""
    sizes = {"chars": len(text), "words": count_words(text)}
    return [(name, sizes[name.split("_")[1]]) for name in _LIMITS if limits.get(name) is not None]


def _within(name: str, actual: int, bound: int) -> bool:
    return actual >= bound if name.startswith("min_") else actual <= bound


def split_fields(text: str, labels: list[str]) -> tuple[dict[str, str | None], int]:
    """Each labelled line's value (None when the text lacks it), and how many other non-empty lines there are.

    A label alone on its line takes the next line as its value. The first line with a label wins.
    """
    wanted = {label.strip().casefold(): label for label in labels}
    values: dict[str, str | None] = dict.fromkeys(labels)
    other = 0
    waiting: str | None = None  # a label seen alone on its line, whose value is on the next one
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _FIELD_LINE.match(line)
        label = wanted.get(match.group("label").strip().casefold()) if match else None
        if label is not None and match is not None and values[label] is None:
            values[label] = match.group("value")
            waiting = label if not match.group("value") else None
        elif waiting is not None:
            values[waiting], waiting = line.strip(), None
        else:
            other += 1
    return values, other


def _check_fields(text: str, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels = [field["label"] for field in fields]
    values, other = split_fields(text, labels)
    report = []
    for field in fields:
        label, value = field["label"], values[field["label"]]
        if not value:
            report.append(
                {"constraint": "field_present", "field": label, "expected": True, "actual": False, "passed": False}
            )
            continue
        for name, actual in _measures(value, field):
            passed = _within(name, actual, field[name])
            report.append(
                {"constraint": f"field_{name}", "field": label, "expected": field[name], "actual": actual,
                 "passed": passed}
            )
    # Ad fields are pasted one by one: anything else in the text is left out, or pasted by mistake.
    report.append({"constraint": "only_fields", "expected": labels, "actual": other, "passed": other == 0})
    return report


def passed(report: list[dict[str, Any]]) -> bool:
    """Whether every hard check passed; a soft one (``"soft": true``, e.g. unsupported statements) only flags."""
    return all(entry["passed"] for entry in report if not entry.get("soft"))


def validate_spec(constraints: Any) -> list[str]:
    """Errors in a constraints object a user wrote (custom templates)."""
    if not isinstance(constraints, dict):
        return ["constraints must be an object"]
    errors = []
    allowed = {*_LIMITS, "required_phrases", "banned_phrases", "fields", "numbers_from_facts"}
    for key, value in constraints.items():
        if key not in allowed:
            errors.append(f"unknown constraint {key!r} (allowed: {', '.join(sorted(allowed))})")
        elif key == "numbers_from_facts":
            if value is not None and not isinstance(value, bool):
                errors.append("numbers_from_facts must be true, false or null (null: on when knowledge is retrieved)")
        elif key.endswith("_phrases"):
            if not isinstance(value, list) or not all(isinstance(p, str) and len(p) <= 200 for p in value):
                errors.append(f"{key} must be a list of strings of at most 200 characters")
        elif key == "fields":
            errors += _field_spec_errors(value)
        elif not _is_limit(value):
            errors.append(f"{key} must be a whole number between 0 and 100000")
    errors += _bound_errors(constraints, "")
    return errors


def _is_limit(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100_000)


def _bound_errors(limits: dict[str, Any], where: str) -> list[str]:
    errors = []
    for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
        lo, hi = limits.get(low), limits.get(high)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            errors.append(f"{where}{low} is larger than {high}")
    return errors


def _field_spec_errors(fields: Any) -> list[str]:
    shape = (
        f"fields must be a list of at most {MAX_FIELDS} objects like "
        '{"label": "Headline", "max_chars": 30}'
    )
    if not isinstance(fields, list) or len(fields) > MAX_FIELDS or not all(isinstance(f, dict) for f in fields):
        return [shape]
    errors, seen = [], set()
    for i, field in enumerate(fields):
        label = field.get("label")
        if not isinstance(label, str) or not 0 < len(label.strip()) <= MAX_FIELD_LABEL or re.search(r"[:\n]", label):
            errors.append(f"fields[{i}].label must be text of 1 to {MAX_FIELD_LABEL} characters without ':'")
            continue
        if label.strip().casefold() in seen:
            errors.append(f"fields[{i}]: the label {label!r} is used twice")
        seen.add(label.strip().casefold())
        for key, value in field.items():
            if key == "label":
                continue
            if key not in _LIMITS:
                errors.append(f"fields[{i}]: unknown limit {key!r} (allowed: {', '.join(_LIMITS)})")
            elif not _is_limit(value):
                errors.append(f"fields[{i}].{key} must be a whole number between 0 and 100000")
        errors += _bound_errors(field, f"fields[{i}].")
    return errors
