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
