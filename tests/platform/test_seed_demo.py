"""``manage.py seed_demo``: the demo organization, project and shop data, idempotent; the demo shop's
history teaches the recommendation job something a popularity list does not know."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from billing.services import current_plan
from organizations.models import Organization
from recommendations import demo, execution
from recommendations.models import CatalogItem, Customer, Event, Recommendation, RecommendationJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", email="demo@example.com", stdout=out)
    return out.getvalue()


def test_seed_demo_creates_the_demo_and_its_shop_once(var_dir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        first = _seed()
    organization = Organization.objects.get(name="Demo Marketing Team")
    counts = (CatalogItem.objects.count(), Customer.objects.count(), Event.objects.count())
    second = _seed()

    assert "Password:" in first and (var_dir / "demo-password").read_text().strip() in first
    assert current_plan(organization).code == "pro"
    assert counts[:2] == (len(demo.catalog()), demo.CUSTOMERS) and counts[2] > 1000
    assert (CatalogItem.objects.count(), Customer.objects.count(), Event.objects.count()) == counts
    assert "already imported" in second and "already imported" not in first
    assert RecommendationJob.objects.filter(organization=organization).count() == 1
    assert len(queued) >= 1  # the job's task, sent once the seed committed


def test_the_demo_shop_trains_recommendations_that_beat_popularity(var_dir):
    _seed()
    job = RecommendationJob.objects.get()

    job = execution.run_job(job.pk)

    assert job.status == "succeeded", job.failure_reason
    assert Recommendation.objects.filter(job=job).values("customer").distinct().count() == demo.CUSTOMERS
    assert job.ndcg_ratio is not None and job.ndcg_ratio > 1.0, job.metrics
