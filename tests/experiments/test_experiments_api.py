"""The experiments API: create and edit drafts, the lifecycle, sticky assignment, outcomes and results;
bad input is a 4xx, roles are checked, and an outsider sees nothing."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from experiments import results, services, serving
from experiments.models import Arm, Assignment, Experiment, Outcome, Status
from experiments.tasks import review_running_experiments
from tests.support.experiment_factories import ExperimentFactory
from tests.support.generation_factories import VariantFactory
from workers.celery import app

pytestmark = pytest.mark.django_db


def _running(cast, **kwargs):
    experiment = ExperimentFactory(project=cast.project, **kwargs)
    return services.start_experiment(experiment=experiment)


def _assign(client, experiment, unit, **params):
    return client.get(f"/api/v1/experiments/{experiment.pk}/assign", {"unit": unit, **params})


# --- create and edit -------------------------------------------------------------------------------


def test_editor_creates_an_experiment_of_approved_variants_and_a_control(cast, client_for):
    approved = VariantFactory(job__project=cast.project, approved=True, text="Spring is here.")
    body = {
        "project": str(cast.project.pk),
        "name": "Spring subject line",
        "goal_event": "purchase",
        "policy": "adaptive",
        "min_share": 0.2,
        "arms": [{"text": "Our current copy."}, {"variant": str(approved.pk), "label": "Spring"}],
    }

    response = client_for(cast.editor).post("/api/v1/experiments/", body, format="json")

    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["status"], data["policy"], data["goal_event"]) == ("draft", "adaptive", "purchase")
    assert [(a["label"], a["text"], a["is_control"]) for a in data["arms"]] == [
        ("A", "Our current copy.", True), ("Spring", "Spring is here.", False),
    ]
    assert Arm.objects.get(label="Spring").variant == approved


@pytest.mark.parametrize(
    ("arms", "field"),
    [
        ([{"text": "Only one arm"}], "arms"),
        ([{"text": "A"}, {"text": ""}], "arms[1].text"),
        ([{"text": "A", "label": "X"}, {"text": "B", "label": "X"}], "arms[1].label"),
    ],
)
def test_bad_arms_are_a_400_naming_the_field(cast, client_for, arms, field):
    body = {"project": str(cast.project.pk), "name": "Bad", "arms": arms}

    response = client_for(cast.editor).post("/api/v1/experiments/", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["code"] in ("invalid", "invalid_arms")  # the serializer's or the service's check
    assert any(name.startswith(field.split("[")[0]) for name in response.json()["fields"])
    assert not Experiment.objects.exists()


def test_an_unapproved_or_foreign_variant_cannot_be_an_arm(cast, client_for):
    draft_variant = VariantFactory(job__project=cast.project, approved=False)
    foreign = VariantFactory(job__project=cast.outsider_project, approved=True)
    client = client_for(cast.editor)

    for variant in (draft_variant, foreign):
        body = {"project": str(cast.project.pk), "name": "X", "arms": [{"text": "A"}, {"variant": str(variant.pk)}]}
        response = client.post("/api/v1/experiments/", body, format="json")
        assert response.status_code == 400, response.content
        assert "arms[1].variant" in response.json()["fields"]
    assert not Experiment.objects.exists()


def test_adaptive_floor_above_an_even_share_is_refused(cast, client_for):
    body = {
        "project": str(cast.project.pk), "name": "X", "policy": "adaptive", "min_share": 0.4,
        "arms": [{"text": "A"}, {"text": "B"}, {"text": "C"}],
    }

    response = client_for(cast.editor).post("/api/v1/experiments/", body, format="json")

    assert response.status_code == 400
    assert "min_share" in response.json()["fields"]


def test_a_running_experiment_keeps_its_arms_and_goal(cast, client_for):
    experiment = _running(cast)
    client = client_for(cast.editor)

    refused = client.patch(f"/api/v1/experiments/{experiment.pk}/", {"goal_event": "purchase"}, format="json")
    renamed = client.patch(f"/api/v1/experiments/{experiment.pk}/", {"name": "Renamed"}, format="json")

    assert refused.status_code == 409
    assert refused.json()["code"] == "experiment_not_draft"
    assert renamed.status_code == 200
    experiment.refresh_from_db()
    assert (experiment.name, experiment.goal_event) == ("Renamed", "click")


def test_lifecycle_start_stop_conclude_and_refusals(cast, client_for):
    experiment = ExperimentFactory(project=cast.project)
    client = client_for(cast.editor)
    url = f"/api/v1/experiments/{experiment.pk}"

    assert client.post(f"{url}/conclude").status_code == 409  # a draft has nothing to conclude
    assert client.post(f"{url}/start").json()["status"] == "running"
    assert client.delete(f"{url}/").status_code == 409  # running
    assert client.post(f"{url}/stop").json()["status"] == "stopped"
    concluded = client.post(f"{url}/conclude").json()
    assert concluded["status"] == "concluded" and concluded["winner"] in ("A", "B")
    assert client.post(f"{url}/start").status_code == 409  # concluded is final
    assert client.delete(f"{url}/").status_code == 204
    assert not Experiment.objects.filter(pk=experiment.pk).exists()


# --- assignment ------------------------------------------------------------------------------------


def test_assignment_is_sticky_and_recorded_once(cast, key_for):
    experiment = _running(cast)
    client, _, _ = key_for("read")  # what a website embeds: a read key is enough to serve

    first = _assign(client, experiment, "visitor-1")
    again = [_assign(client, experiment, "visitor-1").json() for _ in range(5)]

    assert first.status_code == 200, first.content
    body = first.json()
    assert body["new"] is True
    assert {(b["arm"], b["assignment"], b["text"], b["new"]) for b in again} == {
        (body["arm"], body["assignment"], body["text"], False)
    }
    assert Assignment.objects.filter(experiment=experiment).count() == 1
    assert body["click_url"].startswith("http://testserver/t/") and body["pixel_url"].endswith(".gif")


def test_a_fixed_split_is_about_even_over_many_units(cast):
    experiment = _running(cast, arms=3)

    served = Counter(services_assign(experiment, f"unit-{n}") for n in range(3000))

    # Deterministic (a hash of experiment and unit); 1,000 expected per arm, sd ~26: +-150 is loose.
    assert set(served) == {"A", "B", "C"}
    assert all(850 <= count <= 1150 for count in served.values()), served


def services_assign(experiment, unit):
    return serving.assign(experiment, unit).arm.label


def test_adaptive_traffic_favours_the_winner_but_keeps_the_floor(cast):
    # given: an adaptive experiment where B converts 5x as often as A and C
    experiment = _running(cast, arms=3, policy="adaptive", min_share=0.1, min_exposures=10**6)
    for arm in experiment.arms.all():
        every = 6 if arm.label == "B" else 30
        for n in range(300):
            assignment = Assignment.objects.create(experiment=experiment, arm=arm, unit=f"seed-{arm.label}-{n}")
            if n % every == 0:
                services.record_tracked(assignment=assignment, kind="click")
    # when: beat's review recomputes the weights
    services.review_experiment(experiment)
    experiment.refresh_from_db()
    served = Counter(services_assign(experiment, f"new-{n}") for n in range(2000))
    # then
    weights = {arm.label: arm.weight for arm in experiment.arms.all()}
    assert min(weights.values()) >= 0.1 - 1e-9
    assert weights["B"] > 0.75
    assert served["B"] > 1400 and served["A"] > 120 and served["C"] > 120, served


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_calls_for_one_unit_make_exactly_one_exposure(cast):
    experiment = _running(cast, arms=4)
    results, errors = [], []
    barrier = threading.Barrier(8)

    def call():
        try:
            barrier.wait()
            results.append(services_assign(experiment, "the-same-visitor"))
        except Exception as exc:  # pragma: no cover (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(set(results)) == 1 and len(results) == 8
    assert Assignment.objects.filter(experiment=experiment, unit="the-same-visitor").count() == 1


def test_assign_refuses_bad_input_and_experiments_that_do_not_run(cast, key_for):
    client, _, _ = key_for("read")
    draft = ExperimentFactory(project=cast.project)
    running = _running(cast)

    no_unit = client.get(f"/api/v1/experiments/{running.pk}/assign")
    too_long = _assign(client, running, "x" * 201)
    nul = _assign(client, running, "a\x00b")
    foreign_target = _assign(client, running, "v", target="https://evil.test/")
    not_running = _assign(client, draft, "v")

    assert [r.status_code for r in (no_unit, too_long, nul, foreign_target)] == [400, 400, 400, 400]
    assert foreign_target.json()["code"] == "target_not_allowed"
    assert not_running.status_code == 409 and not_running.json()["code"] == "experiment_not_running"
    assert not Assignment.objects.filter(experiment=draft).exists()
    assert not Assignment.objects.filter(experiment=running).exists()


def test_a_concluded_experiment_serves_its_winner_and_records_nothing(cast, key_for):
    experiment = _running(cast)
    services.conclude_experiment(experiment=experiment)
    experiment.refresh_from_db()
    client, _, _ = key_for("read")

    body = _assign(client, experiment, "late-visitor").json()

    assert body["arm"] == experiment.winner.label and body["assignment"] is None
    assert not Assignment.objects.filter(experiment=experiment).exists()


# --- outcomes and results ------------------------------------------------------------------------


def test_custom_outcomes_count_once_and_only_for_assigned_units(cast, key_for):
    experiment = _running(cast, goal_event="signup")
    client, _, _ = key_for("write")
    unit_arm = _assign(client, experiment, "ada").json()["arm"]
    url = f"/api/v1/experiments/{experiment.pk}/outcomes"

    first = client.post(url, {"unit": "ada", "event": "signup", "event_id": "s-1"}, format="json")
    retry = client.post(url, {"unit": "ada", "event": "signup", "event_id": "s-1"}, format="json")
    other_goal = client.post(url, {"unit": "ada", "event": "purchase", "event_id": "p-1"}, format="json")
    never_assigned = client.post(url, {"unit": "bob", "event": "signup", "event_id": "s-2"}, format="json")

    assert (first.json(), retry.json(), other_goal.json()) == ({"recorded": True}, {"recorded": False},
                                                                {"recorded": False})
    assert never_assigned.status_code == 404
    results = client.get(f"/api/v1/experiments/{experiment.pk}/results").json()
    by_label = {arm["label"]: arm for arm in results["arms"]}
    assert by_label[unit_arm]["conversions"] == 1 and results["conversions"] == 1


def test_results_recommend_the_clear_winner_and_stop_automatically(cast, client_for):
    # given: B converts at 10%, A at 2%, 500 exposures each, a 95% threshold and 100 exposures minimum
    experiment = _running(cast, stop_probability=0.95, min_exposures=100)
    a, b = experiment.arms.order_by("position")
    for arm, every in ((a, 50), (b, 10)):
        for n in range(500):
            assignment = Assignment.objects.create(experiment=experiment, arm=arm, unit=f"{arm.label}-{n}")
            if n % every == 0:
                services.record_tracked(assignment=assignment, kind="click")
    # when
    response = client_for(cast.viewer).get(f"/api/v1/experiments/{experiment.pk}/results")
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    arms = {arm["label"]: arm for arm in body["arms"]}
    assert (arms["A"]["exposures"], arms["A"]["conversions"], arms["B"]["conversions"]) == (500, 10, 50)
    assert arms["B"]["prob_best"] > 0.99 and arms["A"]["rate"] == pytest.approx(0.02)
    assert arms["B"]["lift"] == pytest.approx(4.0)
    assert body["status"] == "concluded" and body["winner"] == "B"
    assert "Stopped automatically: B reached" in body["recommendation"]
    experiment.refresh_from_db()
    assert experiment.status == Status.CONCLUDED and experiment.winner == b


def test_the_maximum_sample_stops_an_undecided_experiment(cast):
    experiment = _running(cast, max_exposures=10, min_exposures=1000)
    for n in range(10):
        services_assign(experiment, f"u{n}")

    assert services.review_running() == 1

    experiment.refresh_from_db()
    assert experiment.status == Status.CONCLUDED
    assert "maximum of 10 exposures" in experiment.concluded_reason


def test_recommendation_says_how_many_exposures_stopping_saves(cast):
    experiment = _running(cast, stop_probability=0.99, min_exposures=100, max_exposures=5000)
    a, b = experiment.arms.order_by("position")
    for arm, every in ((a, 40), (b, 12)):
        for n in range(400):
            assignment = Assignment.objects.create(experiment=experiment, arm=arm, unit=f"{arm.label}-{n}")
            if n % every == 0:
                services.record_tracked(assignment=assignment, kind="click")

    text = results.summary(experiment).recommendation

    assert text.startswith("B beats A with ") and text.endswith("stopping now saves 4,200 exposures.")


# --- who may do what -----------------------------------------------------------------------------


def test_viewer_and_read_key_cannot_create_start_or_record(cast, client_for, key_for):
    experiment = _running(cast)
    read_key, _, _ = key_for("read")
    body = {"project": str(cast.project.pk), "name": "X", "arms": [{"text": "A"}, {"text": "B"}]}

    for client in (client_for(cast.viewer), read_key):
        assert client.post("/api/v1/experiments/", body, format="json").status_code == 403
        assert client.post(f"/api/v1/experiments/{experiment.pk}/stop").status_code == 403
        outcome = {"unit": "x", "event": "click", "event_id": "1"}
        assert client.post(f"/api/v1/experiments/{experiment.pk}/outcomes", outcome, format="json").status_code == 403
    experiment.refresh_from_db()
    assert experiment.status == Status.RUNNING and Experiment.objects.count() == 1


def test_outsider_sees_nothing(cast, client_for, outsider_key):
    experiment = _running(cast)
    Assignment.objects.create(experiment=experiment, arm=experiment.arms.first(), unit="acme-unit")

    for client in (client_for(cast.outsider), outsider_key):
        assert client.get("/api/v1/experiments/").json()["results"] == []
        assert client.get(f"/api/v1/experiments/{experiment.pk}/").status_code == 404
        assert _assign(client, experiment, "mallory").status_code == 404
        assert client.get(f"/api/v1/experiments/{experiment.pk}/results").status_code == 404
        assert client.post(f"/api/v1/experiments/{experiment.pk}/stop").status_code == 404
    assert Assignment.objects.filter(experiment=experiment).count() == 1
    assert not Outcome.objects.exists()
    experiment.refresh_from_db()
    assert experiment.status == Status.RUNNING


def test_project_key_of_another_project_sees_nothing(cast, key_for):
    experiment = _running(cast)
    client, _, _ = key_for("write", project=cast.sibling_project)

    assert client.get(f"/api/v1/experiments/{experiment.pk}/").status_code == 404
    assert _assign(client, experiment, "v").status_code == 404


def test_beat_reviews_running_experiments_through_the_registered_task(cast):
    experiment = _running(cast, max_exposures=1)
    services_assign(experiment, "only-one")
    entry = app.conf.beat_schedule["review-running-experiments"]

    assert entry["task"] == review_running_experiments.name == "experiments.review_running"
    assert review_running_experiments.apply().get() == 1  # as a worker runs it
    experiment.refresh_from_db()
    assert experiment.status == Status.CONCLUDED
