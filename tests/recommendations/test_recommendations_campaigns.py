"""Personalized campaigns: one generation job per customer of a segment about their recommended items,
the rewrite of copy that names none of them, per-customer results, the CSV export, API and dashboard."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from billing.models import LedgerEntry, LedgerKind
from core.errors import Conflict, InvalidInput
from generation.models import GenerationJob, JobStatus
from recommendations import dispatch, results, services
from recommendations.models import Campaign, CampaignRecipient
from tests.support.billing import make_plan, subscribe
from tests.support.generation_factories import TemplateVersionFactory, VariantFactory
from tests.support.recommendation_factories import (
    CampaignRecipientFactory,
    CustomerFactory,
    EventFactory,
    RecommendationFactory,
    RecommendationJobFactory,
)

pytestmark = pytest.mark.django_db

LATEST = datetime(2024, 6, 30, tzinfo=UTC)


@pytest.fixture
def watched(monkeypatch):
    """Campaigns whose watcher was started after commit, recorded instead of sent to the broker."""
    calls: list[str] = []
    monkeypatch.setattr(dispatch, "watch", lambda campaign_id: calls.append(str(campaign_id)))
    return calls


@pytest.fixture
def shop(cast):
    """A succeeded job; Ada (France) and Bea (France) have recommendations, Cem (Germany) too, Dan none."""
    job = RecommendationJobFactory(project=cast.project)
    people = {}
    for name, country, titles in (
        ("ada", "France", ["WHITE HANGING HEART T-LIGHT HOLDER", "Blue mug", "Tea towel"]),
        ("bea", "France", ["Garden gloves", "Watering can"]),
        ("cem", "Germany", ["Party bunting"]),
        ("dan", "France", []),
    ):
        customer = CustomerFactory(project=cast.project, external_id=name, attributes={"country": country})
        people[name] = customer
        for rank, title in enumerate(titles, start=1):
            RecommendationFactory(job=job, customer=customer, item__title=title, rank=rank, score=1 - rank / 10)
    # purchases: Ada recently and often, Bea long ago, Cem once recently
    for name, days_ago in (("ada", 1), ("ada", 3), ("ada", 5), ("bea", 200), ("cem", 2)):
        EventFactory(project=cast.project, customer=people[name], occurred_at=LATEST - timedelta(days=days_ago))
    return job, people


def _create(cast, **kwargs):
    return services.create_campaign(
        organization=cast.org, project=cast.project, actor=cast.editor, **{"name": "Spring picks", **kwargs}
    )


def test_one_job_per_customer_of_the_segment_about_their_top_item(
    cast, shop, watched, django_capture_on_commit_callbacks
):
    job, people = shop
    with django_capture_on_commit_callbacks(execute=True):
        campaign = _create(cast, template="personalized-recommendation", segment={"countries": ["France"]})

    recipients = {r.customer.external_id: r for r in campaign.recipients.select_related("customer", "job")}
    assert set(recipients) == {"ada", "bea"}
    assert campaign.skipped == [{"customer": "dan", "reason": "no recommendations in the latest job"}]
    assert campaign.recommendation_job == job and watched == [str(campaign.pk)]
    ada = recipients["ada"]
    assert [i["title"] for i in ada.items] == ["White Hanging Heart T-Light Holder", "Blue mug", "Tea towel"]
    assert ada.job.inputs == {"product": "White Hanging Heart T-Light Holder"}
    assert recipients["bea"].job.inputs == {"product": "Garden gloves"}
    assert (ada.job.num_variants, ada.job.temperature, ada.job.status) == (1, 0.2, JobStatus.QUEUED)
    assert ada.job.template_version.template.slug == "personalized-recommendation"
    assert ada.job.idempotency_key == f"campaign:{campaign.pk}:{people['ada'].pk}"
    # billed like bulk rows: tokens held per job, no concurrency slot taken
    holds = LedgerEntry.objects.filter(job__in=[ada.job, recipients["bea"].job], kind=LedgerKind.RESERVATION)
    assert holds.count() == 2 and not any(holds.values_list("holds_slot", flat=True))


def test_a_list_variable_gets_every_item_and_shared_inputs_fill_the_rest(cast, shop, watched):
    version = TemplateVersionFactory(
        template__organization=cast.org,
        variables=[
            {"name": "products", "type": "text", "required": True, "max_length": 50},
            {"name": "country", "type": "text", "required": False},
            {"name": "occasion", "type": "text", "required": True},
        ],
        prompt="Write about {products} for {occasion} in {country}.",
    )

    campaign = _create(
        cast, template=str(version.template_id), segment={"customers": ["ada"]}, extra_inputs={"occasion": "spring"}
    )

    inputs = campaign.recipients.get().job.inputs
    # as many titles as fit in the variable's 50 characters, best first
    assert inputs == {
        "products": "White Hanging Heart T-Light Holder, Blue mug", "country": "France", "occasion": "spring"
    }


def test_segment_filters_on_activity_and_limit(cast, shop, watched):
    recent = _create(cast, segment={"purchased_within_days": 10})
    loyal = _create(cast, segment={"min_purchases": 2})
    first_two = _create(cast, segment={"limit": 2})

    def names(campaign):
        return sorted(campaign.recipients.values_list("customer__external_id", flat=True))

    assert names(recent) == ["ada", "cem"]
    assert names(loyal) == ["ada"]
    assert names(first_two) == ["ada", "cem"]  # the most recent buyers first


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"template": "seo-meta"}, "template_without_products"),
        ({"template": "marketing-email"}, "invalid_inputs"),  # its required topic is missing
        ({"segment": {"countries": ["Narnia"]}}, "invalid_segment"),
        ({"segment": {"colour": "red"}}, "invalid_segment"),
        ({"segment": {"min_purchases": 0}}, "invalid_segment"),
        ({"segment": "France"}, "invalid_segment"),
        ({"items_per_customer": 9}, "invalid"),
        ({"params": {"num_variants": 4}}, "invalid"),
        ({"name": ""}, "invalid"),
    ],
)
def test_refused_campaigns_leave_nothing_behind(cast, shop, watched, kwargs, code):
    with pytest.raises(InvalidInput) as refused:
        _create(cast, **kwargs)

    assert refused.value.code == code
    assert not Campaign.objects.exists() and not GenerationJob.objects.exists()


def test_no_campaign_before_a_recommendation_job(cast, watched):
    CustomerFactory(project=cast.project)

    with pytest.raises(Conflict) as refused:
        _create(cast)

    assert refused.value.code == "no_recommendations"


@override_settings(CAMPAIGN_MAX_CUSTOMERS=2)
def test_a_segment_over_the_limit_needs_narrowing(cast, shop, watched):
    with pytest.raises(InvalidInput) as refused:
        _create(cast)

    assert "has 4 customers; a campaign reaches at most 2" in refused.value.detail


def test_a_campaign_the_plan_cannot_pay_for_is_refused_whole(cast, shop, watched, client_for):
    subscribe(cast.org, make_plan(included_tokens=700))  # enough for one job of 60 + 512 prompt tokens, not two

    response = client_for(cast.editor).post(
        "/api/v1/campaigns/",
        {"project": str(cast.project.pk), "name": "Too big", "segment": {"countries": ["France"]}},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (402, "quota_exceeded")
    assert not Campaign.objects.exists() and not GenerationJob.objects.exists()
    assert not LedgerEntry.objects.filter(kind=LedgerKind.RESERVATION).exists()
    assert watched == []


# --- rewriting copy that names no item -----------------------------------------------------------


@pytest.fixture
def regenerated(monkeypatch):
    calls: list[tuple[str, int]] = []

    def regenerate(*, variant):
        calls.append((str(variant.job_id), variant.revision + 1))
        return variant

    monkeypatch.setattr("generation.services.regenerate_variant", regenerate)
    return calls


def _recipient_with_copy(cast, text: str, **fields):
    recipient = CampaignRecipientFactory(
        campaign__project=cast.project,
        error="",
        items=[{"sku": "A", "title": "Blue Mug", "score": 1, "reason": ""}],
        **fields,
    )
    variant = VariantFactory(job__project=cast.project, index=0, text=text)
    recipient.job = variant.job
    recipient.save(update_fields=["job"])
    return recipient, variant


def test_copy_naming_no_item_is_regenerated_until_a_revision_names_one(cast, regenerated):
    recipient, variant = _recipient_with_copy(cast, "A lovely thing for your home.")

    # when the watcher looks: the copy names nothing, so a new revision is asked for
    assert services.repair_campaign(recipient.campaign) is True
    recipient.refresh_from_db()
    assert regenerated == [(str(variant.job_id), 1)] and recipient.regenerations == 1
    # while that revision is on its way, nothing more is asked and the campaign is not done
    assert services.repair_campaign(recipient.campaign) is True
    assert len(regenerated) == 1
    assert results.progress(recipient.campaign).counts["regenerating"] == 1
    assert not results.progress(recipient.campaign).finished
    # the new revision names the item: done
    variant.is_current = False
    variant.save(update_fields=["is_current"])
    VariantFactory(job=variant.job, index=0, revision=1, text="The blue mug is a joy.")
    assert services.repair_campaign(recipient.campaign) is False
    assert len(regenerated) == 1
    assert results.progress(recipient.campaign).finished
    [row] = results.results(results.recipients(recipient.campaign))
    assert row.mentioned == ["Blue Mug"]


def test_regeneration_stops_after_the_limit(cast, regenerated):
    recipient, _ = _recipient_with_copy(cast, "Nothing named.", regenerations=services.MAX_REGENERATIONS)
    # its last revision arrived (revision == regenerations) and still names nothing
    recipient.job.variants.update(revision=services.MAX_REGENERATIONS)

    assert services.repair_campaign(recipient.campaign) is False
    assert regenerated == []


def test_copy_that_names_an_item_or_a_failed_job_is_left_alone(cast, regenerated):
    named, _ = _recipient_with_copy(cast, "blue mug, at last")
    failed = CampaignRecipientFactory(
        campaign=named.campaign, error="", job=VariantFactory(job__project=cast.project, job__status="failed").job
    )

    assert services.repair_campaign(named.campaign) is False
    assert regenerated == [] and failed.job.status == "failed"


# --- results -------------------------------------------------------------------------------------


def test_results_csv_is_spreadsheet_safe(cast):
    recipient, _ = _recipient_with_copy(cast, "=HYPERLINK(\"http://evil\") Blue Mug")
    recipient.customer.external_id = "+cmd"
    recipient.customer.save(update_fields=["external_id"])

    rows = list(csv.reader(io.StringIO(results.results_csv(recipient.campaign))))

    assert rows[0] == ["customer", "country", "recommended_items", "status", "job_id", "error", "copy",
                       "mentioned_items", "facts_supported", "facts_unsupported", "facts_flagged",
                       "arm", "assignment_id", "click_url", "pixel_url"]
    assert rows[1][0] == "'+cmd" and rows[1][6].startswith("'=HYPERLINK")
    assert rows[1][2] == "Blue Mug" and rows[1][3] == "succeeded" and rows[1][7] == "Blue Mug"


# --- API -----------------------------------------------------------------------------------------


def test_api_campaign_create_recipients_and_csv(cast, shop, key_for, watched):
    client, _, _ = key_for("write")

    response = client.post(
        "/api/v1/campaigns/",
        {"project": str(cast.project.pk), "name": "May", "segment": {"countries": ["France"]}, "items_per_customer": 2},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["template"] == "personalized-recommendation" and body["items_per_customer"] == 2
    assert body["progress"] == {
        "queued": 2, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0, "not_queued": 0, "assigned": 0,
        "regenerating": 0,
    }
    assert body["done"] is False
    recipients = client.get(f"/api/v1/campaigns/{body['id']}/recipients/").json()["results"]
    assert [(r["external_id"], [i["title"] for i in r["items"]], r["status"]) for r in recipients] == [
        ("ada", ["White Hanging Heart T-Light Holder", "Blue mug"], "queued"),
        ("bea", ["Garden gloves", "Watering can"], "queued"),
    ]
    exported = client.get(f"/api/v1/campaigns/{body['id']}/results.csv")
    assert exported["Content-Type"].startswith("text/csv")
    assert exported.content.decode().count("\n") == 4  # header, two customers, skipped dan


def test_api_campaign_errors_are_4xx(cast, shop, key_for, client_for):
    client, _, _ = key_for("write")
    url = "/api/v1/campaigns/"

    project = str(cast.project.pk)
    no_products = client.post(url, {"project": project, "name": "x", "template": "seo-meta"}, format="json")
    unknown = client.post(url, {"project": project, "name": "x", "template": "nope"}, format="json")
    viewer = client_for(cast.viewer).post(url, {"project": str(cast.project.pk), "name": "x"}, format="json")

    assert (no_products.status_code, no_products.json()["code"]) == (400, "template_without_products")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "template_not_found")
    assert viewer.status_code == 403
    assert not Campaign.objects.exists()


def test_outsider_sees_no_acme_campaign(cast, client_for, client):
    recipient = CampaignRecipientFactory(campaign__project=cast.project)
    campaign = recipient.campaign
    outsider = client_for(cast.outsider)

    assert outsider.get(f"/api/v1/campaigns/{campaign.pk}/recipients/").status_code == 404
    assert outsider.get(f"/api/v1/campaigns/{campaign.pk}/results.csv").status_code == 404
    client.force_login(cast.outsider)
    assert client.get(f"/recommendations/campaigns/{campaign.pk}/").status_code == 404
    assert client.get(f"/recommendations/campaigns/{campaign.pk}/results.csv").status_code == 404


# --- dashboard -----------------------------------------------------------------------------------


def test_editor_starts_a_campaign_from_the_dashboard(cast, shop, client, watched):
    client.force_login(cast.editor)
    form = client.get("/recommendations/campaigns/").content.decode()
    assert "Personalized product recommendation" in form and "Product description" in form
    assert "SEO title" not in form  # no product variable

    response = client.post(
        "/recommendations/campaigns/",
        {
            "project": str(cast.project.pk),
            "name": "June",
            "template": "personalized-recommendation",
            "countries": "France, Germany",
            "items_per_customer": 1,
        },
    )

    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response.url == f"/recommendations/campaigns/{campaign.pk}/"
    assert campaign.segment == {"countries": ["France", "Germany"]} and campaign.recipients.count() == 3
    page = client.get(response.url).content.decode()
    assert "White Hanging Heart T-Light Holder" in page and "dan: no recommendations" in page


def test_viewer_reads_campaigns_but_cannot_start_one(cast, shop, client, watched):
    CampaignRecipientFactory(campaign__project=cast.project, campaign__name="Visible")
    client.force_login(cast.viewer)

    assert "Visible" in client.get("/recommendations/campaigns/").content.decode()
    refused = client.post("/recommendations/campaigns/", {"project": str(cast.project.pk), "name": "No"})
    assert refused.status_code == 403
    assert not CampaignRecipient.objects.filter(campaign__name="No").exists()


def test_admin_deletes_a_project_with_its_campaigns_and_jobs(cast, client_for):
    recipient = CampaignRecipientFactory(campaign__project=cast.project)

    response = client_for(cast.admin).delete(f"/api/v1/projects/{cast.project.pk}/")

    assert response.status_code == 204
    assert not Campaign.objects.filter(pk=recipient.campaign_id).exists()
