"""The ledger: hold, charge and release metered work exactly once, and the operators' corrections.

Billing meters references, not domain objects: a caller names the work with a ``JobRef`` (the
organization and the ids the ledger lines carry) or a ``reference`` string, and gives the amounts.
The glue that reads a generation job's usage lives in ``generation.metering``. A job's life in the
ledger::

    reserve  -> reservation +R   (hold the most the job can use)
    settle   -> charge +A, release -R   (bill actual usage, lift the hold)
    release  -> release -R   (failed, canceled or blocked: lift the hold, bill nothing)

Each write updates the organization's ``BillingAccount`` row in the same transaction as its ledger
lines (``billing.admission.add_to_account`` says when the row is locked), so the admission check
and the balance update are one step for concurrent requests, and the unique ``(job, kind)``
constraint makes each line exist at most once. Work that holds nothing is charged by reference
(``charge_tokens``, ``charge_compute``); staff grant credits and adjust the ledger, audited.
Imports ``billing.plans`` and ``billing.admission``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils.translation import gettext

from audit.services import record
from billing.admission import (
    add_to_account,
    balances_before,
    lock_account,
    refuse_beyond_allowance,
    refuse_beyond_concurrency,
    refuse_beyond_variants,
    refuse_if_suspended,
)
from billing.models import BillingAccount, LedgerEntry, LedgerKind, Plan
from billing.plans import current_plan, loaded_subscription, subscription_of
from core.errors import Forbidden, InvalidInput

if TYPE_CHECKING:
    from accounts.models import User
    from organizations.models import Organization

#: Ledger amounts keep six decimal places (see LedgerEntry); invoices round their totals to cents.
AMOUNT_QUANTUM = Decimal("0.000001")
COMPUTE_SECONDS_QUANTUM = Decimal("0.001")


@dataclass(frozen=True)
class JobRef:
    """A metered job as the ledger files it: its organization and the ids its lines carry.

    ``job_id`` fills the ledger's job column, unique per kind: what makes a job's reservation,
    charge and release each exist at most once. Billing never reads the job itself.
    """

    organization: Organization
    job_id: Any
    project_id: Any = None
    api_key_id: Any = None
    user_id: Any = None

    def columns(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization.pk,
            "project_id": self.project_id,
            "api_key_id": self.api_key_id,
            "user_id": self.user_id,
            "job_id": self.job_id,
        }


# --- holds and charges --------------------------------------------------------------------------


@transaction.atomic
def reserve(
    *, ref: JobRef, tokens: int, variants: int, holds_slot: bool = True, new_job: bool = False
) -> LedgerEntry:
    """Admit a job: hold ``tokens`` (the most it can use) and a concurrency slot, or refuse it.

    Raises ``VariantLimitExceeded`` (400, more than the plan's ``variants`` per job),
    ``QuotaExceeded`` (402, hard-capped plans only), ``SubscriptionSuspended`` (402) or
    ``ConcurrencyLimitExceeded`` (429). Idempotent: a second call for the same job
    returns its existing reservation.

    ``holds_slot=False`` admits a row of a bulk upload or campaign: its tokens are
    held like any job's, but it takes no concurrency slot, since a batch is one
    request whose rows queue behind each other rather than many concurrent calls.
    """
    organization = ref.organization
    # Checked before the account row is locked: the unique (job, kind) constraint is what makes it exactly-once.
    # ``new_job``: the caller created the job in this transaction, so it has no reservation to find.
    existing = None if new_job else _entry(ref.job_id, LedgerKind.RESERVATION)
    if existing is not None:
        return existing
    subscription = loaded_subscription(organization)
    refuse_if_suspended(subscription)
    plan = current_plan(organization, subscription=subscription)
    refuse_beyond_variants(plan, variants)
    entry = LedgerEntry.objects.create(
        **ref.columns(),
        kind=LedgerKind.RESERVATION,
        tokens=tokens,
        holds_slot=holds_slot,
        reason=f"hold for up to {tokens} tokens",
    )
    # Hold first, then judge the balances as they were just before: a refusal raises, and the rollback
    # takes the hold and the ledger line back. See ``add_to_account`` for why in this order.
    account = add_to_account(organization, subscription, reserved=tokens, jobs=int(holds_slot))
    before = balances_before(account, reserved=tokens, jobs=int(holds_slot))
    refuse_beyond_allowance(before, organization, plan, tokens, what=gettext("this job"))
    if holds_slot:
        refuse_beyond_concurrency(before, plan)
    return entry


@dataclass(frozen=True)
class TokenUsage:
    """What a finished job used, as its domain stored it."""

    prompt_tokens: int
    completion_tokens: int
    compute_seconds: float = 0.0


@transaction.atomic
def settle(*, ref: JobRef, usage: TokenUsage, price_per_1k_tokens: Decimal | None = None) -> LedgerEntry | None:
    """Charge a finished job's usage and lift its hold, exactly once.

    The caller holds the lock that serializes this job's billing. Returns the
    charge; on a repeated call the existing charge, unchanged, and ``None`` when
    the job was already released without a charge. The amount is the overage
    beyond the period's allowance (included plus credits) at the plan's price per
    1,000 tokens, or at ``price_per_1k_tokens`` when the work has its own (the price
    of the model it ran on); zero within the allowance and on plans without overage.
    A job admitted before billing existed (no reservation) is charged without a release.
    """
    lines = _job_lines(ref.job_id)
    charge = lines.get(LedgerKind.CHARGE)
    if charge is not None or LedgerKind.RELEASE in lines:
        return charge
    actual = usage.prompt_tokens + usage.completion_tokens
    subscription = subscription_of(ref.organization)
    plan = current_plan(ref.organization, subscription=subscription)
    release, reserved, jobs = _hold_release(ref, lines.get(LedgerKind.RESERVATION), reason="settled")
    account = add_to_account(ref.organization, subscription, used=actual, reserved=-reserved, jobs=-jobs)
    charge = LedgerEntry(
        **ref.columns(),
        kind=LedgerKind.CHARGE,
        tokens_in=usage.prompt_tokens,
        tokens_out=usage.completion_tokens,
        tokens=actual,
        compute_seconds=Decimal(str(usage.compute_seconds)).quantize(COMPUTE_SECONDS_QUANTUM),
        amount=_overage_amount(balances_before(account, used=actual), plan, actual, price_per_1k_tokens),
        reason=f"{actual} tokens used" + _price_note(price_per_1k_tokens),
    )
    LedgerEntry.objects.bulk_create([charge] + ([release] if release is not None else []))
    return charge


@transaction.atomic
def release(*, ref: JobRef, reason: str) -> LedgerEntry | None:
    """Lift a failed, canceled or blocked job's whole hold and charge nothing; idempotent.

    The caller holds the lock that serializes this job's billing. Returns the
    release (the existing one on a repeated call, or after ``settle``), or
    ``None`` when the job was never admitted.
    """
    lines = _job_lines(ref.job_id)
    if LedgerKind.RELEASE in lines:
        return lines[LedgerKind.RELEASE]
    release, reserved, jobs = _hold_release(ref, lines.get(LedgerKind.RESERVATION), reason=reason or "released")
    if release is None:
        return None
    add_to_account(ref.organization, subscription_of(ref.organization), reserved=-reserved, jobs=-jobs)
    release.save(force_insert=True)
    return release


@transaction.atomic
def charge_tokens(
    *,
    organization: Organization,
    reference: str,
    prompt_tokens: int,
    completion_tokens: int,
    reason: str,
    project_id: Any = None,
    api_key_id: Any = None,
    user_id: Any = None,
    price_per_1k_tokens: Decimal | None = None,
) -> LedgerEntry:
    """Charge tokens of work named by ``reference`` (no hold), exactly once per reference; the overage at
    ``price_per_1k_tokens`` when given, else at the plan's price."""
    account = lock_account(organization)
    existing = LedgerEntry.objects.filter(reference=reference, kind=LedgerKind.CHARGE).first()
    if existing is not None:
        return existing
    actual = prompt_tokens + completion_tokens
    entry = LedgerEntry.objects.create(
        organization_id=organization.pk,
        project_id=project_id,
        api_key_id=api_key_id,
        user_id=user_id,
        reference=reference,
        kind=LedgerKind.CHARGE,
        tokens_in=prompt_tokens,
        tokens_out=completion_tokens,
        tokens=actual,
        amount=_overage_amount(
            account, current_plan(organization, subscription=account.read_subscription), actual, price_per_1k_tokens
        ),
        reason=reason + _price_note(price_per_1k_tokens),
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
    require_staff(actor)
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
    require_staff(actor)
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


def require_staff(actor: Any) -> None:
    """Refuse a change to an organization's billing by anyone but staff (403)."""
    # Credits, adjustments and plans are money: an organization's own owner must not grant them.
    if not getattr(actor, "is_staff", False):
        raise Forbidden("Only staff can change an organization's billing ledger.")


def _entry(job_id: Any, kind: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(job_id=job_id, kind=kind).first()


def _job_lines(job_id: Any) -> dict[str, LedgerEntry]:
    """The job's reservation, charge and release (each at most once: unique per job and kind), in one query."""
    kinds = (LedgerKind.RESERVATION, LedgerKind.CHARGE, LedgerKind.RELEASE)
    return {line.kind: line for line in LedgerEntry.objects.filter(job_id=job_id, kind__in=kinds)}


def _hold_release(
    ref: JobRef, reservation: LedgerEntry | None, *, reason: str
) -> tuple[LedgerEntry | None, int, int]:
    """The (unsaved) release of the job's whole hold, with the tokens and slots it gives back."""
    if reservation is None:
        return None, 0, 0
    release = LedgerEntry(**ref.columns(), kind=LedgerKind.RELEASE, tokens=-reservation.tokens, reason=reason)
    return release, reservation.tokens, int(reservation.holds_slot)


def _overage_amount(
    account: BillingAccount, plan: Plan, tokens: int, price_per_1k_tokens: Decimal | None = None
) -> Decimal:
    """The price of the part of ``tokens`` beyond the period's allowance, given the usage so far.

    ``price_per_1k_tokens`` (the work's own price, e.g. its model's) replaces the plan's; the plan still
    decides what is included and whether overage is billed at all.
    """
    if not plan.overage_allowed:
        return Decimal("0")
    allowance = plan.included_tokens + account.credit_tokens
    before = account.tokens_used_in_period
    overage = max(before + tokens - allowance, 0) - max(before - allowance, 0)
    price = plan.price_per_1k_tokens if price_per_1k_tokens is None else price_per_1k_tokens
    return (Decimal(overage) * price / 1000).quantize(AMOUNT_QUANTUM)


def _price_note(price_per_1k_tokens: Decimal | None) -> str:
    """What a charge's reason adds when the work had its own price (the plan's is on the invoice)."""
    return "" if price_per_1k_tokens is None else f" at {price_per_1k_tokens.normalize():f} per 1,000 tokens"
