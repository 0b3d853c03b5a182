"""What concluded experiments teach generation: the arms a project tested and how each converted, as the
outcome component of brand fit reads them (``generation.outcomes``, which registers nothing itself: this
app's ``ready`` registers ``concluded_arms`` as its source, so generation never imports experiments)."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

from experiments.models import Experiment, Status
from experiments.services import arm_counts
from generation.outcomes import TestedArm

#: A concluded experiment is final (no exposure or outcome counts after it), so its arms' counts are
#: computed once and kept: a day bounds the memory of experiments nobody scores against any more.
CONCLUDED_COUNTS_TTL_S = 24 * 3600


def concluded_arms(project: Any) -> list[TestedArm]:
    """Every arm of the project's concluded experiments, with its exposures and converted units.

    Scoped by the project's organization as well as the project itself: whatever a caller passes, no
    other organization's experiment is ever read.
    """
    experiments = (
        Experiment.objects.filter(
            organization_id=project.organization_id, project_id=project.pk, status=Status.CONCLUDED
        )
        .only("pk", "goal_event")
        .order_by("ended_at", "pk")
    )
    arms: list[TestedArm] = []
    for experiment in experiments:
        key = f"experiments:concluded-arms:{experiment.pk}"
        rows = cache.get(key)
        if rows is None:
            tested = list(experiment.arms.order_by("position"))
            rows = [(arm.text, n, c) for arm, (n, c) in zip(tested, arm_counts(experiment, tested), strict=True)]
            cache.set(key, rows, CONCLUDED_COUNTS_TTL_S)
        arms += [TestedArm(str(experiment.pk), text, n, c) for text, n, c in rows]
    return arms
