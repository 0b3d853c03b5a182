"""The statistics against values computed by hand (and by scipy directly), without a database."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from experiments import stats


def test_the_posterior_is_beta_of_conversions_and_misses_under_a_uniform_prior():
    assert stats.posterior(100, 3) == (4.0, 98.0)
    assert stats.posterior(0, 0) == (1.0, 1.0)


def test_rate_and_credible_interval_match_the_beta_quantiles():
    # given: 20 conversions of 1,000 -> Beta(21, 981)
    (arm, _) = stats.analyse([(1000, 20), (1000, 20)])
    # then
    assert arm.rate == pytest.approx(0.02)
    assert arm.ci_low == pytest.approx(scipy_stats.beta.ppf(0.025, 21, 981))
    assert arm.ci_high == pytest.approx(scipy_stats.beta.ppf(0.975, 21, 981))
    # Around the normal approximation 2.1% +- 1.96 x 0.45%, skewed up as a Beta of a small rate is: 1.30% to 3.07%.
    assert 0.0129 < arm.ci_low < 0.0131 and 0.0306 < arm.ci_high < 0.0308


def test_a_clear_winner_is_best_with_high_probability_and_no_expected_loss():
    a, b = stats.analyse([(1000, 20), (1000, 40)])

    assert b.prob_best > 0.99
    assert a.prob_best + b.prob_best == pytest.approx(1.0)
    assert b.expected_loss < 0.0002 < a.expected_loss
    # A gives up about the difference in rates: 4% - 2%.
    assert a.expected_loss == pytest.approx(0.02, abs=0.002)


def test_identical_arms_split_the_probability_and_results_are_reproducible():
    first = stats.analyse([(500, 10), (500, 10), (500, 10)])
    again = stats.analyse([(500, 10), (500, 10), (500, 10)])

    assert first == again  # seeded draws
    for arm in first:
        assert arm.prob_best == pytest.approx(1 / 3, abs=0.02)


def test_thompson_weights_keep_every_arm_above_its_floor():
    weights = stats.thompson_weights([(5000, 50), (5000, 150), (5000, 40)], min_share=0.1)

    assert sum(weights) == pytest.approx(1.0)
    assert min(weights) >= 0.1 - 1e-9
    assert weights[1] == pytest.approx(0.8, abs=0.01)  # the clear best takes all the rest


def test_thompson_weights_without_data_are_even():
    weights = stats.thompson_weights([(0, 0), (0, 0)], min_share=0.05)

    assert weights == pytest.approx([0.5, 0.5], abs=0.02)


def test_an_arm_past_floor_until_loses_its_floor_and_one_short_of_it_keeps_it():
    # A has its 1,000 exposures and is a clear loser; C is one short of them.
    weights = stats.thompson_weights([(1000, 5), (1000, 60), (999, 10)], min_share=0.1, floor_until=1000)

    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] < 0.01  # no floor: its probability to be best is ~0
    assert weights[2] == pytest.approx(0.1, abs=0.005)  # the floor, and nothing more
    assert weights[1] == pytest.approx(0.9, abs=0.01)


@pytest.mark.django_db
def test_review_releases_the_floor_of_arms_with_the_experiments_minimum_exposures(cast):
    from experiments import services
    from experiments.models import Assignment
    from tests.support.experiment_factories import ExperimentFactory

    # given: an adaptive experiment whose arms all have its 150 minimum exposures; B converts better
    # (15 against 8 of 150 each: ~90% to be best, short of the 99.9% that would conclude it)
    experiment = services.start_experiment(experiment=ExperimentFactory(
        project=cast.project, arms=3, policy="adaptive", min_share=0.1, min_exposures=150, stop_probability=0.999,
    ))
    for arm in experiment.arms.all():
        every = 10 if arm.label == "B" else 19
        for n in range(150):
            assignment = Assignment.objects.create(experiment=experiment, arm=arm, unit=f"{arm.label}-{n}")
            if n % every == 0:
                services.record_tracked(assignment=assignment, kind="click")

    # when
    services.review_experiment(experiment)

    # then: the losers are below the floor they no longer need
    weights = {arm.label: arm.weight for arm in experiment.arms.all()}
    assert weights["A"] < 0.1 and weights["C"] < 0.1 and weights["B"] > 0.8, weights
