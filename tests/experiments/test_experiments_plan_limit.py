"""A plan caps the experiments an organization runs at once: one more start is a 402 that says why,
stopping one frees its place, and another organization's experiments never count."""

from __future__ import annotations

import pytest

from experiments.models import Experiment, Status
from tests.support.billing import make_plan, seed_plans, subscribe
from tests.support.experiment_factories import ExperimentFactory

pytestmark = pytest.mark.django_db


def test_a_start_beyond_the_plan_is_a_402_and_nothing_starts(cast, client_for):
    # given: a plan of two running experiments, both running
    subscribe(cast.org, make_plan("two_tests", max_running_experiments=2))
    client = client_for(cast.editor)
    first, second, third = (ExperimentFactory(project=cast.project) for _ in range(3))
    for experiment in (first, second):
        assert client.post(f"/api/v1/experiments/{experiment.pk}/start").status_code == 200

    # when
    response = client.post(f"/api/v1/experiments/{third.pk}/start")

    # then
    assert response.status_code == 402, response.content
    assert response.json()["code"] == "experiment_limit"
    assert "2 experiments at a time" in response.json()["detail"]
    assert Experiment.objects.get(pk=third.pk).status == Status.DRAFT


def test_stopping_one_frees_its_place(cast, client_for):
    subscribe(cast.org, make_plan("one_test", max_running_experiments=1))
    client = client_for(cast.editor)
    running, waiting = ExperimentFactory(project=cast.project), ExperimentFactory(project=cast.project)
    assert client.post(f"/api/v1/experiments/{running.pk}/start").status_code == 200
    assert client.post(f"/api/v1/experiments/{waiting.pk}/start").status_code == 402

    assert client.post(f"/api/v1/experiments/{running.pk}/stop").status_code == 200

    assert client.post(f"/api/v1/experiments/{waiting.pk}/start").status_code == 200
    # and the stopped one cannot resume while the other runs
    assert client.post(f"/api/v1/experiments/{running.pk}/start").status_code == 402


def test_an_outsiders_running_experiments_do_not_count(cast, client_for):
    subscribe(cast.org, make_plan("one_test", max_running_experiments=1))
    for _ in range(3):
        ExperimentFactory(project=cast.outsider_project, status=Status.RUNNING)
    mine = ExperimentFactory(project=cast.project)

    response = client_for(cast.editor).post(f"/api/v1/experiments/{mine.pk}/start")

    assert response.status_code == 200, response.content


def test_no_limit_on_the_plan_means_unlimited(cast, client_for):
    plans = seed_plans()
    assert (plans["free"].max_running_experiments, plans["enterprise"].max_running_experiments) == (1, None)
    subscribe(cast.org, plans["enterprise"])
    client = client_for(cast.editor)

    for experiment in [ExperimentFactory(project=cast.project) for _ in range(3)]:
        assert client.post(f"/api/v1/experiments/{experiment.pk}/start").status_code == 200
