"""Bulk assignment (``POST /api/v1/experiments/{id}/assignments``): a list of units answered as ``assign``
answers each, sticky across both paths and under concurrent calls; bad lists are a 400; tenancy holds."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from experiments import limits, services, serving
from experiments.models import Assignment
from tests.support.experiment_factories import ExperimentFactory

pytestmark = pytest.mark.django_db


def _running(cast, **kwargs):
    return services.start_experiment(experiment=ExperimentFactory(project=cast.project, **kwargs))


def _bulk(client, experiment, units, **extra):
    return client.post(f"/api/v1/experiments/{experiment.pk}/assignments", {"units": units, **extra}, format="json")


def test_bulk_assign_answers_each_unit_as_assign_does_and_records_each_once(cast, key_for):
    # given: one unit already assigned one at a time
    experiment = _running(cast, arms=3)
    client, _, _ = key_for("read")  # a sender holds a read key, as a website does for assign
    single = client.get(f"/api/v1/experiments/{experiment.pk}/assign", {"unit": "r-0"}).json()
    units = [f"r-{n}" for n in range(50)] + ["r-7"]  # a repeated recipient

    # when
    first = _bulk(client, experiment, units, target="https://shop.example.com/spring?utm=mail")
    again = _bulk(client, experiment, list(reversed(units)))

    # then
    assert first.status_code == 200, first.content
    body = first.json()
    rows = body["assignments"]
    assert [row["unit"] for row in rows] == units
    assert rows[0]["assignment"] == single["assignment"] and rows[0]["arm"] == single["arm"]
    assert rows[0]["new"] is False and all(row["new"] for row in rows[1:50])
    assert rows[50]["assignment"] == rows[7]["assignment"]
    texts = {arm["label"]: arm["text"] for arm in body["arms"]}
    assert {row["arm"] for row in rows} == set(texts)
    assert all(row["click_url"].startswith("http://testserver/t/") and row["pixel_url"] for row in rows)
    by_unit = {row["unit"]: (row["assignment"], row["arm"]) for row in again.json()["assignments"]}
    assert by_unit == {row["unit"]: (row["assignment"], row["arm"]) for row in rows}
    assert not any(row["new"] for row in again.json()["assignments"])
    stored = dict(Assignment.objects.filter(experiment=experiment).values_list("unit", "arm__label"))
    assert len(stored) == 50 and stored == {row["unit"]: row["arm"] for row in rows}
    # the arm is the one assign would pick for a new unit: the same function of the unit's hash
    arms = serving.allocation(experiment)
    assert all(serving.pick(arms, serving.unit_point(experiment.pk, u)).label == stored[u] for u in stored)


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_and_single_calls_for_the_same_units_make_one_exposure_each(cast):
    experiment = _running(cast, arms=4)
    units = [f"shared-{n}" for n in range(200)]
    answers, errors = [], []
    barrier = threading.Barrier(6)

    def call(n):
        try:
            barrier.wait()
            if n == 5:
                answers.append({u: serving.assign(experiment, u).assignment_id for u in units[::-1]})
            else:  # opposite orders: the sorted insert must not deadlock
                ordered = units if n % 2 else units[::-1]
                answers.append({u: s.assignment_id for u, s in serving.assign_many(experiment, ordered).items()})
        except Exception as exc:  # pragma: no cover (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert len(answers) == 6 and all(answer == answers[0] for answer in answers)
    assert Assignment.objects.filter(experiment=experiment).count() == 200


@pytest.mark.parametrize(
    ("units", "field"),
    [
        ([], "units"),
        (["u"] * (limits.MAX_BULK_UNITS + 1), "units"),
        (["ok", 12], "units"),
        (["ok", None], "units"),
        (["ok", "   "], "units"),
        (["a\x00b"], "units"),
        (["x" * (limits.MAX_UNIT_LENGTH + 1)], "units"),
        ("not-a-list", "units"),
    ],
)
def test_a_bad_list_is_a_400_naming_units_and_assigns_nobody(cast, key_for, units, field):
    experiment = _running(cast)
    client, _, _ = key_for("read")

    response = _bulk(client, experiment, units)

    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not Assignment.objects.filter(experiment=experiment).exists()


def test_missing_units_a_foreign_target_and_a_stopped_experiment_are_refused(cast, key_for):
    client, _, _ = key_for("read")
    running, draft = _running(cast), ExperimentFactory(project=cast.project)

    missing = client.post(f"/api/v1/experiments/{running.pk}/assignments", {}, format="json")
    foreign = _bulk(client, running, ["v"], target="https://evil.test/")
    not_running = _bulk(client, draft, ["v"])

    assert missing.status_code == 400 and foreign.status_code == 400
    assert foreign.json()["code"] == "target_not_allowed"
    assert not_running.status_code == 409 and not_running.json()["code"] == "experiment_not_running"
    assert not Assignment.objects.exists()


def test_a_concluded_experiment_answers_its_winner_for_every_unit(cast, key_for):
    experiment = services.conclude_experiment(experiment=_running(cast))
    client, _, _ = key_for("read")

    body = _bulk(client, experiment, ["late-1", "late-2"]).json()

    assert [row["arm"] for row in body["assignments"]] == [experiment.winner.label] * 2
    assert all(row["assignment"] is None for row in body["assignments"])
    assert not Assignment.objects.filter(experiment=experiment).exists()


def test_outsider_and_another_projects_key_get_404_and_assign_nobody(cast, outsider_key, client_for, key_for):
    experiment = _running(cast)
    sibling, _, _ = key_for("write", project=cast.sibling_project)

    for client in (outsider_key, client_for(cast.outsider), sibling):
        response = _bulk(client, experiment, ["mallory"])
        assert response.status_code == 404
        assert "mallory" not in response.content.decode()
    assert not Assignment.objects.filter(experiment=experiment).exists()


def test_the_schema_documents_bulk_assignment(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/experiments/{id}/assignments/"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    units = schema["components"]["schemas"][request]["properties"]["units"]
    assert units["maxItems"] == limits.MAX_BULK_UNITS and units["minItems"] == 1
    assert {"200", "400", "404", "409"} <= set(operation["responses"])


def test_links_false_answers_the_same_arms_without_tracking_links(cast, key_for):
    experiment = _running(cast)
    client, _, _ = key_for("read")

    plain = _bulk(client, experiment, ["u-1", "u-2"], links=False).json()["assignments"]
    linked = _bulk(client, experiment, ["u-1", "u-2"]).json()["assignments"]

    assert all(row["click_url"] is None and row["pixel_url"] is None for row in plain)
    assert all(row["pixel_url"] for row in linked)
    assert [(r["assignment"], r["arm"]) for r in plain] == [(r["assignment"], r["arm"]) for r in linked]
