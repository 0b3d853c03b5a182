"""The loss curve of a training run as server-rendered SVG geometry (a template draws it, no JavaScript),
in the billing usage chart's palette and round axis steps (``billing.charts``)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.charts import PALETTE, Label

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 24


@dataclass(frozen=True)
class LossChart:
    width: int
    height: int
    points: str  # the polyline's "x,y x,y ..."
    y_labels: list[Label]
    x_labels: list[Label]
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    color: str

    @property
    def empty(self) -> bool:
        return not self.points


def loss_chart(points: list[list[float]], total_steps: int | None = None) -> LossChart:
    """``points``: ``[[step, loss], ...]`` as ``TrainingRun.progress`` keeps them."""
    plot_right, plot_bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    if not points:
        return LossChart(WIDTH, HEIGHT, "", [], [], LEFT, plot_right, TOP, plot_bottom, PALETTE[0])
    steps = [float(p[0]) for p in points]
    losses = [float(p[1]) for p in points]
    last_step = max(float(total_steps or 0), max(steps), 1.0)
    high = max(losses)
    low = min(0.0, min(losses))
    span = (high - low) or 1.0

    def x(step: float) -> float:
        return LEFT + (plot_right - LEFT) * step / last_step

    def y(loss: float) -> float:
        return plot_bottom - (plot_bottom - TOP) * (loss - low) / span

    line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(steps, losses, strict=True))
    y_labels = [Label(LEFT - 6, y(value), f"{value:.2f}") for value in (low, low + span / 2, high)]
    x_labels = [Label(x(step), HEIGHT - 6, f"{int(step)}") for step in (0, last_step / 2, last_step)]
    return LossChart(WIDTH, HEIGHT, line, y_labels, x_labels, LEFT, plot_right, TOP, plot_bottom, PALETTE[0])
