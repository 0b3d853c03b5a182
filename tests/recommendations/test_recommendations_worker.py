"""From events to personalized copy on real workers: a recommendation job on the recommendation queue,
then a campaign over 20 customers written by the real model on the generation worker."""

from __future__ import annotations

import csv
import io
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from apikeys.services import create_api_key
from generation.models import Variant
from generation.services import sync_builtin_templates
from recommendations.models import CampaignRecipient
from tests.support.billing import seed_plans
from tests.support.factories import MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

#: Real product names from the Online Retail data, in three groups customers keep to.
GROUPS = [
    ["WHITE HANGING HEART T-LIGHT HOLDER", "RED WOOLLY HOTTIE WHITE HEART.", "HAND WARMER RED POLKA DOT",
     "SET 7 BABUSHKA NESTING BOXES", "GLASS STAR FROSTED T-LIGHT HOLDER", "KNITTED UNION FLAG HOT WATER BOTTLE"],
    ["JUMBO BAG RED RETROSPOT", "LUNCH BAG RED RETROSPOT", "RED RETROSPOT CHARLOTTE BAG",
     "LUNCH BAG BLACK SKULL.", "JUMBO BAG PINK POLKADOT", "STRAWBERRY CHARLOTTE BAG"],
    ["REGENCY CAKESTAND 3 TIER", "SET OF 3 CAKE TINS PANTRY DESIGN", "PACK OF 72 RETROSPOT CAKE CASES",
     "ROSES REGENCY TEACUP AND SAUCER", "GREEN REGENCY TEACUP AND SAUCER", "BAKING SET 9 PIECE RETROSPOT"],
]
START = datetime(2011, 6, 1, tzinfo=UTC)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _events() -> tuple[list[dict], list[dict]]:
    rng = random.Random(3)
    items = [{"sku": f"G{g}-{n}", "title": title} for g, titles in enumerate(GROUPS) for n, title in enumerate(titles)]
    events = []
    for c in range(24):
        group = c % 3
        for day in rng.sample(range(150), 5):
            events.append({
                "customer": f"{17000 + c}",
                "sku": f"G{group}-{rng.randrange(6)}",
                "value": rng.randint(1, 12),
                "timestamp": (START + timedelta(days=day, hours=c)).isoformat(),
            })
    return items, events


@pytest.mark.timeout(1500)
def test_campaign_over_20_customers_names_their_recommended_items(celery_worker_process, generation_worker):
    # given: an organization (on Enterprise, the test default plan) with a write key and a project's events
    seed_plans()
    sync_builtin_templates()  # a transactional test starts from an empty database
    organization = OrganizationFactory()
    owner = UserFactory()
    MembershipFactory(organization=organization, user=owner, role="owner")
    project = ProjectFactory(organization=organization)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + create_api_key(actor=owner, organization=organization, name="e2e", scope="write").secret
    )
    items, events = _events()
    ingested = client.post("/api/v1/events/", {"project": str(project.pk), "items": items, "events": events},
                           format="json")
    assert ingested.status_code == 201 and ingested.json()["outcomes"]["imported"] == len(events)

    # when: a recommendation job runs on the recommendation worker
    job = client.post("/api/v1/recommendation-jobs/", {"project": str(project.pk), "k": 5}, format="json").json()
    job = _wait_for(
        lambda: (body := client.get(f"/api/v1/recommendation-jobs/{job['id']}/").json())["status"]
        in {"succeeded", "failed"} and body,
        300,
        "the recommendation job",
    )
    assert job["status"] == "succeeded", job["failure_reason"]
    assert job["stats"]["customers_with_recommendations"] == 24
    assert job["metrics"]["model"]["ndcg"] >= 0 and "popularity" in job["metrics"]

    # and a campaign over 20 of the customers is written by the generation worker
    response = client.post(
        "/api/v1/campaigns/",
        {
            "project": str(project.pk),
            "name": "Autumn picks",
            "segment": {"limit": 20},
            "items_per_customer": 3,
            "params": {"max_new_tokens": 40, "seed": 1},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    campaign = response.json()
    campaign = _wait_for(
        lambda: (body := client.get(f"/api/v1/campaigns/{campaign['id']}/").json())["done"] and body,
        1200,
        "every customer's copy",
    )

    # then: 20 results, each the model's own text, each naming one of that customer's recommended items
    assert campaign["progress"]["succeeded"] == 20, campaign["progress"]
    recipients = client.get(f"/api/v1/campaigns/{campaign['id']}/recipients/", {"limit": 50}).json()["results"]
    assert len(recipients) == 20
    for row in recipients:
        titles = [item["title"] for item in row["items"]]
        assert row["status"] == "succeeded"
        assert [t for t in titles if t.casefold() in row["text"].casefold()], (titles, row["text"])
        assert row["mentioned"]
        stored = Variant.objects.get(job_id=row["job"], index=0, is_current=True)
        assert stored.text == row["text"] and stored.tokens > 0 and not stored.edited_text
    rewrites = sum(CampaignRecipient.objects.filter(campaign_id=campaign["id"]).values_list("regenerations", flat=True))
    print(f"\ncampaign of 20: {rewrites} rewrite(s) needed")
    body = client.get(f"/api/v1/campaigns/{campaign['id']}/results.csv").content.decode()
    exported = list(csv.reader(io.StringIO(body)))
    assert len(exported) == 21 and all(row[7] for row in exported[1:])  # every customer's mentioned_items
