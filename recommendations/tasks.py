"""Thin Celery tasks: take ids, call plain functions in recommendations.execution and recommendations.services.

``run_job`` is routed to the ``recommendation`` queue by ``workers.celery`` (``recommendations.*``); the
bookkeeping tasks declare ``default``. Domain code sends them by name through ``recommendations.dispatch``.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from recommendations import execution
from recommendations.models import Campaign
from recommendations.services import repair_campaign


@shared_task(name="recommendations.run_job")
def run_recommendation_job(job_id: str) -> str | None:
    job = execution.run_job(job_id)
    return job.status if job else None


@shared_task(name="recommendations.reconcile", queue="default")
def reconcile_recommendation_jobs() -> int:
    return len(execution.reconcile())


#: Seconds between two looks at a campaign's jobs, and how long a campaign is watched at most.
CAMPAIGN_WATCH_INTERVAL_S = 5
CAMPAIGN_WATCH_LIMIT_S = 6 * 60 * 60


@shared_task(name="recommendations.watch_campaign", queue="default", bind=True, max_retries=None)
def watch_campaign(self, campaign_id: str) -> None:  # type: ignore[no-untyped-def]
    """Until every job of the campaign is final, regenerate copy that names none of the customer's items."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or (timezone.now() - campaign.created_at).total_seconds() > CAMPAIGN_WATCH_LIMIT_S:
        return
    if repair_campaign(campaign):
        raise self.retry(countdown=CAMPAIGN_WATCH_INTERVAL_S)
