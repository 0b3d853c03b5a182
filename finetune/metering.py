"""A training run as billing meters it: compute (GPU) seconds under the run's ledger reference, as
``recommendations.metering`` does for recommendation jobs. Keyed by the run: charged once."""

from __future__ import annotations

from billing import services as billing
from finetune.models import TrainingRun


def reference(run: TrainingRun) -> str:
    return f"training:{run.pk}"


def charge_run(run: TrainingRun, *, examples: int) -> None:
    """In the transaction that marks the run succeeded; a second call returns the first charge."""
    billing.charge_compute(
        organization=run.organization,
        reference=reference(run),
        seconds=run.compute_seconds,
        project=run.project,
        user=run.created_by,
        api_key=run.api_key,
        reason=f"Brand model training: {examples:,} examples, {run.compute_seconds} s",
    )
