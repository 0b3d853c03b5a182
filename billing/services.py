"""Metering: admit a job against its organization's plan, then charge or release it exactly once.

A job's life in the ledger::

    reserve_for_job  -> reservation +R   (hold the most the job can use)
    settle_job       -> charge +A, release -R   (bill actual usage, lift the hold)
    release_job      -> release -R   (failed, canceled or blocked: lift the hold, bill nothing)

Every write locks the organization's ``BillingAccount`` row first, so the
admission check and the balance update are one step for concurrent requests,
and the unique ``(job, kind)`` constraint makes each line exist at most once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from audit.services import record
from billing.errors import ConcurrencyLimitExceeded, QuotaExceeded, SubscriptionSuspended, VariantLimitExceeded
from billing.models import (
    FREE_PLAN_CODE,
    BillingAccount,
    LedgerEntry,
    LedgerKind,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from core.errors import Forbidden, InvalidInput
from generation.models import GenerationJob

if TYPE_CHECKING:
    from accounts.models import User
    from organizations.models import Organization

#: Prompt tokens held per variant at admission, before the prompt is tokenized. The engine
#: counts the prompt once per variant (generation/execution.py sums each variant's
#: prompt_tokens). Built-in templates with a brand voice render to 150-400 tokens; 512 covers
#: them, and a longer prompt is still charged in full at settlement, only not held.
PROMPT_TOKEN_ALLOWANCE_PER_VARIANT = 512

#: Ledger amounts keep six decimal places (see LedgerEntry); invoices round their totals to cents.
AMOUNT_QUANTUM = Decimal("0.000001")
COMPUTE_SECONDS_QUANTUM = Decimal("0.001")


# --- reads -------------------------------------------------------------------------------------


def current_plan(organization: Organization) -> Plan:
    """The plan that governs the organization now: its subscription's, else Free.

    A canceled subscription falls back to Free; a past-due one keeps its plan
    (a grace period), and a suspended one is refused at admission.
    """
    subscription = _subscription(organization)
    if subscription is not None and subscription.status != SubscriptionStatus.CANCELED:
        return subscription.plan
    return Plan.objects.get(code=FREE_PLAN_CODE)


def current_period(organization: Organization, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The billing period ``[start, end)``: the subscription's, else the calendar month in UTC."""
    subscription = _subscription(organization)
    if subscription is not None and subscription.status != SubscriptionStatus.CANCELED:
        return subscription.current_period_start, subscription.current_period_end
    now = (now or timezone.now()).astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def remaining_tokens(account: BillingAccount, plan: Plan) -> int:
    """Tokens the organization may still start jobs with this period (negative once overshot)."""
    return plan.included_tokens + account.credit_tokens - account.tokens_used_in_period - account.tokens_reserved


def max_tokens_for(job: GenerationJob) -> int:
    """The most tokens a job can use: every variant's completion plus its prompt allowance."""
    return job.num_variants * (job.max_new_tokens + PROMPT_TOKEN_ALLOWANCE_PER_VARIANT)


def ensure_billing_account(organization: Organization) -> BillingAccount:
    """The organization's balances row, created on first use (safe under concurrent first use)."""
    start, _ = current_period(organization)
    account, _ = BillingAccount.objects.get_or_create(organization=organization, defaults={"period_start": start})
    return account


# --- admission and settlement ------------------------------------------------------------------


