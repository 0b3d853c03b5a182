"""An experiment's results, read-only: per arm exposures, conversions, rate with its 95% credible interval,
probability to be best, expected loss, lift over the first arm, and a recommendation in plain words.

``services.review_experiment`` (reweighting, the automatic stop) runs before this where results are shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext

from experiments import stats
from experiments.models import Arm, Experiment, Status
from experiments.services import arm_counts


@dataclass(frozen=True)
class ArmResult:
    arm: Arm
    stats: stats.ArmStats
    weight: float
    lift: float | None  # relative to the first arm's rate; None while that rate is zero

    @property
    def is_winner(self) -> bool:
        return self.arm.experiment.winner_id == self.arm.pk


@dataclass(frozen=True)
class Results:
    experiment: Experiment
    arms: list[ArmResult]
    recommendation: str
    leader: str | None
    exposures: int
    conversions: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.pk,
            "status": self.experiment.status,
            "goal_event": self.experiment.goal_event,
            "exposures": self.exposures,
            "conversions": self.conversions,
            "leader": self.leader,
            "winner": self.experiment.winner.label if self.experiment.winner_id else None,
            "concluded_reason": self.experiment.concluded_reason,
            "recommendation": self.recommendation,
            "arms": [
                {
                    "id": r.arm.pk,
                    "label": r.arm.label,
                    "exposures": r.stats.exposures,
                    "conversions": r.stats.conversions,
                    "rate": r.stats.rate,
                    "ci_low": r.stats.ci_low,
                    "ci_high": r.stats.ci_high,
                    "prob_best": r.stats.prob_best,
                    "expected_loss": r.stats.expected_loss,
                    "lift": r.lift,
                    "weight": r.weight,
                }
                for r in self.arms
            ],
        }


def summary(experiment: Experiment) -> Results:
    arms = list(experiment.arms.order_by("position"))
    counts = arm_counts(experiment, arms)
    analysed = stats.analyse(counts)
    even = 1.0 / len(arms) if arms else 0.0
    base = analysed[0].rate if analysed else 0.0
    rows = [
        ArmResult(
            arm=arm,
            stats=one,
            weight=arm.weight if experiment.policy == "adaptive" and arm.weight > 0 else even,
            lift=((one.rate - base) / base) if base > 0 else None,
        )
        for arm, one in zip(arms, analysed, strict=True)
    ]
    leader = max(rows, key=lambda r: r.stats.prob_best) if rows else None
    return Results(
        experiment=experiment,
        arms=rows,
        recommendation=recommend(experiment, rows),
        leader=leader.arm.label if leader and leader.stats.exposures else None,
        exposures=sum(r.stats.exposures for r in rows),
        conversions=sum(r.stats.conversions for r in rows),
    )


def _others(rows: list[ArmResult], leader: ArmResult) -> str:
    names = [r.arm.label for r in rows if r is not leader]
    if len(names) == 1:
        return names[0]
    return gettext("%(names)s and %(last)s") % {"names": gettext(", ").join(names[:-1]), "last": names[-1]}


def recommend(experiment: Experiment, rows: list[ArmResult]) -> str:
    """What to do now, in one or two sentences a marketer can act on."""
    if not rows:
        return gettext("Add arms to this experiment.")
    total = sum(r.stats.exposures for r in rows)
    leader = max(rows, key=lambda r: r.stats.prob_best)
    p = leader.stats.prob_best
    if experiment.status == Status.CONCLUDED:
        winner = next((r for r in rows if r.is_winner), leader)
        return (gettext("%(label)s won.") % {"label": winner.arm.label} + f" {experiment.concluded_reason}").strip()
    if total == 0:
        if experiment.status == Status.RUNNING:
            return gettext("No exposures yet.")
        return gettext("Start the experiment to collect data.")
    fewest = min(r.stats.exposures for r in rows)
    if fewest < experiment.min_exposures:
        return gettext(
            "Too early to call: %(label)s leads with a %(probability)s probability to be best, but every arm "
            "needs %(needed)s exposures first (the fewest has %(fewest)s)."
        ) % {"label": leader.arm.label, "probability": f"{p:.0%}", "needed": f"{experiment.min_exposures:,}",
             "fewest": f"{fewest:,}"}
    if p >= experiment.stop_probability:
        if experiment.max_exposures and experiment.max_exposures > total:
            saving = gettext("stopping now saves %(exposures)s exposures") % {
                "exposures": f"{experiment.max_exposures - total:,}"
            }
        else:
            saving = gettext("stop now and send everyone the better copy")
        return gettext("%(label)s beats %(others)s with %(probability)s probability; %(saving)s.") % {
            "label": leader.arm.label, "others": _others(rows, leader), "probability": f"{p:.0%}", "saving": saving,
        }
    return gettext(
        "No clear winner yet: %(label)s leads with a %(probability)s probability to be best "
        "(the experiment stops at %(stop)s). Keep it running."
    ) % {"label": leader.arm.label, "probability": f"{p:.0%}", "stop": f"{experiment.stop_probability:.0%}"}
