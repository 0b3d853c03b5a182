"""Campaigns run as experiments: each recipient is assigned an arm (sticky, one exposure per customer),
their copy is the arm's text (no generation job, nothing charged), the export carries their arm and
tracking links, and their later purchases count as their arm's conversions."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from billing.models import LedgerEntry
from experiments import results as experiment_results
from experiments import services as experiments
from experiments.models import Assignment, Outcome
from generation.models import GenerationJob
from recommendations import dispatch, services
from recommendations.models import Campaign, CampaignRecipient
from tests.support.experiment_factories import ExperimentFactory
from tests.support.recommendation_factories import CustomerFactory, RecommendationFactory, RecommendationJobFactory

pytestmark = pytest.mark.django_db

#: Enough customers that both arms of an even split get some (all on one arm: 2 in 2**24).
CUSTOMERS = 24
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@pytest.fixture
def watched(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(dispatch, "watch", lambda campaign_id: calls.append(str(campaign_id)))
    return calls


@pytest.fixture
def shop(cast):
    """A succeeded recommendation job with one recommended item for each of c00..c23."""
    job = RecommendationJobFactory(project=cast.project)
    for n in range(CUSTOMERS):
        customer = CustomerFactory(project=cast.project, external_id=f"c{n:02d}", attributes={"country": "France"})
        RecommendationFactory(job=job, customer=customer, item__title=f"Tulip bulbs {n}", rank=1, score=0.9)
    return job


def _running(project, **kwargs):
    return experiments.start_experiment(experiment=ExperimentFactory(project=project, **kwargs))


def _create(cast, experiment, **kwargs):
    return services.create_campaign(
        organization=cast.org, project=cast.project, actor=cast.editor, name="Tulip test",
        experiment=experiment.pk, **kwargs,
    )


def _arms(campaign):
    return dict(campaign.recipients.values_list("customer__external_id", "arm_label"))


# --- assignment ------------------------------------------------------------------------------------


def test_recipients_are_split_across_arms_and_get_their_arms_text_without_a_job_or_charge(cast, shop, watched):
    experiment = _running(cast.project)
    texts = dict(experiment.arms.values_list("label", "text"))

    campaign = _create(cast, experiment)

    rows = list(campaign.recipients.select_related("customer", "assignment__arm"))
    assert len(rows) == CUSTOMERS and campaign.experiment == experiment
    assert {r.arm_label for r in rows} == {"A", "B"}
    for row in rows:
        assert row.arm_text == texts[row.arm_label]
        assert row.job is None and not row.error
        # the exposure is the customer's (unit = external id), on the arm the recipient shows
        assert (row.assignment.unit, row.assignment.arm.label) == (row.customer.external_id, row.arm_label)
    assert Assignment.objects.filter(experiment=experiment).count() == CUSTOMERS
    assert not GenerationJob.objects.exists() and not LedgerEntry.objects.exists()
    assert watched == []  # nothing to watch: the copy is written
    assert campaign.landing_url == experiment.target_url


def test_a_customers_arm_is_sticky_across_campaigns_and_repairs_with_one_exposure_each(cast, shop, watched):
    experiment = _running(cast.project)
    first = _create(cast, experiment)
    assignments = dict(first.recipients.values_list("customer__external_id", "assignment_id"))

    second = _create(cast, experiment, segment={"limit": 10})
    assert services.repair_campaign(first) is False  # no job: nothing to rewrite

    assert _arms(second) == {k: v for k, v in _arms(first).items() if k in _arms(second)}
    assert all(assignments[k] == v for k, v in second.recipients.values_list("customer__external_id", "assignment_id"))
    assert Assignment.objects.filter(experiment=experiment).count() == CUSTOMERS
    assert _arms(first) == dict(
        Assignment.objects.filter(experiment=experiment).values_list("unit", "arm__label")
    )


def test_a_recipients_purchase_in_the_window_is_a_conversion_of_their_arm(cast, shop, key_for, watched):
    experiment = _running(cast.project, goal_event="purchase")
    campaign = _create(cast, experiment)
    arms = _arms(campaign)
    buyer, early = "c03", "c04"
    client, _, _ = key_for("write")
    body = {
        "project": str(cast.project.pk),
        "items": [{"sku": "TULIP-1", "title": "Tulip bulbs"}],
        "events": [
            {"customer": buyer, "sku": "TULIP-1", "type": "purchase", "event_id": "order-1",
             "timestamp": timezone.now().isoformat()},
            # before the campaign reached the customer: not an outcome of the experiment
            {"customer": early, "sku": "TULIP-1", "type": "purchase", "event_id": "order-0",
             "timestamp": "2024-01-01T00:00:00Z"},
        ],
    }

    for _ in range(2):  # sent twice: counted once
        assert client.post("/api/v1/events/", body, format="json").status_code in (200, 201)

    summary = experiment_results.summary(experiment)
    by_arm = {r.arm.label: (r.stats.exposures, r.stats.conversions) for r in summary.arms}
    assert sum(exposures for exposures, _ in by_arm.values()) == CUSTOMERS
    assert by_arm[arms[buyer]][1] == 1 and summary.conversions == 1
    assert Outcome.objects.get().assignment.unit == buyer
    read = client.get(f"/api/v1/experiments/{experiment.pk}/results").json()
    assert (read["exposures"], read["conversions"]) == (CUSTOMERS, 1)


# --- refusals --------------------------------------------------------------------------------------


def test_an_experiment_that_is_not_this_projects_or_not_running_is_a_400(cast, shop, key_for, client_for):
    client, _, _ = key_for("write")
    draft = ExperimentFactory(project=cast.project)
    sibling = _running(cast.sibling_project)
    foreign = _running(cast.outsider_project)
    running = _running(cast.project)
    project = str(cast.project.pk)

    def create(**fields):
        return client.post("/api/v1/campaigns/", {"project": project, "name": "x", **fields}, format="json")

    cases = {
        "draft": (create(experiment=str(draft.pk)), "experiment_not_running", "experiment"),
        "sibling": (create(experiment=str(sibling.pk)), "invalid_experiment", "experiment"),
        "foreign": (create(experiment=str(foreign.pk)), "invalid_experiment", "experiment"),
        "off-list host": (
            create(experiment=str(running.pk), landing_url="https://evil.test/"), "target_not_allowed", "landing_url"
        ),
        "link without experiment": (
            create(landing_url="https://shop.example.com/"), "landing_url_without_experiment", "landing_url"
        ),
    }
    for name, (response, code, field) in cases.items():
        assert response.status_code == 400, (name, response.content)
        assert response.json()["code"] == code and field in response.json()["fields"], name
    # the outsider cannot run a campaign of theirs as Acme's experiment either
    outsider = client_for(cast.outsider).post(
        "/api/v1/campaigns/",
        {"project": str(cast.outsider_project.pk), "name": "x", "experiment": str(running.pk)},
        format="json",
    )
    assert (outsider.status_code, outsider.json()["code"]) == (400, "invalid_experiment")
    assert not Campaign.objects.exists() and not Assignment.objects.exists()


def test_an_experiment_stopped_while_the_campaign_is_prepared_refuses_it_and_records_nothing(
    cast, shop, watched, monkeypatch
):
    experiment = _running(cast.project)
    checked = services._campaign_experiment

    def checked_then_stopped(*args, **kwargs):
        found, landing_url = checked(*args, **kwargs)  # running when looked at...
        experiments.stop_experiment(experiment=found)  # ...stopped before the campaign's transaction
        return found, landing_url

    monkeypatch.setattr(services, "_campaign_experiment", checked_then_stopped)

    with pytest.raises(services.InvalidInput) as refused:
        _create(cast, experiment)

    assert refused.value.code == "experiment_not_running"
    assert not Campaign.objects.exists() and not Assignment.objects.exists()


def test_outsider_sees_no_experiment_campaign(cast, shop, client_for, client, watched):
    campaign = _create(cast, _running(cast.project))
    outsider = client_for(cast.outsider)

    assert outsider.get(f"/api/v1/campaigns/{campaign.pk}/").status_code == 404
    assert outsider.get(f"/api/v1/campaigns/{campaign.pk}/recipients/").status_code == 404
    assert outsider.get(f"/api/v1/campaigns/{campaign.pk}/results.csv").status_code == 404
    assert outsider.get("/api/v1/campaigns/").json()["results"] == []
    client.force_login(cast.outsider)
    assert client.get(f"/recommendations/campaigns/{campaign.pk}/").status_code == 404
    assert client.get(f"/recommendations/campaigns/{campaign.pk}/results.csv").status_code == 404
    assert "Tulip test" not in client.get("/recommendations/campaigns/").content.decode()


# --- export and tracking ---------------------------------------------------------------------------


def test_api_and_csv_export_carry_each_recipients_arm_copy_and_tracking_links(cast, shop, key_for, client, watched):
    experiment = _running(cast.project, allowed_hosts=["tulips.example.org"])
    api, _, _ = key_for("write")

    created = api.post(
        "/api/v1/campaigns/",
        {"project": str(cast.project.pk), "name": "Tulips", "experiment": str(experiment.pk),
         "landing_url": "https://tulips.example.org/spring"},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["experiment"], body["landing_url"]) == (str(experiment.pk), "https://tulips.example.org/spring")
    assert body["progress"]["assigned"] == CUSTOMERS and body["done"] is True
    recipients = api.get(f"/api/v1/campaigns/{body['id']}/recipients/", {"page_size": 100}).json()["results"]
    texts = dict(experiment.arms.values_list("label", "text"))
    assert {r["arm"] for r in recipients} == {"A", "B"}
    assert all(r["status"] == "assigned" and r["text"] == texts[r["arm"]] and r["job"] is None for r in recipients)
    rows = list(csv.DictReader(io.StringIO(api.get(f"/api/v1/campaigns/{body['id']}/results.csv").content.decode())))
    assert [(r["customer"], r["arm"], r["assignment_id"], r["click_url"], r["pixel_url"]) for r in rows] == [
        (r["external_id"], r["arm"], r["assignment"], r["click_url"], r["pixel_url"]) for r in recipients
    ]

    # the links work: a click goes to the landing page and counts once for the customer's assignment
    first = recipients[0]
    click = client.get(urlsplit(first["click_url"]).path, HTTP_USER_AGENT=BROWSER)
    client.get(urlsplit(first["click_url"]).path, HTTP_USER_AGENT=BROWSER)
    opened = client.get(urlsplit(first["pixel_url"]).path, HTTP_USER_AGENT=BROWSER)
    assert (click.status_code, click["Location"]) == (302, "https://tulips.example.org/spring")
    assert opened.status_code == 200 and opened["Content-Type"] == "image/gif"
    assert sorted(Outcome.objects.filter(assignment_id=first["assignment"]).values_list("event", flat=True)) == [
        "click", "open"
    ]


# --- dashboard -------------------------------------------------------------------------------------


def test_editor_starts_an_experiment_campaign_from_the_dashboard(cast, shop, client, watched):
    running = _running(cast.project, name="Subject lines")
    ExperimentFactory(project=cast.project, name="Still a draft")
    _running(cast.outsider_project, name="Globex secret")
    client.force_login(cast.editor)

    form = client.get("/recommendations/campaigns/").content.decode()
    assert "Subject lines (Spring)" in form
    assert "Still a draft" not in form and "Globex secret" not in form
    response = client.post(
        "/recommendations/campaigns/",
        {
            "project": str(cast.project.pk),
            "name": "June test",
            "template": "personalized-recommendation",
            "items_per_customer": 1,
            "experiment": str(running.pk),
        },
    )

    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response.url == f"/recommendations/campaigns/{campaign.pk}/"
    assert campaign.experiment == running and campaign.recipients.count() == CUSTOMERS
    page = client.get(response.url).content.decode()
    assert "Subject lines" in page and 'data-arm="A"' in page and "data-click-url" in page
    assert not CampaignRecipient.objects.filter(job__isnull=False).exists()
