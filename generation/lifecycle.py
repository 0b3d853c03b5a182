"""What follows a generation job reaching its final state: bill it, then tell the organization's webhooks.

Shared by the web side (a job canceled before it ran, an input blocked by moderation) and the worker
side (``generation.execution``), so neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from generation import metering, webhooks
from generation.models import GenerationJob


def job_finished(job_id: Any) -> None:
    """After the commit that made the job final: one webhook delivery per active webhook."""
    webhooks.schedule_job_webhooks(job_id)


def on_final(job: GenerationJob) -> None:
    """Bill the job (charge or release, exactly once) and notify, in the transaction that made it final.

    The caller has saved the job's final status and usage.
    """
    metering.finalize_job(job=job)
    transaction.on_commit(lambda: job_finished(job.pk))
