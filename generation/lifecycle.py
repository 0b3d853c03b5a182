"""A generation job's lifecycle (``core.jobs.Lifecycle``) and what follows its final state: bill it,
then tell the organization's webhooks.

Shared by the web side (a job canceled before it ran, an input blocked by moderation) and the worker
side (``generation.execution``), so neither imports the other for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from core.jobs import Lifecycle
from generation import dispatch, metering, streaming, webhooks
from generation.models import FINAL_STATUSES, GenerationJob, JobStatus


def job_finished(job_id: Any) -> None:
    """After the commit that made the job final: the end of its event stream, and one webhook delivery
    per active webhook."""
    streaming.publish_end(job_id)
    webhooks.schedule_job_webhooks(job_id)


def on_final(job: GenerationJob) -> None:
    """Bill the job (charge or release, exactly once) and notify, in the transaction that made it final.

    The caller has saved the job's final status and usage.
    """
    metering.finalize_job(job=job)
    transaction.on_commit(lambda: job_finished(job.pk))


def _admit(job: GenerationJob, now: datetime) -> bool:
    """A cancellation requested while the job waited wins over running it."""
    if not job.cancel_requested_at:
        return True
    job.status, job.finished_at = JobStatus.CANCELED, now
    job.failure_reason = job.failure_reason or "Canceled."
    job.save(update_fields=["status", "finished_at", "failure_reason"])
    on_final(job)
    return False


def _on_claim(job: GenerationJob, now: datetime) -> list[str]:
    # Each attempt gets the whole deadline: a job that lost its worker is not punished for it.
    job.deadline_at = now + timedelta(seconds=settings.GENERATION_JOB_DEADLINE_S)
    return ["deadline_at"]


jobs: Lifecycle[GenerationJob] = Lifecycle(
    model=GenerationJob,
    name="generation",
    queued=JobStatus.QUEUED,
    running=JobStatus.RUNNING,
    failed=JobStatus.FAILED,
    final=frozenset(FINAL_STATUSES),
    max_attempts=lambda: settings.GENERATION_MAX_ATTEMPTS,
    lease_s=lambda: settings.GENERATION_LEASE_S,
    requeue_after_s=lambda: settings.GENERATION_REQUEUE_AFTER_S,
    enqueue=lambda job_id: dispatch.enqueue(job_id),  # looked up when sent, so tests can record sends
    on_final=on_final,
    admit=_admit,
    on_claim=_on_claim,
)
