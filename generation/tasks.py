"""Thin Celery tasks: take ids, call plain functions in generation.execution / generation.webhooks."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from generation import execution, webhooks

#: The database was away longer than generation.execution.with_db_retry waits: run the task again
#: later (5 s, 10 s, 20 s ... up to a minute) instead of dropping it; the job itself is never failed for it.
DB_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 5,
    "retry_backoff_max": 60,
    "max_retries": 8,
}


@shared_task(name="generation.run_job", **DB_RETRY)
def run_generation_job(job_id: str) -> str | None:
    job = execution.run_job(job_id)
    return job.status if job else None


@shared_task(name="generation.regenerate_variant", **DB_RETRY)
def regenerate_variant_task(job_id: str, index: int, revision: int) -> None:
    execution.regenerate(job_id, index, revision)


@shared_task(name="generation.score_variants", queue="default", **DB_RETRY)
def score_variants_task(job_id: str) -> int:
    return execution.score_variants(job_id)


@shared_task(name="generation.reconcile", queue="default")
def reconcile_jobs() -> int:
    return len(execution.reconcile())


@shared_task(name="generation.deliver_webhook", queue="default", bind=True, max_retries=None)
def deliver_webhook_task(self, delivery_id: str) -> None:  # type: ignore[no-untyped-def]
    retry_in = webhooks.deliver(delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
