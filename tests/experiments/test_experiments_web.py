"""The experiments pages: list and create, the results page with its chart, start/stop/conclude by role."""

from __future__ import annotations

import pytest
from django.test import Client

from experiments import services
from experiments.models import Assignment, Experiment, Status
from tests.support.experiment_factories import ExperimentFactory
from tests.support.generation_factories import VariantFactory

pytestmark = pytest.mark.django_db


def _signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_editor_creates_a_draft_from_approved_variants_and_a_control(cast):
    first = VariantFactory(job__project=cast.project, approved=True, text="Bloom brighter.")
    second = VariantFactory(job__project=cast.project, approved=True, text="Fresh bulbs, bright gardens.")
    VariantFactory(job__project=cast.project, approved=False, text="Not approved yet.")
    client = _signed_in(cast.editor)

    page = client.get("/experiments/")
    response = client.post("/experiments/", {
        "project": cast.project.pk, "name": "Spring", "variants": [first.pk, second.pk],
        "control_text": "Our old copy.", "goal_event": "click", "policy": "fixed", "min_share": "0.1",
        "stop_probability": "0.95", "min_exposures": "100", "attribution_window_hours": "72",
        "target_url": "https://shop.example.com/",
    })

    assert page.status_code == 200
    assert "Bloom brighter." in page.content.decode() and "Not approved yet." not in page.content.decode()
    experiment = Experiment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/experiments/{experiment.pk}/"
    arms = [(a.label, a.text, a.variant_id) for a in experiment.arms.order_by("position")]
    assert arms[0] == ("A", "Our old copy.", None)
    assert {(label, variant) for label, _, variant in arms[1:]} in (
        {("B", first.pk), ("C", second.pk)}, {("B", second.pk), ("C", first.pk)}
    )
    assert experiment.status == Status.DRAFT and experiment.created_by == cast.editor


def test_a_form_with_one_arm_is_shown_again_with_the_reason(cast):
    response = _signed_in(cast.editor).post("/experiments/", {
        "project": cast.project.pk, "name": "Lonely", "control_text": "Only me.", "goal_event": "click",
        "policy": "fixed", "min_share": "0.1", "stop_probability": "0.95", "min_exposures": "100",
        "attribution_window_hours": "72",
    })

    assert response.status_code == 400
    assert "2 to 10 arms" in response.content.decode()
    assert not Experiment.objects.exists()


def test_results_page_shows_the_table_the_chart_and_the_recommendation(cast):
    experiment = services.start_experiment(experiment=ExperimentFactory(project=cast.project, min_exposures=1000))
    a, b = experiment.arms.order_by("position")
    for arm, clicks in ((a, 2), (b, 9)):
        for n in range(60):
            assignment = Assignment.objects.create(experiment=experiment, arm=arm, unit=f"{arm.label}{n}")
            if n < clicks:
                services.record_tracked(assignment=assignment, kind="click")

    response = _signed_in(cast.viewer).get(f"/experiments/{experiment.pk}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html and "probability to be best" in html
    assert "Too early to call: B leads" in html
    assert "15.00%" in html  # B's rate, 9 of 60
    assert "Stop</button>" not in html  # a viewer gets no buttons


def test_editor_starts_stops_and_concludes_from_the_page(cast):
    experiment = ExperimentFactory(project=cast.project)
    client = _signed_in(cast.editor)

    started = client.post(f"/experiments/{experiment.pk}/start/")
    experiment.refresh_from_db()
    assert started.status_code == 302 and experiment.status == Status.RUNNING
    client.post(f"/experiments/{experiment.pk}/stop/")
    experiment.refresh_from_db()
    assert experiment.status == Status.STOPPED
    client.post(f"/experiments/{experiment.pk}/conclude/")
    experiment.refresh_from_db()
    assert experiment.status == Status.CONCLUDED and experiment.winner is not None
    refused = client.post(f"/experiments/{experiment.pk}/start/")
    assert refused.status_code == 409


def test_viewer_cannot_start_and_outsider_gets_404(cast):
    experiment = ExperimentFactory(project=cast.project)

    viewer = _signed_in(cast.viewer).post(f"/experiments/{experiment.pk}/start/")
    outsider = _signed_in(cast.outsider).get(f"/experiments/{experiment.pk}/")
    outsider_list = _signed_in(cast.outsider).get("/experiments/")

    assert viewer.status_code == 403 and outsider.status_code == 404
    assert experiment.name not in outsider_list.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == Status.DRAFT
