"""Display helpers for generation pages: constraint reports, statuses, finish reasons, scores."""

from __future__ import annotations

import time
from typing import Any

from django import template
from django.utils import timezone

register = template.Library()

_LIMITS = {
    "min_chars": ("At least {} characters", "{} characters"),
    "max_chars": ("At most {} characters", "{} characters"),
    "min_words": ("At least {} words", "{} words"),
    "max_words": ("At most {} words", "{} words"),
}

FINISH_REASONS = {
    "stop": "Finished",
    "length": "Hit the token limit",
    "canceled": "Canceled",
    "deadline": "Stopped at the deadline",
    "blocked": "Withheld",
}

CATEGORY_LABELS = {
    "ecommerce": "E-commerce",
    "ads": "Ads",
    "email": "Email",
    "social": "Social",
    "blog": "Blog",
    "seo": "SEO",
    "pr": "PR",
    "support": "Support",
    "custom": "Custom",
    "general": "General",
}

STATUS_BADGES = {
    "queued": "badge-info",
    "running": "badge-warning",
    "succeeded": "badge-success",
    "failed": "badge-danger",
    "canceled": "",
}


def _number(value: Any) -> Any:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


@register.filter
def constraint_rule(entry: dict[str, Any]) -> str:
    """One line of a variant's constraint report, as a rule: "At most 60 characters", "Headline: at most 30…"."""
    name, expected = entry.get("constraint"), entry.get("expected")
    if name in _LIMITS:
        return _LIMITS[name][0].format(_number(expected))
    if name == "truncated":
        return "Complete (not cut off)"
    if name == "field_present":
        return f"Has a “{entry.get('field')}:” line"
    if isinstance(name, str) and name.startswith("field_") and name[6:] in _LIMITS:
        return f"{entry.get('field')}: " + _LIMITS[name[6:]][0].format(_number(expected)).lower()
    if name == "only_fields":
        return "Nothing but the " + ", ".join(f"“{label}:”" for label in expected or []) + " lines"
    if name == "required_phrase":
        return f"Contains “{expected}”"
    if name == "banned_phrase":
        return f"Avoids “{expected}”"
    return str(name)


@register.filter
def constraint_actual(entry: dict[str, Any]) -> str:
    """What the variant had: "72 characters", "found", "missing", "hit the token limit"."""
    name, actual = entry.get("constraint"), entry.get("actual")
    if name in _LIMITS:
        return _LIMITS[name][1].format(_number(actual))
    if name == "truncated":
        return FINISH_REASONS.get(entry.get("finish_reason", ""), "cut off").lower() if actual else "complete"
    if name == "field_present":
        return "found" if actual else "missing"
    if isinstance(name, str) and name.startswith("field_") and name[6:] in _LIMITS:
        return _LIMITS[name[6:]][1].format(_number(actual))
    if name == "only_fields":
        return f"{actual} other line{'' if actual == 1 else 's'}" if actual else "nothing else"
    if name == "required_phrase":
        return "found" if actual else "missing"
    if name == "banned_phrase":
        return "present" if actual else "absent"
    return str(actual)


@register.filter
def constraint_rules(constraints: dict[str, Any] | None) -> list[str]:
    """A template version's constraints as readable rules, for the generate page."""
    constraints = constraints or {}
    rules = [
        _LIMITS[name][0].format(f"{constraints[name]:,}")
        for name in ("min_chars", "max_chars", "min_words", "max_words")
        if constraints.get(name) is not None
    ]
    rules += [f"Contains “{p}”" for p in constraints.get("required_phrases") or []]
    rules += [f"Avoids “{p}”" for p in constraints.get("banned_phrases") or []]
    for field in constraints.get("fields") or []:
        set_limits = [name for name in _LIMITS if field.get(name) is not None]
        limits = [_LIMITS[name][0].format(_number(field[name])).lower() for name in set_limits]
        rules.append(f"A “{field['label']}:” line" + (f", {', '.join(limits)}" if limits else ""))
    return rules


@register.filter
def category_label(category: str) -> str:
    return CATEGORY_LABELS.get(category, category.replace("-", " ").replace("_", " ").capitalize())


@register.filter
def finish_reason_label(reason: str) -> str:
    return FINISH_REASONS.get(reason, reason or "—")


@register.filter
def status_badge(status: str) -> str:
    return STATUS_BADGES.get(status, "")


@register.filter
def percent(value: float | None) -> str:
    """A 0..1 score as a whole percentage ("72"); empty when there is no score."""
    if value is None:
        return ""
    return str(round(max(0.0, min(1.0, float(value))) * 100))


@register.filter
def fit_level(value: float | None) -> str:
    """good / fair / poor, for colouring the brand-fit bar."""
    if value is None:
        return "none"
    return "good" if value >= 0.6 else "fair" if value >= 0.35 else "poor"


@register.filter
def inputs_summary(inputs: dict[str, Any], length: int = 90) -> str:
    """A job's inputs on one line: the values, joined, shortened."""
    text = " · ".join(str(v) for v in (inputs or {}).values() if v not in (None, ""))
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


@register.filter
def input_rows(job: Any) -> list[tuple[str, Any]]:
    """A job's inputs as (label, value), in the order its template version declares them."""
    inputs, variables = job.inputs or {}, job.template_version.variables
    rows = [(v.get("label") or v["name"], inputs[v["name"]]) for v in variables if v["name"] in inputs]
    declared = {v["name"] for v in variables}
    return rows + [(name, value) for name, value in inputs.items() if name not in declared]


def _seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


@register.filter
def elapsed(job: Any) -> str:
    """How long the job has waited or run so far; for a final job, how long it took."""
    start = job.started_at or job.created_at
    end = job.finished_at or timezone.now()
    return _seconds((end - start).total_seconds())


@register.filter
def waited(job: Any) -> str:
    """How long the job has been queued (until now, or until it started)."""
    return _seconds(((job.started_at or timezone.now()) - job.created_at).total_seconds())


#: Length of one sweep of the indeterminate progress bar (app.css, .progress-bar), in seconds.
PROGRESS_SWEEP_S = 1.3


@register.simple_tag
def progress_phase() -> str:
    """A negative animation delay that continues the sweep where the last poll's copy of the bar left it.

    Each poll replaces the bar; without this its animation would restart every second.
    """
    return f"-{time.time() % PROGRESS_SWEEP_S:.2f}s"


@register.simple_tag
def rating_scale() -> list[int]:
    return [1, 2, 3, 4, 5]


@register.filter
def report_passed(report: list[dict[str, Any]] | None) -> bool:
    """Whether every check of a constraint report passed (an empty report passes nothing to show)."""
    return all(entry.get("passed") for entry in report or [])


@register.filter
def withheld_count(variants: Any) -> int:
    """How many of a job's variants were withheld (moderation or the prompt-leak filter)."""
    return sum(1 for variant in variants if variant.is_withheld)
