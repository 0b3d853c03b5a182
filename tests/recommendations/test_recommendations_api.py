"""The recommendations API: batch ingest, catalog/customers/events, recommendations, similar items,
project settings, and tenant isolation (an outsider sees nothing, a project key one project)."""

from __future__ import annotations

import pytest

from recommendations.models import CatalogItem, Customer, Event, RecommendationSettings
from tests.support.recommendation_factories import (
    CatalogItemFactory,
    CustomerFactory,
    EventFactory,
    RecommendationFactory,
    RecommendationJobFactory,
    SimilarItemFactory,
)

pytestmark = pytest.mark.django_db


def _ingest(client, project, **body):
    return client.post("/api/v1/events/", {"project": str(project.pk), **body}, format="json")


# --- batch ingest --------------------------------------------------------------------------------


def test_ingest_upserts_items_and_customers_then_stores_events(cast, key_for):
    client, _, _ = key_for("write")

    response = _ingest(
        client,
        cast.project,
        items=[{"sku": "MUG", "title": "Blue mug", "price": "4.50"}],
        customers=[{"external_id": "ada", "attributes": {"country": "France", "name": "Ada"}}],
        events=[
            {"event_id": "e1", "customer": "ada", "sku": "MUG", "type": "view", "timestamp": "2024-01-01T10:00:00Z"},
            {"event_id": "e2", "customer": "ada", "sku": "MUG", "value": 2, "timestamp": 1704103200},
        ],
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["outcomes"]["imported"] == 2 and body["items_created"] == 1 and body["customers_created"] == 1
    assert sum(body["outcomes"].values()) == body["events"] == 2
    assert sorted(Event.objects.filter(project=cast.project).values_list("event_id", "type", "value")) == [
        ("e1", "view", 1.0),
        ("e2", "purchase", 2.0),
    ]
    assert CatalogItem.objects.get(project=cast.project, sku="MUG").price == 4.5
    assert Customer.objects.get(project=cast.project, external_id="ada").name == "Ada"


def test_ingest_is_idempotent_by_event_id_and_by_content_without_one(cast, key_for):
    client, _, _ = key_for("write")
    CatalogItemFactory(project=cast.project, sku="MUG")
    events = [
        {"event_id": "e1", "customer": "ada", "sku": "MUG", "timestamp": "2024-01-01T10:00:00Z"},
        {"customer": "bob", "sku": "MUG", "type": "cart", "timestamp": "2024-01-02T10:00:00Z"},
    ]

    first = _ingest(client, cast.project, events=events)
    again = _ingest(client, cast.project, events=events)

    assert first.status_code == 201 and first.json()["outcomes"]["imported"] == 2
    assert again.status_code == 200
    assert again.json()["outcomes"]["already_imported"] == 2 and again.json()["outcomes"]["imported"] == 0
    assert Event.objects.filter(project=cast.project).count() == 2


def test_ingest_reports_each_bad_event_by_index_and_keeps_the_good_ones(cast, key_for):
    client, _, _ = key_for("write")
    CatalogItemFactory(project=cast.project, sku="MUG")

    response = _ingest(
        client,
        cast.project,
        events=[
            {"customer": "ada", "sku": "MUG", "timestamp": "2024-01-01T10:00:00Z"},
            {"customer": "ada", "sku": "NOPE", "timestamp": "2024-01-01T10:00:00Z"},
            {"customer": "ada", "sku": "MUG", "timestamp": "2999-01-01T10:00:00Z"},
            {"customer": "ada", "sku": "MUG", "type": "like", "timestamp": "2024-01-01T10:00:00Z", "colour": "red"},
            {"sku": "MUG", "timestamp": "2024-01-01T10:00:00Z", "value": "many"},
            "not an object",
        ],
    )

    assert response.status_code == 201
    body = response.json()
    assert body["outcomes"]["imported"] == 1 and body["outcomes"]["unknown_item"] == 1
    assert body["outcomes"]["rejected"] == 4 and sum(body["outcomes"].values()) == 6
    assert body["unknown_items"] == ["NOPE"]
    errors = {e["index"]: e["errors"] for e in body["errors"]}
    assert errors[2] == ["timestamp: 2999-01-01T10:00:00Z is in the future"]
    assert "unknown field 'colour'" in errors[3][0] and "type: must be one of" in errors[3][1]
    assert errors[4] == ["customer: missing", "value: must be a number"]
    assert errors[5] == ["an event must be an object"]
    assert Event.objects.filter(project=cast.project).count() == 1


def test_ingest_refuses_an_empty_or_oversized_batch(cast, key_for):
    client, _, _ = key_for("write")

    empty = _ingest(client, cast.project, events=[])
    huge = _ingest(client, cast.project, events=[{}] * 10_001)

    assert (empty.status_code, empty.json()["code"]) == (400, "empty_batch")
    assert huge.status_code == 400 and "10000" in huge.json()["detail"].replace(",", "")


def test_read_key_and_viewer_cannot_ingest(cast, key_for, client_for):
    read_key, _, _ = key_for("read")
    events = [{"customer": "ada", "sku": "MUG", "timestamp": "2024-01-01T10:00:00Z"}]

    assert _ingest(read_key, cast.project, events=events).status_code == 403
    assert _ingest(client_for(cast.viewer), cast.project, events=events).status_code == 403
    assert not Event.objects.exists()


def test_outsider_cannot_ingest_into_acme(cast, outsider_key):
    CatalogItemFactory(project=cast.project, sku="MUG")

    response = _ingest(
        outsider_key, cast.project, events=[{"customer": "x", "sku": "MUG", "timestamp": "2024-01-01T10:00:00Z"}]
    )

    assert response.status_code == 404
    assert not Event.objects.exists()


def test_a_project_key_ingests_into_its_project_only(cast, key_for):
    client, _, _ = key_for("write", project=cast.project)
    events = [{"customer": "ada", "sku": "MUG", "timestamp": "2024-01-01T10:00:00Z"}]
    items = [{"sku": "MUG", "title": "Blue mug"}]

    own = _ingest(client, cast.project, events=events, items=items)
    sibling = _ingest(client, cast.sibling_project, events=events, items=items)

    assert own.status_code == 201 and sibling.status_code == 404
    assert not Event.objects.filter(project=cast.sibling_project).exists()


# --- reads ---------------------------------------------------------------------------------------


def test_lists_show_acme_rows_and_filter_by_project(cast, client_for):
    mine = EventFactory(project=cast.project, customer__external_id="ada", item__sku="MUG")
    EventFactory(project=cast.sibling_project)
    client = client_for(cast.viewer)

    items = client.get("/api/v1/catalog-items/", {"project": str(cast.project.pk)}).json()["results"]
    customers = client.get("/api/v1/customers/", {"project": str(cast.project.pk), "search": "ad"}).json()["results"]
    events = client.get("/api/v1/events/", {"project": str(cast.project.pk)}).json()["results"]
    everything = client.get("/api/v1/events/").json()["results"]

    assert [i["sku"] for i in items] == ["MUG"]
    assert [c["external_id"] for c in customers] == ["ada"]
    assert [(e["id"], e["customer_external_id"], e["sku"]) for e in events] == [(mine.pk, "ada", "MUG")]
    assert len(everything) == 2


def test_customer_recommendations_come_from_the_latest_succeeded_job(cast, client_for):
    old = RecommendationJobFactory(project=cast.project, finished_at="2024-01-01T00:00:00Z")
    new = RecommendationJobFactory(project=cast.project, finished_at="2024-02-01T00:00:00Z")
    RecommendationJobFactory(project=cast.project, status="running", finished_at=None)
    customer = CustomerFactory(project=cast.project)
    RecommendationFactory(job=old, customer=customer, item__title="Old pick")
    second = RecommendationFactory(job=new, customer=customer, rank=2, item__title="Second", score=0.5)
    first = RecommendationFactory(job=new, customer=customer, rank=1, item__title="First", score=0.9)

    body = client_for(cast.viewer).get(f"/api/v1/customers/{customer.pk}/recommendations/").json()

    assert body["job"] == str(new.pk)
    assert [(r["rank"], r["title"], r["item"]) for r in body["recommendations"]] == [
        (1, "First", str(first.item_id)),
        (2, "Second", str(second.item_id)),
    ]
    assert body["recommendations"][0]["reason"] == "Bought together with Linen napkins"


def test_customer_without_a_job_gets_an_empty_list(cast, client_for):
    customer = CustomerFactory(project=cast.project)

    body = client_for(cast.viewer).get(f"/api/v1/customers/{customer.pk}/recommendations/").json()

    assert body == {"customer": str(customer.pk), "job": None, "recommendations": []}


def test_similar_items(cast, client_for):
    job = RecommendationJobFactory(project=cast.project)
    row = SimilarItemFactory(job=job, similar__title="Linen napkins", score=0.42)

    body = client_for(cast.viewer).get(f"/api/v1/catalog-items/{row.item_id}/similar/").json()

    assert body["job"] == str(job.pk)
    assert body["similar"] == [
        {"rank": 1, "item": str(row.similar_id), "sku": row.similar.sku, "title": "Linen napkins", "score": 0.42}
    ]


def test_project_settings_read_by_viewers_changed_by_editors(cast, client_for):
    url = f"/api/v1/projects/{cast.project.pk}/recommendation-settings/"

    read = client_for(cast.viewer).get(url)
    refused = client_for(cast.viewer).put(url, {"exclude_purchased": False}, format="json")
    changed = client_for(cast.editor).patch(url, {"exclude_purchased": False}, format="json")

    assert read.json() == {"exclude_purchased": True}
    assert refused.status_code == 403
    assert changed.json() == {"exclude_purchased": False}
    assert RecommendationSettings.objects.get(project=cast.project).exclude_purchased is False


# --- tenant isolation ----------------------------------------------------------------------------


def test_outsider_sees_nothing_of_acme(cast, client_for):
    event = EventFactory(project=cast.project)
    job = RecommendationJobFactory(project=cast.project)
    RecommendationFactory(job=job, customer=event.customer, item=event.item)
    client = client_for(cast.outsider)

    for url in ("/api/v1/catalog-items/", "/api/v1/customers/", "/api/v1/events/", "/api/v1/recommendation-jobs/",
                "/api/v1/data-imports/", "/api/v1/campaigns/"):
        assert client.get(url).json()["results"] == [], url
    for url in (
        f"/api/v1/customers/{event.customer_id}/",
        f"/api/v1/customers/{event.customer_id}/recommendations/",
        f"/api/v1/catalog-items/{event.item_id}/similar/",
        f"/api/v1/recommendation-jobs/{job.pk}/",
        f"/api/v1/projects/{cast.project.pk}/recommendation-settings/",
    ):
        response = client.get(url)
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), url
    # and filtering by Acme's project id shows nothing either
    assert client.get("/api/v1/events/", {"project": str(cast.project.pk)}).json()["results"] == []


def test_a_project_key_sees_its_project_only(cast, key_for):
    client, _, _ = key_for("read", project=cast.project)
    mine = CustomerFactory(project=cast.project)
    other = CustomerFactory(project=cast.sibling_project)

    listed = [c["id"] for c in client.get("/api/v1/customers/").json()["results"]]

    assert listed == [str(mine.pk)]
    assert client.get(f"/api/v1/customers/{other.pk}/").status_code == 404
