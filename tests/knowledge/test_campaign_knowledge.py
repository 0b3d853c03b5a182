"""Campaign copy is grounded in each recommended item's catalog facts, and no other product's."""

from __future__ import annotations

import pytest

from generation.execution import run_job
from knowledge import retrieval
from recommendations import dispatch, importing, services
from recommendations.models import CatalogItem
from tests.knowledge.conftest import run_sent
from tests.knowledge.test_retrieval import RecordingEngine, _prompt
from tests.support.recommendation_factories import CustomerFactory, RecommendationFactory, RecommendationJobFactory

pytestmark = pytest.mark.django_db


def test_each_recipients_job_sees_its_items_facts_only(cast, monkeypatch, sent_tasks,
                                                       django_capture_on_commit_callbacks):
    monkeypatch.setattr(dispatch, "watch", lambda campaign_id: None)
    items = [
        {"sku": "STOVE-1", "title": "Ember stove", "description": "Boils a litre in 3 minutes.", "price": "45",
         "attributes": {"fuel": "isobutane"}},
        {"sku": "TENT-2", "title": "Ridge tent", "description": "Sleeps two.", "price": "199"},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        importing.ingest(organization=cast.org, project=cast.project, events=[], items=items, customers=[])
    run_sent(sent_tasks)
    job = RecommendationJobFactory(project=cast.project)
    ada = CustomerFactory(project=cast.project, external_id="ada")
    RecommendationFactory(job=job, customer=ada, item=CatalogItem.objects.get(sku="STOVE-1"), rank=1, score=0.9)

    campaign = services.create_campaign(
        organization=cast.org, project=cast.project, actor=cast.editor, name="Camp",
        template="personalized-recommendation", segment={"customers": ["ada"]},
    )

    generation_job = campaign.recipients.get().job
    assert retrieval.filters_for(generation_job.pk) == {"sku": ["STOVE-1"]}
    engine = RecordingEngine()
    run_job(generation_job.pk, engine=engine)
    prompt = _prompt(engine)
    assert "Price: 45" in prompt and "Fuel: isobutane" in prompt
    assert "Ridge tent" not in prompt and "Price: 199" not in prompt
