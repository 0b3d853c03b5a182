"""A recommendation job's lifecycle: the same claim, lease, attempts and reconcile as every job
(``core.jobs.Lifecycle``), with the recommendation settings. A failed job charges nothing: its
compute is billed only with its results (``recommendations.metering``)."""

from __future__ import annotations

from django.conf import settings

from core.jobs import Lifecycle
from recommendations import dispatch
from recommendations.models import FINAL_JOB_STATUSES, RecommendationJob, RecommendationJobStatus

jobs: Lifecycle[RecommendationJob] = Lifecycle(
    model=RecommendationJob,
    name="recommendation",
    queued=RecommendationJobStatus.QUEUED,
    running=RecommendationJobStatus.RUNNING,
    failed=RecommendationJobStatus.FAILED,
    final=frozenset(FINAL_JOB_STATUSES),
    max_attempts=lambda: settings.RECOMMENDATION_MAX_ATTEMPTS,
    lease_s=lambda: settings.RECOMMENDATION_LEASE_S,
    requeue_after_s=lambda: settings.RECOMMENDATION_REQUEUE_AFTER_S,
    enqueue=lambda job_id: dispatch.enqueue(job_id),  # looked up when sent, so tests can record sends
)
