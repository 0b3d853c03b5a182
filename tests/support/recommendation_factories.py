"""Factories for the recommendations app: catalog, customers, events, jobs and their results, campaigns.

Rows are made directly; a test that wants a trained model runs the job function in process.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import factory
from factory.django import DjangoModelFactory

from recommendations.models import (
    Campaign,
    CampaignRecipient,
    CatalogItem,
    Customer,
    DataImport,
    Event,
    EventType,
    Recommendation,
    RecommendationJob,
    RecommendationJobStatus,
    SimilarItem,
)
from tests.support.factories import ProjectFactory
from tests.support.generation_factories import TemplateVersionFactory

#: A fixed "now" of the factory events (well in the past, so no timestamp is "in the future").
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class CatalogItemFactory(DjangoModelFactory[CatalogItem]):
    class Meta:
        model = CatalogItem

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda item: item.project.organization)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    title = factory.Sequence(lambda n: f"Linen tea towel no. {n}")
    price = "4.50"


class CustomerFactory(DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda customer: customer.project.organization)
    external_id = factory.Sequence(lambda n: f"C{n:05d}")
    attributes = factory.LazyFunction(lambda: {"country": "France"})


class EventFactory(DjangoModelFactory[Event]):
    class Meta:
        model = Event

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda event: event.project.organization)
    customer = factory.SubFactory(CustomerFactory, project=factory.SelfAttribute("..project"))
    item = factory.SubFactory(CatalogItemFactory, project=factory.SelfAttribute("..project"))
    type = EventType.PURCHASE
    value = 1.0
    occurred_at = factory.Sequence(lambda n: EPOCH - timedelta(hours=n))
    event_id = factory.Sequence(lambda n: f"evt-{n}")


class DataImportFactory(DjangoModelFactory[DataImport]):
    class Meta:
        model = DataImport

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda data_import: data_import.project.organization)
    filename = "orders.csv"
    total_rows = 2
    events_created = 1
    report = factory.LazyFunction(
        lambda: {"rows": 2, "outcomes": {"imported": 1, "rejected": 1}, "errors": [{"line": 3, "errors": ["x"]}]}
    )


class RecommendationJobFactory(DjangoModelFactory[RecommendationJob]):
    class Meta:
        model = RecommendationJob

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda job: job.project.organization)
    status = RecommendationJobStatus.SUCCEEDED
    seed = 7
    metrics = factory.LazyFunction(
        lambda: {
            "model": {"precision": 0.05, "recall": 0.1, "ndcg": 0.08, "coverage": 0.3},
            "popularity": {"precision": 0.03, "recall": 0.06, "ndcg": 0.05, "coverage": 0.01},
            "test_users": 10,
            "k": 10,
        }
    )
    finished_at = factory.LazyFunction(lambda: EPOCH)


class RecommendationFactory(DjangoModelFactory[Recommendation]):
    class Meta:
        model = Recommendation

    job = factory.SubFactory(RecommendationJobFactory)
    customer = factory.SubFactory(CustomerFactory, project=factory.SelfAttribute("..job.project"))
    item = factory.SubFactory(CatalogItemFactory, project=factory.SelfAttribute("..job.project"))
    rank = 1
    score = 0.9
    reason = "Bought together with Linen napkins"


class SimilarItemFactory(DjangoModelFactory[SimilarItem]):
    class Meta:
        model = SimilarItem

    job = factory.SubFactory(RecommendationJobFactory)
    item = factory.SubFactory(CatalogItemFactory, project=factory.SelfAttribute("..job.project"))
    similar = factory.SubFactory(CatalogItemFactory, project=factory.SelfAttribute("..job.project"))
    rank = 1
    score = 0.7


class CampaignFactory(DjangoModelFactory[Campaign]):
    class Meta:
        model = Campaign

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda campaign: campaign.project.organization)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    template_version = factory.SubFactory(
        TemplateVersionFactory, template__organization=factory.SelfAttribute("...organization")
    )
    recommendation_job = factory.SubFactory(RecommendationJobFactory, project=factory.SelfAttribute("..project"))


class CampaignRecipientFactory(DjangoModelFactory[CampaignRecipient]):
    class Meta:
        model = CampaignRecipient

    campaign = factory.SubFactory(CampaignFactory)
    customer = factory.SubFactory(CustomerFactory, project=factory.SelfAttribute("..campaign.project"))
    items = factory.LazyFunction(lambda: [{"sku": "SKU-1", "title": "Linen tea towel", "score": 0.9, "reason": ""}])
    error = "Input blocked"
