"""Numbers of the results page."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def percent(value: Any) -> str:
    """0.0312 -> "3.12%"; two decimals under 10%, where conversion rates live, one above."""
    if value is None:
        return "-"
    number = float(value) * 100
    return f"{number:.2f}%" if abs(number) < 10 else f"{number:.1f}%"
