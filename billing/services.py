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

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from audit.services import record
from billing.errors import ConcurrencyLimitExceeded, QuotaExceeded, SubscriptionSuspended, VariantLimitExceeded
from billing.models import (
    BillingAccount,
    LedgerEntry,
    LedgerKind,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from core.errors import Forbidden, InvalidInput
from generation.models import GenerationJob, JobStatus

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


logger = logging.getLogger(__name__)


# --- reads -------------------------------------------------------------------------------------


#: "Read the subscription from the database" (None is a real value: no subscription).
_READ: Any = object()


def current_plan(organization: Organization, *, subscription: Subscription | None = _READ) -> Plan:
    """The plan that governs the organization now: its subscription's, else the default (Free).

    A canceled subscription falls back to Free; a past-due one keeps its plan
    (a grace period), and a suspended one is refused at admission. Pass the
    ``subscription`` already read in this transaction to save the query.
    """
    if subscription is _READ:
        subscription = _subscription(organization)
    if subscription is not None and subscription.status != SubscriptionStatus.CANCELED:
        return subscription.plan
    try:
        return Plan.objects.get(code=settings.BILLING_DEFAULT_PLAN)
    except Plan.DoesNotExist:
        raise ImproperlyConfigured(
            f"BILLING_DEFAULT_PLAN is {settings.BILLING_DEFAULT_PLAN!r}, and no plan has that code."
        ) from None


def current_period(
    organization: Organization, *, now: datetime | None = None, subscription: Subscription | None = _READ
) -> tuple[datetime, datetime]:
    """The billing period ``[start, end)``: the subscription's, else the calendar month in UTC."""
    if subscription is _READ:
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
def reserve_for_job(*, job: GenerationJob, holds_slot: bool = True, new_job: bool = False) -> LedgerEntry:
    """Admit a job: hold its maximum tokens and a concurrency slot, or refuse it.

    Raises ``VariantLimitExceeded`` (400), ``QuotaExceeded`` (402, hard-capped plans
    only), ``SubscriptionSuspended`` (402) or ``ConcurrencyLimitExceeded`` (429).
    Idempotent: a second call for the same job returns its existing reservation.

    ``holds_slot=False`` admits a row of a bulk upload or campaign: its tokens are
    held like any job's, but it takes no concurrency slot, since a batch is one
    request whose rows queue behind each other rather than many concurrent calls.
    """
    organization = job.organization
    # Checked before the account row is locked: the unique (job, kind) constraint is what makes it exactly-once.
    # ``new_job``: the caller created the job in this transaction, so it has no reservation to find.
    existing = None if new_job else _entry(job, LedgerKind.RESERVATION)
    if existing is not None:
        return existing
    subscription = loaded_subscription(organization)
    _refuse_if_suspended(subscription)
    plan = current_plan(organization, subscription=subscription)
    if job.num_variants > plan.max_variants_per_job:
        raise VariantLimitExceeded(
            f"The {plan.name} plan allows up to {plan.max_variants_per_job} variants per job; "
            f"this job asks for {job.num_variants}.",
            fields={"num_variants": [f"At most {plan.max_variants_per_job} on the {plan.name} plan."]},
        )
    needed = max_tokens_for(job)
    entry = LedgerEntry.objects.create(
        **_job_refs(job),
        kind=LedgerKind.RESERVATION,
        tokens=needed,
        holds_slot=holds_slot,
        reason=f"hold for up to {needed} tokens",
    )
    # Hold first, then judge the balances as they were just before: a refusal raises, and the rollback
    # takes the hold and the ledger line back. See ``_add_to_account`` for why in this order.
    account = _add_to_account(organization, subscription, reserved=needed, jobs=int(holds_slot))
    before = _before(account, reserved=needed, jobs=int(holds_slot))
    _refuse_beyond_allowance(before, organization, plan, needed, what="this job")
    if holds_slot and before.active_jobs >= plan.max_concurrent_jobs:
        raise ConcurrencyLimitExceeded(
            f"The {plan.name} plan runs up to {plan.max_concurrent_jobs} jobs at a time and "
            f"{before.active_jobs} are running; retry when one finishes."
        )
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
    lines = _job_lines(_lock_job(job))
    charge = lines.get(LedgerKind.CHARGE)
    if charge is not None or LedgerKind.RELEASE in lines:
        return charge
    usage = GenerationJob.objects.values("prompt_tokens", "completion_tokens", "compute_seconds").get(pk=job.pk)
    actual = usage["prompt_tokens"] + usage["completion_tokens"]
    subscription = _subscription(job.organization)
    plan = current_plan(job.organization, subscription=subscription)
    release, reserved, jobs = _hold_release(job, lines.get(LedgerKind.RESERVATION), reason="settled")
    account = _add_to_account(job.organization, subscription, used=actual, reserved=-reserved, jobs=-jobs)
    charge = LedgerEntry(
        **_job_refs(job),
        kind=LedgerKind.CHARGE,
        tokens_in=usage["prompt_tokens"],
        tokens_out=usage["completion_tokens"],
        tokens=actual,
        compute_seconds=Decimal(str(usage["compute_seconds"])).quantize(COMPUTE_SECONDS_QUANTUM),
        amount=_overage_amount(_before(account, used=actual), plan, actual),
        reason=f"{actual} tokens used",
    )
    LedgerEntry.objects.bulk_create([charge] + ([release] if release is not None else []))
    return charge


@transaction.atomic
def release_job(*, job: GenerationJob, reason: str) -> LedgerEntry | None:
    """Lift a failed, canceled or blocked job's whole hold and charge nothing; idempotent.

    Returns the release (the existing one on a repeated call, or after
    ``settle_job``), or ``None`` when the job was never admitted.
    """
    lines = _job_lines(_lock_job(job))
    if LedgerKind.RELEASE in lines:
        return lines[LedgerKind.RELEASE]
    release, reserved, jobs = _hold_release(job, lines.get(LedgerKind.RESERVATION), reason=reason or "released")
    if release is None:
        return None
    _add_to_account(job.organization, _subscription(job.organization), reserved=-reserved, jobs=-jobs)
    release.save(force_insert=True)
    return release


def finalize_job(*, job: GenerationJob) -> LedgerEntry | None:
    """Bill a job that just reached a final state, in the transaction that made it final.

    Succeeded: charge the stored usage and lift the hold. Failed, canceled or
    blocked: lift the hold and charge nothing, whatever the model had already
    generated. Both are exactly-once, so a task that runs twice bills once.
    """
    if job.status == JobStatus.SUCCEEDED:
        return settle_job(job=job)
    return release_job(job=job, reason=f"{job.status}: {job.failure_reason}"[:500])


@transaction.atomic
def check_regeneration(*, job: GenerationJob) -> None:
    """Refuse regenerating a variant the plan cannot pay for (suspended, or no allowance left on a hard cap).

    A regeneration holds nothing: it is one variant, charged when stored.
    """
    organization = job.organization
    account = lock_account(organization)
    _refuse_if_suspended(account.read_subscription)
    needed = job.max_new_tokens + PROMPT_TOKEN_ALLOWANCE_PER_VARIANT
    plan = current_plan(organization, subscription=account.read_subscription)
    _refuse_beyond_allowance(account, organization, plan, needed, what="regenerating this variant")


@transaction.atomic
def charge_regeneration(
    *, job: GenerationJob, index: int, revision: int, prompt_tokens: int, completion_tokens: int
) -> LedgerEntry:
    """Charge one regenerated variant, exactly once per (job, variant, revision)."""
    account = lock_account(job.organization)
    reference = f"regeneration:{job.pk}:{index}:{revision}"
    existing = LedgerEntry.objects.filter(reference=reference, kind=LedgerKind.CHARGE).first()
    if existing is not None:
        return existing
    actual = prompt_tokens + completion_tokens
    refs = _job_refs(job)
    del refs["job"]  # the job's own charge holds the (job, charge) slot; this line is named by its reference
    entry = LedgerEntry.objects.create(
        **refs,
        reference=reference,
        kind=LedgerKind.CHARGE,
        tokens_in=prompt_tokens,
        tokens_out=completion_tokens,
        tokens=actual,
        amount=_overage_amount(account, current_plan(job.organization, subscription=account.read_subscription), actual),
        reason=f"{actual} tokens used regenerating variant {index + 1} (revision {revision})",
    )
    account.tokens_used_in_period += actual
    account.save(update_fields=["tokens_used_in_period", "updated_at"])
    return entry


@transaction.atomic
def charge_compute(
    *,
    organization: Organization,
    reference: str,
    seconds: Decimal | int | str,
    project: Any = None,
    user: Any = None,
    api_key: Any = None,
    reason: str = "",
) -> LedgerEntry:
    """Bill compute seconds of work that is not a generation job (recommendation training, fine-tunes).

    ``reference`` names the work (``"recommendation:<job id>"``) and makes the
    charge exactly-once: a repeated call, e.g. a redelivered task, returns the
    first charge unchanged. Priced at the plan's ``price_per_gpu_second``;
    tokens are untouched.
    """
    reference = (reference or "").strip()
    if not reference:
        raise InvalidInput("A compute charge needs a reference.", code="reference_required")
    if isinstance(seconds, float):
        seconds = str(seconds)
    seconds = Decimal(seconds).quantize(COMPUTE_SECONDS_QUANTUM)
    if seconds < 0:
        raise InvalidInput("Compute seconds cannot be negative.", code="invalid_seconds")
    lock_account(organization)
    existing = LedgerEntry.objects.filter(reference=reference, kind=LedgerKind.CHARGE).first()
    if existing is not None:
        return existing
    plan = current_plan(organization)
    return LedgerEntry.objects.create(
        organization=organization,
        project=project,
        user=user,
        api_key=api_key,
        reference=reference,
        kind=LedgerKind.CHARGE,
        compute_seconds=seconds,
        amount=(seconds * plan.price_per_gpu_second).quantize(AMOUNT_QUANTUM),
        reason=reason or f"{seconds} compute seconds",
    )


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
    account = lock_account(organization)
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
    account = lock_account(organization)
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


def _refuse_if_suspended(subscription: Subscription | None) -> None:
    if subscription is not None and subscription.status == SubscriptionStatus.SUSPENDED:
        raise SubscriptionSuspended("This organization's subscription is suspended; settle the billing to continue.")


def _refuse_beyond_allowance(
    account: BillingAccount, organization: Organization, plan: Plan, needed: int, *, what: str
) -> None:
    """On a hard-capped plan, refuse work that could use more tokens than are left this period."""
    left = remaining_tokens(account, plan)
    if plan.overage_allowed or left >= needed:
        return
    _, period_end = current_period(organization, subscription=account.read_subscription)
    raise QuotaExceeded(
        f"The {plan.name} plan's {plan.included_tokens:,} tokens for this period are used up: {what} needs "
        f"up to {needed:,} tokens and {max(left, 0):,} are left. The allowance resets on "
        f"{period_end.astimezone(UTC):%Y-%m-%d %H:%M} UTC; upgrade the plan to continue now."
    )


def _subscription(organization: Organization) -> Subscription | None:
    # order_by(): the admin's default ordering (by organization name) would join and sort for one row.
    return Subscription.objects.select_related("plan").filter(organization=organization).order_by().first()


def loaded_subscription(organization: Organization) -> Subscription | None:
    """The subscription loaded with the organization, else read now (with its plan).

    An API call's key lookup joins it (``select_related("organization__subscription__plan")``),
    so the rate limiter and admission read it once per call. Either way it is read without a
    lock, a moment before admission locks the account row.
    """
    if not type(organization).subscription.is_cached(organization):  # type: ignore[attr-defined]
        return _subscription(organization)
    try:
        return organization.subscription
    except Subscription.DoesNotExist:  # joined, and there is none
        return None


def lock_account(organization: Organization) -> BillingAccount:
    """Lock the organization's balances for this transaction, rolling the period over if it ended.

    At rollover the usage counter starts again at zero and the credits spent in
    the finished period (usage beyond the included tokens) are used up. The
    subscription read here is kept as ``account.read_subscription``, so callers
    holding the lock do not read it again.
    """
    subscription = _subscription(organization)
    start, _ = current_period(organization, subscription=subscription)
    # of=("self",) and no ordering: the default ordering would join the organization and lock its row too.
    locked = BillingAccount.objects.select_for_update(of=("self",)).order_by()
    account = locked.filter(organization=organization).first()
    if account is None:
        BillingAccount.objects.get_or_create(organization=organization, defaults={"period_start": start})
        account = locked.get(organization=organization)
    account.read_subscription = subscription
    if account.period_start < start:
        plan = current_plan(organization, subscription=subscription)
        spent_credits = max(account.tokens_used_in_period - plan.included_tokens, 0)
        account.credit_tokens -= min(spent_credits, account.credit_tokens)
        account.tokens_used_in_period = 0
        account.period_start = start
        account.save(update_fields=["credit_tokens", "tokens_used_in_period", "period_start", "updated_at"])
    return account


def _entry(job: GenerationJob, kind: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(job=job, kind=kind).first()


def _job_lines(job: GenerationJob) -> dict[str, LedgerEntry]:
    """The job's reservation, charge and release (each at most once: unique per job and kind), in one query."""
    kinds = (LedgerKind.RESERVATION, LedgerKind.CHARGE, LedgerKind.RELEASE)
    return {line.kind: line for line in LedgerEntry.objects.filter(job=job, kind__in=kinds)}


def _job_refs(job: GenerationJob) -> dict[str, Any]:
    return {
        "organization_id": job.organization_id,
        "project_id": job.project_id,
        "api_key_id": job.api_key_id,
        "user_id": job.requested_by_id,
        "job": job,
    }


def _lock_job(job: GenerationJob) -> GenerationJob:
    """Serialize the billing of one job (its callers already hold this row lock when they made it final)."""
    GenerationJob.objects.select_for_update(of=("self",)).filter(pk=job.pk).values_list("pk").first()
    return job


def _hold_release(
    job: GenerationJob, reservation: LedgerEntry | None, *, reason: str
) -> tuple[LedgerEntry | None, int, int]:
    """The (unsaved) release of the job's whole hold, with the tokens and slots it gives back."""
    if reservation is None:
        return None, 0, 0
    release = LedgerEntry(**_job_refs(job), kind=LedgerKind.RELEASE, tokens=-reservation.tokens, reason=reason)
    return release, reservation.tokens, int(reservation.holds_slot)


def _add_to_account(
    organization: Organization,
    subscription: Subscription | None,
    *,
    reserved: int = 0,
    used: int = 0,
    jobs: int = 0,
) -> BillingAccount:
    """Add to the organization's counters in one ``UPDATE … RETURNING``; the row as it is now, locked.

    The account row is the one row every admission and settlement of an
    organization writes, so its lock is what concurrent submissions queue on.
    Taken by the write itself, near the end of the transaction (the job's
    ledger lines are written before it, or in one insert after it), the lock
    is held for one or two statements instead of the whole admission:
    measured with ``bench.load``, 9 to 22 requests were waiting on it at any
    moment when it was taken first with ``SELECT … FOR UPDATE``. Holds and
    slots never go below zero (as before). A missing row or a period to roll
    over takes the slower path through ``lock_account``.
    """
    start, _ = current_period(organization, subscription=subscription)
    table = BillingAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET tokens_reserved = GREATEST(tokens_reserved + %s, 0), "  # noqa: S608 (our table)
            "tokens_used_in_period = tokens_used_in_period + %s, active_jobs = GREATEST(active_jobs + %s, 0), "
            "updated_at = %s WHERE organization_id = %s AND period_start >= %s "
            "RETURNING id, period_start, tokens_used_in_period, tokens_reserved, credit_tokens, active_jobs",
            [reserved, used, jobs, timezone.now(), organization.pk, start],
        )
        row = cursor.fetchone()
    if row is None:
        account = lock_account(organization)
        account.tokens_reserved = max(account.tokens_reserved + reserved, 0)
        account.tokens_used_in_period += used
        account.active_jobs = max(account.active_jobs + jobs, 0)
        account.save(update_fields=["tokens_reserved", "tokens_used_in_period", "active_jobs", "updated_at"])
        return account
    account = BillingAccount(
        id=row[0], organization=organization, period_start=row[1], tokens_used_in_period=row[2],
        tokens_reserved=row[3], credit_tokens=row[4], active_jobs=row[5],
    )
    account.read_subscription = subscription
    return account


def _before(account: BillingAccount, *, reserved: int = 0, used: int = 0, jobs: int = 0) -> BillingAccount:
    """The balances as they were before ``_add_to_account`` added these amounts (unsaved copy)."""
    before = BillingAccount(
        id=account.id, organization=account.organization, period_start=account.period_start,
        tokens_used_in_period=account.tokens_used_in_period - used,
        tokens_reserved=account.tokens_reserved - reserved,
        credit_tokens=account.credit_tokens, active_jobs=account.active_jobs - jobs,
    )
    before.read_subscription = account.read_subscription
    return before


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


# --- plan changes and suspension (dashboard, API and admin) -----------------------------------


@transaction.atomic
def change_plan(*, actor: User, organization: Organization, plan_code: str) -> Subscription:
    """Schedule a move to another plan at the end of the current period; admins and owners only.

    The change only sets ``pending_plan`` (see ``Subscription``); choosing the plan the
    organization is on cancels a scheduled change. Refused with 400: an unknown or
    inactive plan (``unknown_plan``), the current plan with nothing scheduled
    (``same_plan``), and a plan the organization already uses more of than it
    includes (``usage_exceeds_plan``: this period's tokens, or its members), which
    would start the next period over its limits.
    """
    from organizations.models import Role
    from organizations.services import require_role

    require_role(actor, organization, Role.ADMIN)
    plan = _active_plan(plan_code)
    subscription = _lock_subscription(organization)
    if plan.pk == subscription.plan_id:
        if subscription.pending_plan_id is None:
            raise InvalidInput(f"This organization is already on the {plan.name} plan.", code="same_plan")
        return _clear_pending_plan(actor, subscription)
    _refuse_plan_below_usage(organization, plan)
    subscription.pending_plan = plan
    subscription.save(update_fields=["pending_plan", "updated_at"])
    if subscription.stripe_subscription_id:
        # After commit: a slow or failing Stripe call must neither hold the lock nor undo the change here.
        transaction.on_commit(lambda: _tell_stripe_of_plan_change(subscription.pk))
    record(
        "billing.plan_change_scheduled",
        organization=organization,
        actor=actor,
        target=subscription,
        from_plan=subscription.plan.code,
        to_plan=plan.code,
        effective_at=subscription.current_period_end.isoformat(),
    )
    return subscription


@transaction.atomic
def assign_plan(*, organization: Organization, plan_code: str, actor: Any = None, reason: str) -> Subscription:
    """Put an organization on a plan now, for operators and provisioning (a contract, the demo, a benchmark).

    Unlike ``change_plan`` (customers: at period end), this takes effect at once and
    keeps the current period; it is audited with its reason. ``actor`` is a staff
    user, or None for the system (management commands).
    """
    if actor is not None:
        _require_staff(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the plan is assigned.", code="reason_required")
    plan = _active_plan(plan_code)
    subscription = _lock_subscription(organization)
    previous = subscription.plan.code
    subscription.plan, subscription.pending_plan = plan, None
    subscription.save(update_fields=["plan", "pending_plan", "updated_at"])
    record(
        "billing.plan_assigned",
        organization=organization,
        actor=actor,
        target=subscription,
        from_plan=previous,
        to_plan=plan.code,
        reason=reason,
    )
    return subscription


def _tell_stripe_of_plan_change(subscription_id: Any) -> None:
    from billing import payments

    subscription = Subscription.objects.select_related("pending_plan").get(pk=subscription_id)
    try:
        payments.schedule_plan_change(subscription=subscription)
    except Exception:
        logger.exception("Stripe was not told of the plan change of subscription %s", subscription_id)


@transaction.atomic
def cancel_plan_change(*, actor: User, organization: Organization) -> Subscription:
    """Drop a scheduled plan change; admins and owners only. Nothing scheduled is a 409."""
    from core.errors import Conflict
    from organizations.models import Role
    from organizations.services import require_role

    require_role(actor, organization, Role.ADMIN)
    subscription = Subscription.objects.select_for_update().filter(organization=organization).first()
    if subscription is None or subscription.pending_plan_id is None:
        raise Conflict("No plan change is scheduled.", code="no_pending_change")
    return _clear_pending_plan(actor, subscription)


@transaction.atomic
def suspend_organization(*, actor: User, organization: Organization, reason: str) -> Subscription:
    """Stop an organization's new jobs until it is unsuspended (staff only, a reason required, audited).

    Admission refuses a suspended organization's jobs (402 ``subscription_suspended``);
    running jobs finish and are billed. An organization without a subscription gets
    one on its current plan, so the suspension has a row to live on.
    """
    from core.errors import Conflict

    _require_staff(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the organization is suspended.", code="reason_required")
    subscription = _lock_subscription(organization)
    if subscription.status == SubscriptionStatus.SUSPENDED:
        raise Conflict(f"{organization.name} is already suspended.", code="already_suspended")
    previous = subscription.status
    subscription.status = SubscriptionStatus.SUSPENDED
    subscription.save(update_fields=["status", "updated_at"])
    record(
        "billing.organization_suspended",
        organization=organization,
        actor=actor,
        target=subscription,
        previous_status=previous,
        reason=reason,
    )
    return subscription


@transaction.atomic
def unsuspend_organization(*, actor: User, organization: Organization, reason: str = "") -> Subscription:
    """Let a suspended organization run jobs again (staff only, audited)."""
    from core.errors import Conflict

    _require_staff(actor)
    subscription = Subscription.objects.select_for_update().filter(organization=organization).first()
    if subscription is None or subscription.status != SubscriptionStatus.SUSPENDED:
        raise Conflict(f"{organization.name} is not suspended.", code="not_suspended")
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.save(update_fields=["status", "updated_at"])
    record(
        "billing.organization_unsuspended",
        organization=organization,
        actor=actor,
        target=subscription,
        reason=(reason or "").strip(),
    )
    return subscription


def _active_plan(plan_code: Any) -> Plan:
    code = plan_code.strip() if isinstance(plan_code, str) else ""
    plan = Plan.objects.filter(code=code, is_active=True).first() if code else None
    if plan is None:
        choices = ", ".join(Plan.objects.filter(is_active=True).values_list("code", flat=True))
        raise InvalidInput(
            f"There is no plan {code!r} to choose; the plans are: {choices}.",
            code="unknown_plan",
            fields={"plan": [f"Choose one of: {choices}."]},
        )
    return plan


def _lock_subscription(organization: Organization) -> Subscription:
    """The organization's subscription, locked; created on its current plan and period when it has none.

    A canceled subscription is restarted the same way: the organization runs on the
    default plan and calendar month meanwhile (``current_plan``, ``current_period``).
    """
    subscription = Subscription.objects.select_for_update().filter(organization=organization).first()
    if subscription is None or subscription.status == SubscriptionStatus.CANCELED:
        # No subscription, or a canceled one: the organization runs on the default plan and month.
        plan = current_plan(organization, subscription=None)
        start, end = current_period(organization, subscription=None)
    if subscription is None:
        Subscription.objects.get_or_create(
            organization=organization,
            defaults={"plan": plan, "current_period_start": start, "current_period_end": end},
        )
        subscription = Subscription.objects.select_for_update().get(organization=organization)
    elif subscription.status == SubscriptionStatus.CANCELED:
        subscription.plan, subscription.pending_plan = plan, None
        subscription.status = SubscriptionStatus.ACTIVE
        subscription.current_period_start, subscription.current_period_end = start, end
        subscription.save(
            update_fields=["plan", "pending_plan", "status", "current_period_start", "current_period_end", "updated_at"]
        )
    # The caller changes this very row: make it the one the organization it holds answers with.
    # Otherwise a copy cached earlier (get_or_create caches the new row; an API key's lookup joins
    # it) keeps the old plan, and loaded_subscription would judge the next job by that plan.
    organization.subscription = subscription
    return subscription


def _refuse_plan_below_usage(organization: Organization, plan: Plan) -> None:
    used = lock_account(organization).tokens_used_in_period
    if used > plan.included_tokens:
        raise InvalidInput(
            f"This organization has used {used:,} tokens this period, more than the {plan.name} plan's "
            f"{plan.included_tokens:,} included tokens; choose a larger plan.",
            code="usage_exceeds_plan",
            fields={"plan": [f"Usage this period ({used:,} tokens) is above what {plan.name} includes."]},
        )
    members = organization.memberships.count()
    if members > plan.max_members:
        raise InvalidInput(
            f"This organization has {members} members and the {plan.name} plan allows {plan.max_members}; "
            "remove members first or choose a larger plan.",
            code="usage_exceeds_plan",
            fields={"plan": [f"{plan.name} allows {plan.max_members} members; there are {members}."]},
        )


def _clear_pending_plan(actor: User, subscription: Subscription) -> Subscription:
    dropped = subscription.pending_plan
    subscription.pending_plan = None
    subscription.save(update_fields=["pending_plan", "updated_at"])
    record(
        "billing.plan_change_canceled",
        organization=subscription.organization,
        actor=actor,
        target=subscription,
        plan=dropped.code if dropped is not None else None,
    )
    return subscription
