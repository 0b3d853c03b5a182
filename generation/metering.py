"""A generation job as billing meters it: its ledger reference, its most and actual usage.

Billing knows plans, holds and charges, not jobs (``billing.services``); this module reads a job
and hands billing plain values. A job's life in the ledger::

    reserve_for_job  -> reservation +R   (hold the most the job can use)
    settle_job       -> charge +A, release -R   (bill actual usage, lift the hold)
    release_job      -> release -R   (failed, canceled or blocked: lift the hold, bill nothing)
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils.translation import gettext

from billing import services as billing
from billing.integrity import MeteredJobs
from billing.models import LedgerEntry
from generation.models import FINAL_STATUSES, GenerationJob, JobStatus, ServingModel

#: Prompt tokens held per variant at admission, before the prompt is tokenized. The engine
#: counts the prompt once per variant (generation/execution.py sums each variant's
#: prompt_tokens). Built-in templates with a brand voice render to 150-400 tokens; 512 covers
#: them, and a longer prompt is still charged in full at settlement, only not held.
PROMPT_TOKEN_ALLOWANCE_PER_VARIANT = 512


#: Generation jobs as the billing audit checks them against their ledger lines (registered in generation.apps).
AUDITED_JOBS = MeteredJobs(
    queryset=GenerationJob.objects.all, final_statuses=FINAL_STATUSES, succeeded=JobStatus.SUCCEEDED
)


def job_ref(job: GenerationJob) -> billing.JobRef:
    """The job as its ledger lines name it."""
    return billing.JobRef(
        organization=job.organization,
        job_id=job.pk,
        project_id=job.project_id,
        api_key_id=job.api_key_id,
        user_id=job.requested_by_id,
    )


def max_tokens_for(job: GenerationJob) -> int:
    """The most tokens a job can use: every variant's completion plus its prompt allowance."""
    return job.num_variants * (job.max_new_tokens + PROMPT_TOKEN_ALLOWANCE_PER_VARIANT)


def reserve_for_job(*, job: GenerationJob, holds_slot: bool = True, new_job: bool = False) -> LedgerEntry:
    """Admit a job: hold its maximum tokens and a concurrency slot, or refuse it (``billing.services.reserve``).

    ``holds_slot=False`` admits a row of a bulk upload or campaign (no concurrency slot);
    ``new_job``: the caller created the job in this transaction, so it has no reservation to find.
    """
    return billing.reserve(
        ref=job_ref(job),
        tokens=max_tokens_for(job),
        variants=job.num_variants,
        holds_slot=holds_slot,
        new_job=new_job,
    )


@transaction.atomic
def settle_job(*, job: GenerationJob) -> LedgerEntry | None:
    """Charge a finished job's stored usage and lift its hold, exactly once (``billing.services.settle``)."""
    _lock(job)
    usage = GenerationJob.objects.values("prompt_tokens", "completion_tokens", "compute_seconds").get(pk=job.pk)
    return billing.settle(ref=job_ref(job), usage=billing.TokenUsage(**usage), price_per_1k_tokens=model_price(job))


@transaction.atomic
def release_job(*, job: GenerationJob, reason: str) -> LedgerEntry | None:
    """Lift a failed, canceled or blocked job's whole hold and charge nothing; idempotent."""
    _lock(job)
    return billing.release(ref=job_ref(job), reason=reason)


def finalize_job(*, job: GenerationJob) -> LedgerEntry | None:
    """Bill a job that just reached a final state, in the transaction that made it final.

    Succeeded: charge the stored usage and lift the hold. Failed, canceled or
    blocked: lift the hold and charge nothing, whatever the model had already
    generated. Both are exactly-once, so a task that runs twice bills once.
    """
    if job.status == JobStatus.SUCCEEDED:
        return settle_job(job=job)
    return release_job(job=job, reason=f"{job.status}: {job.failure_reason}"[:500])


def check_regeneration(*, job: GenerationJob) -> None:
    """Refuse regenerating a variant the plan cannot pay for (suspended, or no allowance left on a hard cap).

    A regeneration holds nothing: it is one variant, charged when stored.
    """
    billing.check_allowance(
        organization=job.organization,
        tokens=job.max_new_tokens + PROMPT_TOKEN_ALLOWANCE_PER_VARIANT,
        what=gettext("regenerating this variant"),
    )


def charge_regeneration(
    *, job: GenerationJob, index: int, revision: int, prompt_tokens: int, completion_tokens: int
) -> LedgerEntry:
    """Charge one regenerated variant, exactly once per (job, variant, revision).

    The job's own charge holds the ledger's (job, charge) line: this one is named by its reference.
    """
    actual = prompt_tokens + completion_tokens
    return billing.charge_tokens(
        organization=job.organization,
        reference=f"regeneration:{job.pk}:{index}:{revision}",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        reason=f"{actual} tokens used regenerating variant {index + 1} (revision {revision})",
        project_id=job.project_id,
        api_key_id=job.api_key_id,
        user_id=job.requested_by_id,
        price_per_1k_tokens=model_price(job),
    )


def model_price(job: GenerationJob) -> Decimal | None:
    """The price per 1,000 tokens of the model the job ran on, read when it is billed (as the plan is);
    None: the plan's price applies (a model without its own price, or a job from before the registry)."""
    if job.serving_model_id is None:
        return None
    return ServingModel.objects.values_list("price_per_1k_tokens", flat=True).get(pk=job.serving_model_id)


def _lock(job: GenerationJob) -> None:
    """Serialize the billing of one job (its callers already hold this row lock when they made it final)."""
    GenerationJob.objects.select_for_update(of=("self",)).filter(pk=job.pk).values_list("pk").first()
