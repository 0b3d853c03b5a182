"""Server-rendered SVG charts for the billing dashboard: geometry computed here, drawn by a template.

No JavaScript chart library: the page must work offline and without a CDN, and a
stacked bar per day is a few rectangles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from django.utils import dateformat
from django.utils.translation import gettext, pgettext

from billing.usage import Series

#: One colour per series; the last (grey) is for "Other". Chosen to read in light and dark mode.
PALETTE = ("#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#94a3b8")

# Layout in SVG user units; the SVG scales to the card's width.
BAR_WIDTH = 14
BAR_GAP = 6
PLOT_HEIGHT = 160
LEFT = 56  # room for the y-axis labels
TOP = 8
BOTTOM = 22  # room for the date labels


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str  # the tooltip: "Spring, 3 Nov: 1,200 tokens"


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class LegendEntry:
    label: str
    color: str
    total: int


@dataclass(frozen=True)
class StackedBars:
    width: int
    height: int
    rects: list[Rect]
    gridlines: list[Label]  # y positions with their value labels
    day_labels: list[Label]
    legend: list[LegendEntry]
    plot_left: int
    plot_right: int

    @property
    def empty(self) -> bool:
        return not self.rects


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (an axis maximum)."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover (the loop always returns)


def compact(value: int) -> str:
    """1200 -> "1.2k", 3000000 -> "3M": short axis labels."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(value)


def stacked_bars(days: list[date], series: list[Series]) -> StackedBars:
    """One bar per day, stacked by series, on a shared y scale from zero to a round maximum."""
    width = LEFT + len(days) * (BAR_WIDTH + BAR_GAP) + BAR_GAP
    height = TOP + PLOT_HEIGHT + BOTTOM
    day_totals = [sum(s.per_day[n] for s in series) for n in range(len(days))]
    top = nice_ceiling(max(day_totals, default=0))
    scale = PLOT_HEIGHT / top
    baseline = TOP + PLOT_HEIGHT
    rects = []
    for n, day in enumerate(days):
        x = LEFT + BAR_GAP + n * (BAR_WIDTH + BAR_GAP)
        y = float(baseline)
        for index, one in enumerate(series):
            tokens = one.per_day[n]
            if tokens <= 0:
                continue
            h = tokens * scale
            y -= h
            title = gettext("%(series)s, %(day)s: %(tokens)s tokens") % {
                "series": one.label, "day": _day(day), "tokens": f"{tokens:,}",
            }
            rects.append(Rect(round(x, 2), round(y, 2), BAR_WIDTH, round(h, 2), _color(index, series), title))
    gridlines = [Label(LEFT - 6, round(baseline - f * PLOT_HEIGHT, 2), compact(int(top * f))) for f in (0, 0.5, 1)]
    step = max(1, math.ceil(len(days) / 8))  # at most about eight date labels
    day_labels = [
        Label(LEFT + BAR_GAP + n * (BAR_WIDTH + BAR_GAP) + BAR_WIDTH / 2, height - 6, _day(day))
        for n, day in enumerate(days)
        if n % step == 0
    ]
    legend = [LegendEntry(one.label, _color(index, series), one.total) for index, one in enumerate(series)]
    return StackedBars(width, height, rects, gridlines, day_labels, legend, LEFT, width)


def _day(day: date) -> str:
    """"3 Nov" in English; the format is the catalogue's, so each language writes its own short date."""
    return dateformat.format(day, pgettext("short day on a chart", "j M"))


def _color(index: int, series: list[Series]) -> str:
    if series[index].other and index == len(series) - 1:
        return PALETTE[-1]
    return PALETTE[index % (len(PALETTE) - 1)]
