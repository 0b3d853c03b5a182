"""The results chart: each arm's conversion rate with its 95% credible interval, as server-rendered SVG.

Drawn the way the billing usage chart is (``billing.charts``: geometry here, a template draws it, no
JavaScript), with its palette and round axis maximum. Overlapping intervals are what "no clear winner
yet" looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.translation import gettext

from billing.charts import PALETTE, Label, nice_ceiling
from experiments.results import ArmResult

ROW_HEIGHT = 34
LEFT = 70  # room for the arm labels
RIGHT = 16
TOP = 8
BOTTOM = 24  # room for the axis labels
PLOT_WIDTH = 520


@dataclass(frozen=True)
class IntervalRow:
    label: str
    y: float
    low_x: float
    high_x: float
    rate_x: float
    color: str
    title: str  # the tooltip: "B: 3.1% (2.6%-3.7%), 1,204 exposures"


@dataclass(frozen=True)
class IntervalChart:
    width: int
    height: int
    rows: list[IntervalRow]
    ticks: list[Label]
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int

    @property
    def empty(self) -> bool:
        return not any(row.high_x > self.plot_left for row in self.rows)


def _axis_top(highest: float) -> float:
    """A round maximum rate for the axis: in basis points, the billing chart's 1-2-5 steps."""
    return nice_ceiling(max(1, math.ceil(highest * 10_000))) / 10_000


def interval_chart(rows: list[ArmResult]) -> IntervalChart:
    top = _axis_top(max((r.stats.ci_high for r in rows if r.stats.exposures), default=0.0))
    width = LEFT + PLOT_WIDTH + RIGHT
    height = TOP + len(rows) * ROW_HEIGHT + BOTTOM
    scale = PLOT_WIDTH / top

    def x(rate: float) -> float:
        return round(LEFT + min(rate, top) * scale, 2)

    drawn = []
    for index, row in enumerate(rows):
        if not row.stats.exposures:
            low = high = rate = 0.0
        else:
            low, high, rate = row.stats.ci_low, row.stats.ci_high, row.stats.rate
        title = gettext(
            "%(label)s: %(rate)s (%(low)s to %(high)s), %(exposures)s exposures, %(best)s probability to be best"
        ) % {
            "label": row.arm.label, "rate": f"{rate:.2%}", "low": f"{low:.2%}", "high": f"{high:.2%}",
            "exposures": f"{row.stats.exposures:,}", "best": f"{row.stats.prob_best:.0%}",
        }
        drawn.append(IntervalRow(
            row.arm.label, TOP + index * ROW_HEIGHT + ROW_HEIGHT / 2, x(low), x(high), x(rate),
            PALETTE[index % (len(PALETTE) - 1)], title,
        ))
    ticks = [Label(x(top * f), height - 6, f"{top * f:.1%}" if top < 0.1 else f"{top * f:.0%}") for f in (0, 0.5, 1)]
    return IntervalChart(width, height, drawn, ticks, LEFT, LEFT + PLOT_WIDTH, TOP, TOP + len(rows) * ROW_HEIGHT)
