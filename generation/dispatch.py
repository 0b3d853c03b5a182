"""How generation code reaches its Celery tasks: by task name, never by importing ``generation.tasks``.

The tasks call into ``generation.execution`` and ``generation.webhooks``; sending by name keeps
those modules (and ``generation.services``) from importing the tasks back. The queue comes from the
app's ``task_routes`` (model work to ``generation``, the rest to ``default``), as for ``task.delay``.
The names are what queued messages carry: they must not change while a deployment has messages in
Redis.

Callers send after the commit that made the work visible (``transaction.on_commit``), so a worker
never looks for a row that is not there yet.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError as BrokerUnavailable

from workers.celery import app

logger = logging.getLogger(__name__)

RUN_JOB = "generation.run_job"
REGENERATE_VARIANT = "generation.regenerate_variant"
DELIVER_WEBHOOK = "generation.deliver_webhook"
SCORE_VARIANTS = "generation.score_variants"


def _send(name: str, *args: Any) -> None:
    # A task sent by name does not read its task's settings: without ignore_result, Celery would
    # subscribe this process to the result store for every task sent (and fail while Redis is away).
    app.send_task(name, args=args, ignore_result=app.conf.task_ignore_result)


def enqueue(job_id: Any) -> bool:
    """Send the job's task; whether it was sent.

    Called once the job is committed. If the broker cannot be reached (Redis restarting), the job
    stays queued and the reconciler enqueues it later (GENERATION_REQUEUE_AFTER_S): the client that
    submitted it still gets its job, not a 500 for a job that exists and will run.
    """
    try:
        _send(RUN_JOB, str(job_id))
    except BrokerUnavailable as exc:
        logger.warning("could not enqueue generation job %s, the reconciler will: %s", job_id, exc)
        return False
    return True


def regenerate_variant(job_id: str, index: int, revision: int) -> None:
    """Send the task that writes revision ``revision`` of variant ``index`` of a succeeded job."""
    _send(REGENERATE_VARIANT, job_id, index, revision)


def deliver_webhook(delivery_id: Any) -> None:
    """Send the task that POSTs one webhook delivery (it retries itself with backoff)."""
    _send(DELIVER_WEBHOOK, str(delivery_id))


def score_variants(job_id: Any) -> None:
    """Send the task that scores a job's brand fit where the embedding model is (the default queue)."""
    try:
        _send(SCORE_VARIANTS, str(job_id))
    except BrokerUnavailable as exc:
        # The variants are stored and delivered; only their brand-fit score waits for the next try.
        logger.warning("could not enqueue brand-fit scoring of job %s: %s", job_id, exc)


def cancel_key(job_id: Any) -> str:
    """The cache key a running worker polls between decode steps (cheaper than the database)."""
    return f"generation:cancel:{job_id}"


def request_cancel(job_id: Any) -> None:
    """Tell the worker running the job to stop at its next decode step (``execution.StopCheck``)."""
    cache.set(cancel_key(job_id), 1, timeout=settings.GENERATION_JOB_DEADLINE_S * 2)
