"""The outcome-calibrated component of brand fit: absent below the minimum of concluded experiments, learned
from what the project's tested copy measured once there are enough, and never from another project's."""

from __future__ import annotations

import pytest
from django.utils import timezone

from experiments.models import Arm, Assignment, Experiment, Outcome, Status
from generation import execution, outcomes, scoring
from generation.models import Variant
from tests.support.experiment_factories import ExperimentFactory
from tests.support.generation_factories import VariantFactory
from tests.support.web_generation import succeeded_job

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not scoring.available(), reason="needs the embedding model (torch)"),
]

#: Winners share a trait (free shipping), losers do not; three concluded experiments as the setting's default.
TESTED = [
    ("Free shipping on every tulip bulb order this week.", "Tulip bulbs for a brighter spring garden."),
    ("Order roses today, shipping is free to your door.", "Roses that bloom all summer long."),
    ("Seed packets with free delivery, no minimum order.", "Heirloom seed packets for careful gardeners."),
]
WITH_TRAIT = "Garden gloves with free shipping, delivered to your door."
WITHOUT_TRAIT = "Garden gloves made of soft, durable leather."


def _concluded(project, winner: str, loser: str, *, exposures: int = 400) -> Experiment:
    """A concluded experiment whose first arm converted 30/400 and second 10/400 (goal: click)."""
    experiment = ExperimentFactory(project=project, arms=0, status=Status.CONCLUDED, ended_at=timezone.now())
    for position, (text, converted) in enumerate(((winner, 30), (loser, 10))):
        arm = Arm.objects.create(experiment=experiment, label="AB"[position], text=text, position=position)
        assignments = Assignment.objects.bulk_create(
            Assignment(experiment=experiment, arm=arm, unit=f"{arm.pk}-{n}") for n in range(exposures)
        )
        Outcome.objects.bulk_create(
            Outcome(experiment=experiment, assignment=a, event="click", event_id=f"e-{a.pk}", occurred_at=a.created_at)
            for a in assignments[:converted]
        )
    return experiment


def _parts(project, *texts):
    return scoring.brand_fit_parts(list(texts), None, [], "garden supplies", project)


def test_no_outcome_component_below_the_minimum_of_concluded_experiments(cast, settings):
    settings.OUTCOME_CALIBRATION_MIN_EXPERIMENTS = 3
    for winner, loser in TESTED[:2]:
        _concluded(cast.project, winner, loser)
    ExperimentFactory(project=cast.project, status=Status.RUNNING)  # running ones do not count

    [(score, parts)] = _parts(cast.project, WITH_TRAIT)

    assert set(parts) == {"voice"} and score == parts["voice"]
    assert outcomes.model_for(cast.project, scoring.embed_outputs) is None


def test_with_enough_experiments_copy_sharing_the_winners_trait_scores_higher(cast, settings):
    settings.OUTCOME_CALIBRATION_MIN_EXPERIMENTS = 3
    settings.OUTCOME_CALIBRATION_WEIGHT = 0.25
    for winner, loser in TESTED:
        _concluded(cast.project, winner, loser)

    (with_score, with_parts), (without_score, without_parts) = _parts(cast.project, WITH_TRAIT, WITHOUT_TRAIT)

    assert with_parts["outcome_experiments"] == 3 and with_parts["outcome_arms"] == 6
    assert with_parts["outcome"] > 0.5 > without_parts["outcome"], (with_parts, without_parts)
    assert 0.0 <= without_parts["outcome"] and with_parts["outcome"] <= 1.0
    for score, parts in ((with_score, with_parts), (without_score, without_parts)):
        assert score == pytest.approx(0.75 * parts["voice"] + 0.25 * parts["outcome"], abs=1e-3)


def test_a_project_never_learns_from_another_organizations_or_projects_experiments(cast, settings):
    settings.OUTCOME_CALIBRATION_MIN_EXPERIMENTS = 3
    for winner, loser in TESTED:
        _concluded(cast.outsider_project, winner, loser)
        _concluded(cast.sibling_project, winner, loser)

    [(_, parts)] = _parts(cast.project, WITH_TRAIT)
    [(_, outsider_parts)] = _parts(cast.outsider_project, WITH_TRAIT)

    assert set(parts) == {"voice"}
    assert outsider_parts["outcome_experiments"] == 3
    # the outsider's arms are Globex's alone: none of Acme's sibling project's experiments came along
    assert {a.experiment_id for a in outcomes._source(cast.outsider_project)} == {
        str(pk) for pk in Experiment.objects.filter(project=cast.outsider_project).values_list("pk", flat=True)
    }


def test_a_concluding_experiment_brings_the_component_to_the_next_score(cast, settings):
    # given: two concluded experiments and a third running one, a variant scored later (no torch on its worker)
    settings.OUTCOME_CALIBRATION_MIN_EXPERIMENTS = 3
    for winner, loser in TESTED[:2]:
        _concluded(cast.project, winner, loser)
    before = _parts(cast.project, WITH_TRAIT)[0][1]
    third = _concluded(cast.project, *TESTED[2])
    variant = VariantFactory(job__project=cast.project, text=WITH_TRAIT, brand_fit=None)

    # when: it is scored as the default queue scores it
    execution.score_variants(variant.job_id)

    # then
    variant = Variant.objects.get(pk=variant.pk)
    assert set(before) == {"voice"} and third.status == Status.CONCLUDED
    assert variant.brand_fit_breakdown["outcome_experiments"] == 3
    assert variant.brand_fit == pytest.approx(
        0.75 * variant.brand_fit_breakdown["voice"] + 0.25 * variant.brand_fit_breakdown["outcome"], abs=1e-3
    )


def test_the_job_page_says_what_the_outcome_component_is_and_from_how_many_experiments(cast, client_for):
    job = succeeded_job(cast.project)
    Variant.objects.filter(job=job, index=0).update(
        brand_fit=0.66,
        brand_fit_breakdown={
            "voice": 0.64,
            "outcome": 0.71,
            "outcome_weight": 0.25,
            "outcome_experiments": 4,
            "outcome_arms": 9,
        },
    )

    body = client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode()

    assert "Outcome component" in body and "0.71 from 4 experiments" in body
    assert body.count("Outcome component") == 1  # the other variant has no outcome part
