"""A concluded experiment's winning variant becomes an approved example with its measured lift, which the
few-shot examples and the fine-tune export then carry; a control text that wins changes no variant."""

from __future__ import annotations

import pytest

from experiments import services
from experiments.models import Assignment
from generation.exports import finetune_examples
from generation.prompts import approved_examples
from tests.support.experiment_factories import ArmFactory, ExperimentFactory
from tests.support.generation_factories import VariantFactory

pytestmark = pytest.mark.django_db


def _experiment(cast, *arms):
    """A running experiment of ``arms`` (each a variant, or None for a control text), in order A, B, ..."""
    experiment = ExperimentFactory(project=cast.project, arms=0)
    for position, variant in enumerate(arms):
        ArmFactory(
            experiment=experiment, position=position, label="ABC"[position], variant=variant,
            text=variant.final_text if variant else "Our current copy.", weight=1 / len(arms),
        )
    return services.start_experiment(experiment=experiment)


def _traffic(experiment, converted_per_100):
    """100 units per arm; of each arm's units, the first ``converted_per_100[i]`` click."""
    for arm, converted in zip(experiment.arms.order_by("position"), converted_per_100, strict=True):
        for n in range(100):
            assignment = Assignment.objects.create(experiment=experiment, arm=arm, unit=f"{arm.label}-{n}")
            if n < converted:
                services.record_tracked(assignment=assignment, kind="click")


def test_a_winning_variant_keeps_its_lift_over_the_control(cast):
    # given: B (a variant) converts 20%, the control A 5%
    variant = VariantFactory(job__project=cast.project, approved=True, text="Bloom brighter.")
    approved_at = variant.approved_at
    experiment = _experiment(cast, None, variant)
    _traffic(experiment, [5, 20])

    # when
    services.conclude_experiment(experiment=experiment)

    # then
    variant.refresh_from_db()
    assert variant.outcome == {
        "experiment": str(experiment.pk), "lift": pytest.approx(3.0), "conversions": 20, "exposures": 100,
        "baseline": "A",
    }
    assert variant.approved and variant.approved_at == approved_at  # the marketer's approval is kept


def test_the_variant_card_shows_the_lift_and_an_outsider_sees_no_card(cast, client_for):
    variant = VariantFactory(job__project=cast.project, approved=True, text="Bloom brighter.")
    experiment = _experiment(cast, None, variant)
    _traffic(experiment, [5, 20])
    services.conclude_experiment(experiment=experiment)

    page = client_for(cast.viewer).get(f"/jobs/{variant.job_id}/")
    outsider = client_for(cast.outsider).get(f"/jobs/{variant.job_id}/")

    assert page.status_code == 200
    assert "<dt>Lift in test</dt><dd>+300%</dd>" in page.content.decode()
    assert outsider.status_code == 404


def test_a_winner_unapproved_meanwhile_is_approved_again_and_becomes_a_few_shot_example(cast):
    variant = VariantFactory(job__project=cast.project, approved=True, text="Bloom brighter.")
    experiment = _experiment(cast, None, variant)
    variant.approved, variant.approved_at = False, None
    variant.save(update_fields=["approved", "approved_at"])
    _traffic(experiment, [2, 10])

    services.conclude_experiment(experiment=experiment)

    variant.refresh_from_db()
    assert variant.approved and variant.approved_at is not None
    template = variant.job.template_version.template_id
    assert variant in approved_examples(cast.project.pk, template)
    [example] = [e for e in finetune_examples(cast.project) if e["messages"][-1]["content"] == "Bloom brighter."]
    assert example["outcome"]["lift"] == pytest.approx(4.0) and example["outcome"]["conversions"] == 10


def test_without_a_control_the_lift_is_over_the_runner_up(cast):
    first = VariantFactory(job__project=cast.project, approved=True, text="First.")
    second = VariantFactory(job__project=cast.project, approved=True, text="Second.")
    experiment = _experiment(cast, first, second)
    _traffic(experiment, [30, 10])

    services.conclude_experiment(experiment=experiment)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.outcome["lift"], first.outcome["baseline"]) == (pytest.approx(2.0), "B")
    assert second.outcome == {}


def test_a_baseline_that_converted_nobody_has_no_lift(cast):
    variant = VariantFactory(job__project=cast.project, approved=True)
    experiment = _experiment(cast, None, variant)
    _traffic(experiment, [0, 10])

    services.conclude_experiment(experiment=experiment)

    variant.refresh_from_db()
    assert variant.outcome["lift"] is None and variant.outcome["conversions"] == 10


def test_a_winning_control_changes_no_variant_and_outsiders_are_untouched(cast):
    variant = VariantFactory(job__project=cast.project, approved=True)
    outsider_variant = VariantFactory(job__project=cast.outsider_project, approved=False)
    experiment = _experiment(cast, None, variant)
    _traffic(experiment, [30, 5])

    concluded = services.conclude_experiment(experiment=experiment)

    assert concluded.winner.is_control
    variant.refresh_from_db()
    outsider_variant.refresh_from_db()
    assert variant.outcome == {} and outsider_variant.outcome == {} and not outsider_variant.approved
