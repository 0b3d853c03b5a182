"""A recommendation job as billing meters it: compute seconds under the job's ledger reference.

Billing knows charges by reference, not jobs (``billing.services.charge_compute``); this module
reads a job and hands billing plain values, as ``generation.metering`` does for generation jobs.
"""

from __future__ import annotations

from billing import services as billing
from recommendations.models import RecommendationJob


def reference(job: RecommendationJob) -> str:
    return f"recommendation:{job.pk}"


def charge_job(job: RecommendationJob, *, events: int, seconds: float) -> None:
    """Charge the job's compute, in the transaction that marks it succeeded (keyed by the job: once)."""
    billing.charge_compute(
        organization=job.organization,
        reference=reference(job),
        seconds=job.compute_seconds,
        project=job.project,
        user=job.requested_by,
        api_key=job.api_key,
        reason=f"Recommendation job: {events:,} events, {seconds:.1f} s",
    )