@transaction.atomic
def reserve_for_job(*, job: GenerationJob) -> LedgerEntry:
    """Admit a job: hold its maximum tokens and a concurrency slot, or refuse it.

    Raises ``VariantLimitExceeded`` (400), ``QuotaExceeded`` (402, hard-capped plans
    only), ``SubscriptionSuspended`` (402) or ``ConcurrencyLimitExceeded`` (429).
    Idempotent: a second call for the same job returns its existing reservation.
    """
    organization = job.organization
    account = _lock_account(organization)
    existing = _entry(job, LedgerKind.RESERVATION)
    if existing is not None:
        return existing
    subscription = _subscription(organization)
    if subscription is not None and subscription.status == SubscriptionStatus.SUSPENDED:
        raise SubscriptionSuspended("This organization's subscription is suspended; settle the billing to continue.")
    plan = current_plan(organization)
    if job.num_variants > plan.max_variants_per_job:
        raise VariantLimitExceeded(
            f"The {plan.name} plan allows up to {plan.max_variants_per_job} variants per job; "
            f"this job asks for {job.num_variants}.",
            fields={"num_variants": [f"At most {plan.max_variants_per_job} on the {plan.name} plan."]},
        )
    needed = max_tokens_for(job)
    if not plan.overage_allowed and remaining_tokens(account, plan) < needed:
        _, period_end = current_period(organization)
        left = max(remaining_tokens(account, plan), 0)
        raise QuotaExceeded(
            f"The {plan.name} plan's {plan.included_tokens:,} tokens for this period are used up: this job needs "
            f"up to {needed:,} tokens and {left:,} are left. The allowance resets on "
            f"{period_end.astimezone(UTC):%Y-%m-%d %H:%M} UTC; upgrade the plan to continue now."
        )
    if account.active_jobs >= plan.max_concurrent_jobs:
        raise ConcurrencyLimitExceeded(
            f"The {plan.name} plan runs up to {plan.max_concurrent_jobs} jobs at a time and "
            f"{account.active_jobs} are running; retry when one finishes."
        )
    entry = LedgerEntry.objects.create(
        **_job_refs(job), kind=LedgerKind.RESERVATION, tokens=needed, reason=f"hold for up to {needed} tokens"
    )
    account.tokens_reserved += needed
    account.active_jobs += 1
    account.save(update_fields=["tokens_reserved", "active_jobs", "updated_at"])
    return entry


@transaction.atomic
def settle_job(*, job: GenerationJob) -> LedgerEntry | None:
    """Charge a finished job's stored usage and lift its hold, exactly once.

    Returns the charge; on a repeated call the existing charge, unchanged, and
    ``None`` when the job was already released without a charge. The amount is
    the overage beyond the period's allowance (included plus credits) at the
    plan's price per 1,000 tokens; zero within the allowance and on plans
    without overage. A job admitted before billing existed (no reservation) is
    charged without a release.
    """
    account = _lock_account(job.organization)
    charge = _entry(job, LedgerKind.CHARGE)
    if charge is not None or _entry(job, LedgerKind.RELEASE) is not None:
        return charge
    usage = GenerationJob.objects.values("prompt_tokens", "completion_tokens", "compute_seconds").get(pk=job.pk)
    actual = usage["prompt_tokens"] + usage["completion_tokens"]
    plan = current_plan(job.organization)
    charge = LedgerEntry.objects.create(
        **_job_refs(job),
        kind=LedgerKind.CHARGE,
        tokens_in=usage["prompt_tokens"],
        tokens_out=usage["completion_tokens"],
        tokens=actual,
        compute_seconds=Decimal(str(usage["compute_seconds"])).quantize(COMPUTE_SECONDS_QUANTUM),
        amount=_overage_amount(account, plan, actual),
        reason=f"{actual} tokens used",
    )
    account.tokens_used_in_period += actual
    _lift_hold(account, job, reason="settled")
    account.save(update_fields=["tokens_used_in_period", "tokens_reserved", "active_jobs", "updated_at"])
    return charge


@transaction.atomic
def release_job(*, job: GenerationJob, reason: str) -> LedgerEntry | None:
    """Lift a failed, canceled or blocked job's whole hold and charge nothing; idempotent.

    Returns the release (the existing one on a repeated call, or after
    ``settle_job``), or ``None`` when the job was never admitted.
    """
    account = _lock_account(job.organization)
    existing = _entry(job, LedgerKind.RELEASE)
    if existing is not None:
        return existing
    release = _lift_hold(account, job, reason=reason or "released")
    account.save(update_fields=["tokens_reserved", "active_jobs", "updated_at"])
    return release


# --- operator actions --------------------------------------------------------------------------


@transaction.atomic
def grant_credits(*, actor: User, organization: Organization, tokens: int, reason: str) -> LedgerEntry:
    """Give an organization tokens on top of its plan (staff only), with an audit row.

    Credits count as allowance; the part spent in a period is used up when the
    period rolls over.
    """
    _require_staff(actor)
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
        raise InvalidInput("Grant a positive whole number of tokens.", code="invalid_tokens")
    reason = (reason or "").strip()
    account = _lock_account(organization)
    entry = LedgerEntry.objects.create(
        organization=organization, kind=LedgerKind.CREDIT_GRANT, tokens=tokens, reason=reason, created_by=actor
    )
    account.credit_tokens += tokens
    account.save(update_fields=["credit_tokens", "updated_at"])
    record(
        "billing.credits_granted", organization=organization, actor=actor, target=entry, tokens=tokens, reason=reason
    )
    return entry


