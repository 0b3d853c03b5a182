"""Display helpers for generation pages: constraint reports, statuses, finish reasons, scores."""

from __future__ import annotations

import time
from typing import Any

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext, pgettext_lazy

register = template.Library()

_LIMITS = {
    "min_chars": (gettext_lazy("At least {} characters"), gettext_lazy("{} characters")),
    "max_chars": (gettext_lazy("At most {} characters"), gettext_lazy("{} characters")),
    "min_words": (gettext_lazy("At least {} words"), gettext_lazy("{} words")),
    "max_words": (gettext_lazy("At most {} words"), gettext_lazy("{} words")),
}

FINISH_REASONS = {
    "stop": gettext_lazy("Finished"),
    "length": gettext_lazy("Hit the token limit"),
    "canceled": gettext_lazy("Canceled"),
    "deadline": gettext_lazy("Stopped at the deadline"),
    "blocked": gettext_lazy("Withheld"),
}

CATEGORY_LABELS = {
    "ecommerce": gettext_lazy("E-commerce"),
    "ads": gettext_lazy("Ads"),
    "email": pgettext_lazy("template category", "Email"),
    "social": gettext_lazy("Social"),
    "blog": gettext_lazy("Blog"),
    "seo": "SEO",
    "pr": "PR",
    "support": gettext_lazy("Support"),
    "custom": gettext_lazy("Custom"),
    "general": gettext_lazy("General"),
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


def _language_name(code: Any) -> str:
    return str(dict(settings.CONTENT_LANGUAGES).get(code, code))


@register.filter
def constraint_rule(entry: dict[str, Any]) -> str:
    """One line of a variant's constraint report, as a rule: "At most 60 characters", "Headline: at most 30…"."""
    name, expected = entry.get("constraint"), entry.get("expected")
    if name in _LIMITS:
        return _LIMITS[name][0].format(_number(expected))
    if name == "truncated":
        return gettext("Complete (not cut off)")
    if name == "field_present":
        return gettext("Has a “%(field)s:” line") % {"field": entry.get("field")}
    if isinstance(name, str) and name.startswith("field_") and name[6:] in _LIMITS:
        return f"{entry.get('field')}: " + _LIMITS[name[6:]][0].format(_number(expected)).lower()
    if name == "only_fields":
        labels = gettext(", ").join(f"“{label}:”" for label in expected or [])
        return gettext("Nothing but the %(labels)s lines") % {"labels": labels}
    if name == "required_phrase":
        return gettext("Contains “%(phrase)s”") % {"phrase": expected}
    if name == "banned_phrase":
        return gettext("Avoids “%(phrase)s”") % {"phrase": expected}
    if name == "facts":
        return gettext("Prices, numbers and specs found in the brief or knowledge")
    if name == "unsupported_statements":
        return gettext("Names and statements found in the brief or knowledge (a flag, not a failure)")
    if name == "language":
        return gettext("Written in %(language)s") % {"language": _language_name(expected)}
    return str(name)


@register.filter
def constraint_actual(entry: dict[str, Any]) -> str:
    """What the variant had: "72 characters", "found", "missing", "hit the token limit"."""
    name, actual = entry.get("constraint"), entry.get("actual")
    if name in _LIMITS:
        return _LIMITS[name][1].format(_number(actual))
    if name == "truncated":
        if not actual:
            return gettext("complete")
        reason = str(FINISH_REASONS.get(entry.get("finish_reason", ""), gettext("cut off")))
        return reason[:1].lower() + reason[1:]  # only the capital: a translation may hold a name ("Token")
    if name == "field_present":
        return gettext("found") if actual else gettext("missing")
    if isinstance(name, str) and name.startswith("field_") and name[6:] in _LIMITS:
        return _LIMITS[name[6:]][1].format(_number(actual))
    if name == "only_fields":
        if not actual:
            return gettext("nothing else")
        return ngettext("%(count)s other line", "%(count)s other lines", actual) % {"count": actual}
    if name == "required_phrase":
        return gettext("found") if actual else gettext("missing")
    if name == "banned_phrase":
        return gettext("present") if actual else gettext("absent")
    if name in ("facts", "unsupported_statements"):
        if not actual:
            return gettext("all supported")
        return gettext("%(count)s unsupported") % {"count": actual}
    if name == "language":
        if entry.get("undetermined") or actual is None:
            return gettext("too short to tell")
        return _language_name(actual)
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
    rules += [gettext("Contains “%(phrase)s”") % {"phrase": p} for p in constraints.get("required_phrases") or []]
    rules += [gettext("Avoids “%(phrase)s”") % {"phrase": p} for p in constraints.get("banned_phrases") or []]
    for field in constraints.get("fields") or []:
        set_limits = [name for name in _LIMITS if field.get(name) is not None]
        limits = [_LIMITS[name][0].format(_number(field[name])).lower() for name in set_limits]
        line = gettext("A “%(label)s:” line") % {"label": field["label"]}
        rules.append(line + (gettext(", ") + gettext(", ").join(limits) if limits else ""))
    return rules


@register.filter
def category_label(category: str) -> str:
    return str(CATEGORY_LABELS.get(category, category.replace("-", " ").replace("_", " ").capitalize()))


@register.filter
def finish_reason_label(reason: str) -> str:
    return str(FINISH_REASONS.get(reason, reason or "—"))


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
    if seconds < 60:
        return gettext("%(seconds)s s") % {"seconds": seconds}
    return gettext("%(minutes)s min %(seconds)s s") % {"minutes": seconds // 60, "seconds": seconds % 60}


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
    """Whether every hard check of a constraint report passed (an empty report passes nothing to show);
    a soft check (unsupported statements) only flags."""
    return all(entry.get("passed") for entry in report or [] if not entry.get("soft"))


@register.filter
def claim_source(claim: dict[str, Any], grounding: list[dict[str, Any]] | None) -> str:
    """What supports a fact-check claim, for its hover: "Brief: …", "<document title>: …", or why nothing does."""
    if not claim.get("supported"):
        if claim.get("hard"):
            return gettext("Not in the brief or the project's knowledge: check it before publishing.")
        return gettext("Nothing in the brief or the project's knowledge says this.")
    if claim.get("source") == "brief":
        where = gettext("Brief")
    else:
        chunk = next((c for c in grounding or [] if str(c.get("id")) == str(claim.get("source"))), None)
        where = str(chunk.get("source") or gettext("Knowledge")) if chunk else gettext("Knowledge")
    evidence = claim.get("evidence") or ""
    return f"{where}: {evidence}" if evidence else where


@register.filter
def withheld_count(variants: Any) -> int:
    """How many of a job's variants were withheld (moderation or the prompt-leak filter)."""
    return sum(1 for variant in variants if variant.is_withheld)
