"""Tracked events are metered: assign goes through the API's rate limits, and a flood of tracking-link clicks
or pixel loads from one address is refused with 429 and records nothing."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from experiments import services, serving, tracking
from experiments.models import Assignment, Outcome
from tests.support.billing import make_plan, subscribe
from tests.support.experiment_factories import ExperimentFactory

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def _assignments(cast, count):
    experiment = services.start_experiment(experiment=ExperimentFactory(project=cast.project))
    served = [serving.assign(experiment, f"unit-{n}") for n in range(count)]
    return experiment, [Assignment.objects.get(pk=s.assignment_id) for s in served]


def _get(path, address="203.0.113.7"):
    return Client().get(path, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR=address)


@override_settings(TRACKING_RATE_LIMIT_PER_MINUTE=3)
def test_a_flood_of_clicks_from_one_address_is_refused_and_records_nothing(cast):
    # given: five people's links, clicked from one address limited to three a minute
    experiment, assignments = _assignments(cast, 5)
    tokens = [tracking.sign(a.pk, tracking.CLICK, experiment.target_url) for a in assignments]

    # when
    responses = [_get(f"/t/{token}") for token in tokens]

    # then: three redirects counted, two refusals not
    assert [r.status_code for r in responses] == [302, 302, 302, 429, 429]
    assert 1 <= int(responses[-1]["Retry-After"]) <= 60
    assert responses[-1]["Cache-Control"] == "no-store"
    assert set(Outcome.objects.filter(experiment=experiment).values_list("assignment_id", flat=True)) == {
        a.pk for a in assignments[:3]
    }
    # another address is not affected
    assert _get(f"/t/{tokens[4]}", address="198.51.100.9").status_code == 302
    assert Outcome.objects.filter(experiment=experiment).count() == 4


@override_settings(TRACKING_RATE_LIMIT_PER_MINUTE=2)
def test_pixels_share_the_tracking_limit_and_refused_opens_are_not_recorded(cast):
    experiment, assignments = _assignments(cast, 3)
    tokens = [tracking.sign(a.pk, tracking.OPEN) for a in assignments]

    statuses = [_get(f"/t/{token}.gif").status_code for token in tokens]

    assert statuses == [200, 200, 429]
    assert Outcome.objects.filter(experiment=experiment, event="open").count() == 2


@override_settings(TRACKING_RATE_LIMIT_PER_MINUTE=1, API_RATE_LIMIT_ANONYMOUS_PER_MINUTE=1)
def test_tracking_and_api_counters_are_apart(cast):
    experiment, [assignment] = _assignments(cast, 1)

    assert _get("/api/v1/projects/").status_code == 401  # the address's one API call
    assert _get(f"/t/{tracking.sign(assignment.pk, tracking.CLICK, experiment.target_url)}").status_code == 302


def test_assign_is_refused_past_the_keys_plan_limit_without_an_exposure(cast, key_for):
    subscribe(cast.org, make_plan("limited", api_rate_limit_per_minute=2, org_rate_limit_per_minute=100))
    experiment = services.start_experiment(experiment=ExperimentFactory(project=cast.project))
    client, _, _ = key_for("read")

    responses = [
        client.get(f"/api/v1/experiments/{experiment.pk}/assign", {"unit": f"u{n}"}) for n in range(3)
    ]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["code"] == "rate_limited"
    assert set(Assignment.objects.filter(experiment=experiment).values_list("unit", flat=True)) == {"u0", "u1"}


@override_settings(TRACKING_RATE_LIMIT_PER_MINUTE=1)
def test_clicks_go_through_when_redis_is_down(cast):
    experiment, assignments = _assignments(cast, 2)

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        statuses = [_get(f"/t/{tracking.sign(a.pk, tracking.CLICK, experiment.target_url)}").status_code
                    for a in assignments]

    assert statuses == [302, 302]
    assert Outcome.objects.filter(experiment=experiment).count() == 2
