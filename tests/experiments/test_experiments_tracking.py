"""Tracking links and pixels, and outcomes from ingested events: what counts, what is refused, what counts once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from experiments import services, serving, tracking
from experiments.models import Assignment, Outcome
from tests.support.experiment_factories import ExperimentFactory

pytestmark = pytest.mark.django_db

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)


def _exposed(cast, unit="ada", **kwargs):
    experiment = services.start_experiment(experiment=ExperimentFactory(project=cast.project, **kwargs))
    served = serving.assign(experiment, unit)
    return experiment, Assignment.objects.select_related("experiment").get(pk=served.assignment_id)


def _click(token, **headers):
    return Client().get(f"/t/{token}", HTTP_USER_AGENT=headers.pop("agent", BROWSER), **headers)


def _clicks(experiment):
    return Outcome.objects.filter(experiment=experiment, event="click").count()


# --- links -----------------------------------------------------------------------------------------


def test_a_tracking_link_records_the_click_once_and_redirects_to_the_signed_target(cast):
    experiment, assignment = _exposed(cast)
    token = tracking.sign(assignment.pk, tracking.CLICK, "https://shop.example.com/spring?utm=loom")

    first = _click(token)
    second = _click(token)

    assert first.status_code == 302 and first["Location"] == "https://shop.example.com/spring?utm=loom"
    assert second.status_code == 302
    assert first["Cache-Control"] == "no-store, private"
    assert _clicks(experiment) == 1  # the second click is a duplicate


def test_the_click_url_from_assign_works_end_to_end(cast, key_for):
    experiment, _ = _exposed(cast)
    client, _, _ = key_for("read")
    body = client.get(f"/api/v1/experiments/{experiment.pk}/assign", {"unit": "bob"}).json()

    response = Client().get(body["click_url"].removeprefix("http://testserver"), HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302 and response["Location"] == experiment.target_url
    assert Outcome.objects.get(experiment=experiment).assignment_id.hex == body["assignment"].replace("-", "")


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="tampered-signature"),
        pytest.param(lambda t: t.replace(t.split(":")[0], t.split(":")[0][:-1] + "x", 1), id="tampered-payload"),
        pytest.param(lambda t: signing.dumps({"a": "x", "k": "click", "u": "https://evil.test/"}, salt="other"),
                     id="foreign-salt"),
        pytest.param(lambda t: signing.dumps({"a": "x", "k": "click", "u": "https://evil.test/"}, key="not-ours",
                                             salt=tracking.SALT), id="foreign-key"),
        pytest.param(lambda t: "not-a-token", id="junk"),
    ],
)
def test_tampered_or_foreign_tokens_never_redirect_nor_count(cast, make_token):
    experiment, assignment = _exposed(cast)
    good = tracking.sign(assignment.pk, tracking.CLICK, "https://shop.example.com/spring")

    response = _click(make_token(good))

    assert response.status_code == 400
    assert "Location" not in response
    assert _clicks(experiment) == 0


def test_a_signed_target_on_a_host_the_experiment_no_longer_lists_is_not_followed(cast):
    experiment, assignment = _exposed(cast, allowed_hosts=["old.example.com"])
    token = tracking.sign(assignment.pk, tracking.CLICK, "https://old.example.com/")
    experiment.allowed_hosts = []
    experiment.save()

    response = _click(token)

    assert response.status_code == 404 and "Location" not in response
    assert _clicks(experiment) == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, id="bot"),
        pytest.param({"agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}, id="preview"),
        pytest.param({"agent": ""}, id="no-agent"),
        pytest.param({"HTTP_SEC_PURPOSE": "prefetch;prerender"}, id="prefetch"),
    ],
)
def test_bots_and_prefetches_are_redirected_but_not_counted(cast, headers):
    experiment, assignment = _exposed(cast)
    token = tracking.sign(assignment.pk, tracking.CLICK, "https://shop.example.com/spring")

    response = _click(token, **headers)

    assert response.status_code == 302
    assert _clicks(experiment) == 0


def test_a_head_request_is_not_a_click(cast):
    experiment, assignment = _exposed(cast)
    token = tracking.sign(assignment.pk, tracking.CLICK, "https://shop.example.com/spring")

    response = Client().head(f"/t/{token}", HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302
    assert _clicks(experiment) == 0


def test_clicks_after_the_window_or_the_stop_do_not_count(cast):
    _, assignment = _exposed(cast, attribution_window_hours=1)
    Assignment.objects.filter(pk=assignment.pk).update(created_at=timezone.now() - timedelta(hours=2))
    late = tracking.sign(assignment.pk, tracking.CLICK, "https://shop.example.com/spring")
    _, other = _exposed(cast, unit="bob")
    services.stop_experiment(experiment=other.experiment)

    assert _click(late).status_code == 302
    assert _click(tracking.sign(other.pk, tracking.CLICK, "https://shop.example.com/spring")).status_code == 302
    assert not Outcome.objects.exists()


# --- pixel -----------------------------------------------------------------------------------------


def test_the_pixel_is_a_gif_and_records_one_open(cast):
    experiment, assignment = _exposed(cast, goal_event="open")
    token = tracking.sign(assignment.pk, tracking.OPEN)

    first = Client().get(f"/t/{token}.gif", HTTP_USER_AGENT=BROWSER)
    Client().get(f"/t/{token}.gif", HTTP_USER_AGENT=BROWSER)

    assert first.status_code == 200 and first["Content-Type"] == "image/gif"
    assert first.content.startswith(b"GIF89a") and len(first.content) == 43
    assert Outcome.objects.filter(experiment=experiment, event="open").count() == 1


def test_a_click_token_is_not_a_pixel_and_a_bad_pixel_is_refused(cast):
    _, assignment = _exposed(cast)
    click = tracking.sign(assignment.pk, tracking.CLICK, "https://shop.example.com/spring")

    assert Client().get(f"/t/{click}.gif", HTTP_USER_AGENT=BROWSER).status_code == 404
    assert Client().get("/t/garbage.gif", HTTP_USER_AGENT=BROWSER).status_code == 400
    assert not Outcome.objects.exists()


# --- ingested events -------------------------------------------------------------------------------


def _ingest(client, project, events):
    return client.post(
        "/api/v1/events/",
        {"project": str(project.pk), "items": [{"sku": "MUG", "title": "Blue mug"}], "events": events},
        format="json",
    )


def test_ingested_goal_events_of_exposed_customers_count_once_within_the_window(cast, key_for):
    experiment, assignment = _exposed(cast, unit="ada", goal_event="purchase", attribution_window_hours=24)
    _exposed_bob = serving.assign(experiment, "bob")
    Assignment.objects.filter(unit="bob").update(created_at=timezone.now() - timedelta(days=3))
    client, _, _ = key_for("write")
    now = timezone.now()
    events = [
        {"event_id": "p1", "customer": "ada", "sku": "MUG", "type": "purchase", "timestamp": now.isoformat()},
        {"event_id": "v1", "customer": "ada", "sku": "MUG", "type": "view", "timestamp": now.isoformat()},
        # bob bought, but three days after his exposure: outside the 24 h window
        {"event_id": "p2", "customer": "bob", "sku": "MUG", "type": "purchase", "timestamp": now.isoformat()},
        # carol was never exposed
        {"event_id": "p3", "customer": "carol", "sku": "MUG", "type": "purchase", "timestamp": now.isoformat()},
        # ada's purchase before her exposure was not caused by the copy
        {"event_id": "p0", "customer": "ada", "sku": "MUG", "type": "purchase",
         "timestamp": (assignment.created_at - timedelta(hours=1)).isoformat()},
    ]

    first = _ingest(client, cast.project, events)
    retry = _ingest(client, cast.project, events)

    assert first.status_code == 201 and retry.status_code == 200
    outcomes = Outcome.objects.filter(experiment=experiment)
    assert [(o.assignment.unit, o.event, o.event_id) for o in outcomes] == [("ada", "purchase", "event:p1")]


def test_ingest_feeds_only_running_experiments_of_the_project(cast, key_for):
    stopped, _ = _exposed(cast, unit="ada", goal_event="purchase")
    services.stop_experiment(experiment=stopped)
    client, _, _ = key_for("write")
    now = timezone.now().isoformat()

    _ingest(client, cast.sibling_project, [{"event_id": "s1", "customer": "ada", "sku": "MUG", "timestamp": now}])
    _ingest(client, cast.project, [{"event_id": "s2", "customer": "ada", "sku": "MUG", "timestamp": now}])

    assert not Outcome.objects.exists()