@transaction.atomic
def adjust_ledger(
    *, actor: User, organization: Organization, tokens: int, amount: Decimal | int | str, reason: str
) -> LedgerEntry:
    """Correct an organization's usage (``tokens``, signed) and money owed (``amount``, signed).

    Staff only, a reason is required, and usage cannot go below zero. A negative
    amount is a credit note.
    """
    _require_staff(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the ledger is adjusted.", code="reason_required")
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise InvalidInput("Tokens must be a whole number.", code="invalid_tokens")
    if isinstance(amount, float):
        raise InvalidInput("Give the amount as a decimal, not a float.", code="invalid_amount")
    money = Decimal(str(amount)).quantize(AMOUNT_QUANTUM)
    if tokens == 0 and money == 0:
        raise InvalidInput("An adjustment changes tokens, the amount or both.", code="empty_adjustment")
    account = _lock_account(organization)
    if account.tokens_used_in_period + tokens < 0:
        raise InvalidInput(
            f"Usage this period is {account.tokens_used_in_period:,} tokens; it cannot go below zero.",
            code="invalid_tokens",
        )
    entry = LedgerEntry.objects.create(
        organization=organization,
        kind=LedgerKind.ADJUSTMENT,
        tokens=tokens,
        amount=money,
        reason=reason,
        created_by=actor,
    )
    account.tokens_used_in_period += tokens
    account.save(update_fields=["tokens_used_in_period", "updated_at"])
    record(
        "billing.ledger_adjusted",
        organization=organization,
        actor=actor,
        target=entry,
        tokens=tokens,
        amount=str(money),
        reason=reason,
    )
    return entry


# --- helpers -----------------------------------------------------------------------------------


def _subscription(organization: Organization) -> Subscription | None:
    return Subscription.objects.select_related("plan").filter(organization=organization).first()


def _lock_account(organization: Organization) -> BillingAccount:
    """Lock the organization's balances for this transaction, rolling the period over if it ended.

    At rollover the usage counter starts again at zero and the credits spent in
    the finished period (usage beyond the included tokens) are used up.
    """
    ensure_billing_account(organization)
    account = BillingAccount.objects.select_for_update().get(organization=organization)
    start, _ = current_period(organization)
    if account.period_start < start:
        plan = current_plan(organization)
        spent_credits = max(account.tokens_used_in_period - plan.included_tokens, 0)
        account.credit_tokens -= min(spent_credits, account.credit_tokens)
        account.tokens_used_in_period = 0
        account.period_start = start
        account.save(update_fields=["credit_tokens", "tokens_used_in_period", "period_start", "updated_at"])
    return account


def _entry(job: GenerationJob, kind: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(job=job, kind=kind).first()


def _job_refs(job: GenerationJob) -> dict[str, Any]:
    return {
        "organization_id": job.organization_id,
        "project_id": job.project_id,
        "api_key_id": job.api_key_id,
        "user_id": job.requested_by_id,
        "job": job,
    }


def _lift_hold(account: BillingAccount, job: GenerationJob, *, reason: str) -> LedgerEntry | None:
    """Write the release of the job's whole hold and free its slot (the caller saves ``account``)."""
    reservation = _entry(job, LedgerKind.RESERVATION)
    if reservation is None:
        return None
    account.tokens_reserved = max(account.tokens_reserved - reservation.tokens, 0)
    account.active_jobs = max(account.active_jobs - 1, 0)
    return LedgerEntry.objects.create(
        **_job_refs(job), kind=LedgerKind.RELEASE, tokens=-reservation.tokens, reason=reason
    )


def _overage_amount(account: BillingAccount, plan: Plan, tokens: int) -> Decimal:
    """The price of the part of ``tokens`` beyond the period's allowance, given the usage so far."""
    if not plan.overage_allowed:
        return Decimal("0")
    allowance = plan.included_tokens + account.credit_tokens
    before = account.tokens_used_in_period
    overage = max(before + tokens - allowance, 0) - max(before - allowance, 0)
    return (Decimal(overage) * plan.price_per_1k_tokens / 1000).quantize(AMOUNT_QUANTUM)


def _require_staff(actor: Any) -> None:
    # Credits and adjustments are money: an organization's own owner must not grant them.
    if not getattr(actor, "is_staff", False):
        raise Forbidden("Only staff can change an organization's billing ledger.")
