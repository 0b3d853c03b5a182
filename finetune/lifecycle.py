"""A training run's lifecycle: the claim, lease, attempts and reconcile every job shares
(``core.jobs.Lifecycle``). A run canceled while queued is made final when it would be claimed."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from core.jobs import Lifecycle
from finetune import dispatch
from finetune.models import TrainingRun
from generation.models import FINAL_STATUSES, JobStatus


def _admit(run: TrainingRun, now: datetime) -> bool:
    if run.cancel_requested_at is None:
        return True
    run.status = JobStatus.CANCELED
    run.failure_reason = "Canceled before it started."
    run.finished_at = timezone.now()
    run.lease_expires_at = None
    run.save(update_fields=["status", "failure_reason", "finished_at", "lease_expires_at"])
    return False


runs: Lifecycle[TrainingRun] = Lifecycle(
    model=TrainingRun,
    name="training",
    queued=JobStatus.QUEUED,
    running=JobStatus.RUNNING,
    failed=JobStatus.FAILED,
    final=frozenset(FINAL_STATUSES),
    max_attempts=lambda: settings.TRAINING_MAX_ATTEMPTS,
    lease_s=lambda: settings.TRAINING_LEASE_S,
    requeue_after_s=lambda: settings.TRAINING_REQUEUE_AFTER_S,
    enqueue=lambda run_id: dispatch.enqueue(run_id),  # looked up when sent, so tests can record sends
    admit=_admit,
)
