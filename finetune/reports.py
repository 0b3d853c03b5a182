"""An adapter's stored evaluation (``finetune.evaluation.evaluate``) as rows to show: base vs adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

#: (key, label, whether lower is better).
METRICS = (
    ("perplexity", _("Held-out perplexity"), True),
    ("constraint_pass_rate", _("Constraint pass rate"), False),
    ("brand_fit", _("Brand fit"), False),
)


@dataclass(frozen=True)
class Row:
    label: Any
    base: float | None
    adapter: float | None
    better: bool | None


def _value(evaluation: dict[str, Any], side: str, key: str) -> float | None:
    """``{key: {"base": v, "adapter": v}}`` (``finetune.evaluation``), or ``{"base": {key: v}, ...}``."""
    by_metric = evaluation.get(key)
    value = by_metric.get(side) if isinstance(by_metric, dict) else None
    nested = evaluation.get(side)
    if value is None and isinstance(nested, dict):
        value = nested.get(key)
    if value is None:
        value = evaluation.get(f"{key}_{side}", evaluation.get(f"{side}_{key}"))
    if isinstance(value, dict):  # {"mean": ...}
        value = value.get("mean")
    return float(value) if isinstance(value, (int, float)) else None


def comparison(evaluation: dict[str, Any] | None) -> list[Row]:
    evaluation = evaluation or {}
    rows = []
    for key, label, lower_better in METRICS:
        base, adapter = _value(evaluation, "base", key), _value(evaluation, "adapter", key)
        if base is None and adapter is None:
            continue
        better = None if base is None or adapter is None else (adapter < base if lower_better else adapter > base)
        rows.append(Row(label, base, adapter, better))
    return rows


def samples(evaluation: dict[str, Any] | None, limit: int = 3) -> list[dict[str, str]]:
    """Side-by-side samples: ``{"brief", "base", "adapter"}`` each (other spellings read too)."""
    found = []
    for sample in ((evaluation or {}).get("samples") or [])[:limit]:
        if not isinstance(sample, dict):
            continue
        found.append(
            {
                "brief": str(sample.get("brief") or sample.get("user") or sample.get("prompt") or ""),
                "base": str(sample.get("base") or sample.get("base_text") or ""),
                "adapter": str(sample.get("adapter") or sample.get("adapter_text") or ""),
            }
        )
    return found
