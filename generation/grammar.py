"""A template version's hard limits as an ``OutputConstraint``, which engines enforce while decoding.

What a grammar can hold by construction: the labelled lines a template asks for (``fields``: each
line "Label: value", exactly these lines in this order, each value within its ``max_chars``), the
whole text's ``max_chars``, banned phrases (enforced where an engine can: ``workers.grammar``), and,
for copy written from a project's facts, the numbers it may state (``numbers_from_facts``).
Everything else stays a check after decoding (``generation.constraints``): minimum lengths, word
counts, required phrases (a goal, not a shape), and the brand voice's words to avoid, which only
lower the brand-fit score.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from generation import constraints as checks
from workers.contract import OutputConstraint
from workers.grammar import numbers_in

#: The longest line or text a grammar is compiled for; above it the check after decoding alone
#: applies (the largest built-in, the 2,200-character caption, compiles in ~1.2 s with xgrammar).
MAX_GRAMMAR_CHARS = 5000
#: A field's line limit when the template gives it no ``max_chars``: the grammar still fixes its
#: label and place, and its word limits are checked after decoding.
FREE_FIELD_CHARS = 1000


def numbers_from_facts(constraints: dict[str, Any], grounding: Sequence[Any] | None) -> bool:
    """Whether copy may state only the numbers its sources give (the brief, the retrieved knowledge).

    A template's ``numbers_from_facts`` decides; without it, on when the job's prompt holds knowledge:
    a marketer who grounds copy in a fact sheet reads a price or spec nobody supplied as an invented
    fact. Without knowledge the brief alone rarely states the numbers copy may fairly use ("24/7",
    "3 colours"), so a number is left to the fact check's judgement.
    """
    setting = constraints.get("numbers_from_facts")
    return bool(grounding) if setting is None else bool(setting)


def output_constraint(
    constraints: dict[str, Any], inputs: dict[str, Any], sources: Iterable[str] | None = None
) -> OutputConstraint | None:
    """The constraint for a template version's ``constraints`` with these inputs; None when nothing applies.

    ``sources``: the texts every number of the copy must come from (``generation.factcheck.job_sources``:
    the inputs, the retrieved knowledge, an organization's own template), or None when numbers are free.
    """
    prefixes, lines = _field_lines(constraints.get("fields") or [])
    max_chars = constraints.get("max_chars")
    if not isinstance(max_chars, int) or not 0 < max_chars <= MAX_GRAMMAR_CHARS:
        max_chars = 0
    if lines and max_chars and sum(map(len, prefixes)) + 2 * len(lines) - 1 > max_chars:
        lines, prefixes = (), ()  # labels alone overflow the total: no grammar can satisfy both
    banned = tuple(
        phrase for p in constraints.get("banned_phrases") or [] if (phrase := checks.fill(p, inputs).strip())
    )
    # A field's label may hold a number ("Headline 2: "), which the grammar itself writes.
    numbers = None if sources is None else numbers_in([*sources, *prefixes])
    if not (lines or max_chars or banned or numbers is not None):
        return None
    return OutputConstraint(lines=lines, max_chars=max_chars, banned=banned, prefixes=prefixes, numbers=numbers)


def _field_lines(fields: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Each field's line prefix ("Label: ") and value limit, or nothing when the checks would not find them."""
    if not fields:
        return (), ()
    labels = [field["label"] for field in fields]
    prefixes = tuple(f"{label.strip()}: " for label in labels)
    limits = tuple(min(field.get("max_chars") or FREE_FIELD_CHARS, MAX_GRAMMAR_CHARS) for field in fields)
    # A label the checks read differently (one that starts like a list item, "1. Title") would make
    # every constrained text fail: enforce the lines only when the checks find each value in them.
    sample = "\n".join(prefix + "x" for prefix in prefixes)
    values, other = checks.split_fields(sample, labels)
    if other or any(value != "x" for value in values.values()):
        return (), ()
    return prefixes, limits
